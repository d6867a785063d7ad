"""The `slos:` config models and the rule generator as pure functions: validation,
resolution of selectors, bucket boundaries, PromQL literals, determinism, the rule
conventions, and the shortened copy for the end-to-end test."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from tests.conftest import make_config
from tests.unit.rules.conftest import EXAMPLE_SOURCE, ROOT
from ttft_exporter.config import Config, parse_config
from ttft_exporter.errors import ConfigError
from ttft_exporter.metrics import MetricStore
from ttft_exporter.rules import (
    ALERT_NAMES,
    E2E_TIME_SCALE,
    RULE_FILE_NAMES,
    RulesError,
    SLOKind,
    build_rule_files,
    render_rule_files,
    resolve,
)
from ttft_exporter.rules.common import format_duration, member_matcher, number, prom_float
from ttft_exporter.slo import SLOsConfig

STATE_ALERTS = {
    "LLMProbeAbsent",
    "TTFTExporterDown",
    "TTFTExporterConfigReloadFailed",
    "FluxStreamDown",
    "FluxStreamStale",
}
TARGET = {"protocol": "openai-chat", "url": "http://127.0.0.1:1/v1", "model": "m", "prompt": "p"}


def _config(slos: dict[str, Any], *targets: dict[str, Any], flux: Any = ()) -> Config:
    data: dict[str, Any] = {
        "targets": [{**TARGET, **t} for t in targets],
        "slos": slos,
        "flux": list(flux),
    }
    return parse_config(data)


def _rules(config: Config, scale: float = 1.0) -> list[dict[str, Any]]:
    return [
        rule
        for f in build_rule_files(config, time_scale=scale)
        for group in f.groups
        for rule in group.rules
    ]


# --- the slos: section -------------------------------------------------------------


def test_slos_default_is_empty() -> None:
    slos = Config().slos
    assert slos.targets == [] and slos.flux == []
    assert slos.thresholds() == {"latency": [0.8], "flux_canary": [2.0]}


@pytest.mark.parametrize(
    ("slos", "path", "message"),
    [
        ({"targets": [{"availability": {"objective": 1}}]}, "objective", "between 0 and 1"),
        ({"targets": [{"availability": {"objective": 0}}]}, "objective", "between 0 and 1"),
        ({"targets": [{"availability": {"objective": 0.9999999}}]}, "objective", "6 significant"),
        ({"targets": [{"availability": {"objective": 0.9, "period": "1d"}}]}, "period", "3d"),
        ({"targets": [{"tpot": {"objective": 0.9}}]}, "tpot.threshold", "Field required"),
        ({"targets": [{"ttft": {"threshold": 0}}]}, "threshold", "above 0"),
        ({"targets": [{"selector": {"name": "a"}}]}, "targets[0]", "at least one of"),
        (
            {"targets": [{"selector": {"name": "a", "name_regex": "a"}, "ttft": {}}]},
            "selector",
            "not both",
        ),
        ({"targets": [{"selector": {"name_regex": "("}, "ttft": {}}]}, "name_regex", "regular"),
        ({"targets": [{"ttft": {}, "oops": 1}]}, "oops", "unknown field"),
        ({"regression": {"factor": 1}}, "regression.factor", "greater than 1"),
        ({"flux": [{"stream_up": {"objective": 2}}]}, "flux[0].stream_up", "between 0 and 1"),
        ({"exporter_job": "("}, "exporter_job", "regular"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_slos_validation(slos: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"slos": slos})
    text = str(info.value)
    assert f"slos.{path}" in text or path in text
    assert message in text


def test_slos_are_frozen() -> None:
    slos = SLOsConfig()
    with pytest.raises(ValidationError):
        slos.period = 1.0  # type: ignore[misc]


def test_thresholds_become_bucket_boundaries(example_config: Config) -> None:
    # examples/ttft.yml: TTFT 0.8 (default), 1.5 and 2 s; TPOT 60 ms; canary default 2 s.
    assert example_config.thresholds() == {
        "latency": [0.8, 1.5, 2.0],
        "inter_token": [0.06],
        "flux_canary": [2.0],
    }
    store = MetricStore()
    store.configure(example_config.bucket_overrides(), example_config.thresholds())
    # 60 ms is not a default TPOT boundary: the SLO adds it.
    assert 0.06 in store.buckets["inter_token"]
    target = example_config.targets[0]
    store.ensure(target.name, {"target": target.name})
    exposition = store.render()
    # The `le` the SLI rules select is the one the exporter writes.
    rules = "\n".join(render_rule_files(example_config, source=EXAMPLE_SOURCE).values())
    for metric, le in (
        ("ttft_probe_time_to_first_token_seconds", 0.8),
        ("ttft_probe_time_per_output_token_seconds", 0.06),
    ):
        selector = f'le="{prom_float(le)}"'
        assert f'{metric}_bucket{{target="{target.name}",{selector}}}' in exposition
        assert selector in rules


# --- resolution ----------------------------------------------------------------------


def test_first_matching_entry_wins_per_kind() -> None:
    config = _config(
        {
            "targets": [
                {"selector": {"name": "a"}, "ttft": {"threshold": "2s"}},
                {"selector": {"labels": {"env": "prod"}}, "ttft": {"objective": 0.99}},
                {"selector": {}, "availability": {"objective": 0.995}},
            ]
        },
        {"name": "a", "labels": {"env": "prod"}},
        {"name": "b", "labels": {"env": "prod"}},
        {"name": "c", "labels": {"env": "dev"}},
    )
    res = resolve(config)
    # a: its own threshold-only ttft entry wins over the prod SLO; everyone gets the
    # catch-all availability.
    assert [(g.kind, g.members) for g in res.slos] == [
        (SLOKind.TTFT, ("b",)),
        (SLOKind.AVAILABILITY, ("a", "b", "c")),
    ]
    assert res.ttft_thresholds == ((2.0, ("a",)),)
    assert res.slos[1].objective == Decimal("0.995")
    assert res.slos[1].budget == Decimal("0.005")


def test_selector_by_model_and_regex() -> None:
    config = _config(
        {"targets": [{"selector": {"name_regex": "v.*", "labels": {"model": "big"}}, "ttft": {}}]},
        {"name": "vx", "model": "big"},
        {"name": "vy", "model": "small"},
        {"name": "xv", "model": "big"},
    )
    entry = config.slos.targets[0]
    assert entry.selector.matches("vx", {"model": "big"})
    assert not entry.selector.matches("vy", {"model": "small"})
    assert not entry.selector.matches("xv", {"model": "big"})


@pytest.mark.parametrize("kind", ["targets", "flux"])
def test_selector_matching_nothing_is_an_error(kind: str) -> None:
    entry = {"selector": {"name": "typo"}}
    entry.update(
        {"availability": {"objective": 0.9}} if kind == "targets" else {"canary_threshold": 1}
    )
    config = _config({kind: [entry]}, {"name": "a"}, flux=[{"name": "f", "url": "http://h:1"}])
    with pytest.raises(RulesError, match=rf"slos\.{kind}\[0\]\.selector \(name='typo'\)"):
        build_rule_files(config)


# --- literals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(300, "5m"), (86400, "1d"), (2419200, "28d"), (4320, "1h12m"), (5, "5s"), (0.5, "500ms")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_literals() -> None:
    assert number(Decimal("1") - Decimal("0.99")) == "0.01"
    assert number(Decimal("14.4")) == "14.4"
    assert number(Decimal("6")) == "6"
    assert prom_float(1) == "1.0"
    assert member_matcher("target", ["a"]) == 'target="a"'
    assert member_matcher("target", ["a.b", "c"], negate=True) == 'target!~"a\\\\.b|c"'


# --- the rules ----------------------------------------------------------------------


def test_output_is_deterministic(example_config: Config) -> None:
    first = render_rule_files(example_config, source=EXAMPLE_SOURCE)
    assert render_rule_files(example_config, source=EXAMPLE_SOURCE) == first
    assert list(first) == list(RULE_FILE_NAMES)


def test_rendered_yaml_is_the_rule_data(example_config: Config) -> None:
    texts = render_rule_files(example_config, source=EXAMPLE_SOURCE)
    for rule_file in build_rule_files(example_config):
        loaded = yaml.safe_load(texts[rule_file.name])
        expected = [
            {
                "name": g.name,
                "rules": [{k: v for k, v in r.items() if not k.startswith("_")} for r in g.rules],
            }
            for g in rule_file.groups
        ]
        assert loaded == {"groups": expected}
    # Templates are single-quoted: double quotes inside double-quoted YAML break it.
    assert re.search(r"description: '[^\n]*printf \"%\.2f\" \$value", texts["ttft_alerts.yaml"])


def test_alert_conventions(example_config: Config, flux_config: Config) -> None:
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = {line[3:].strip().lower() for line in runbooks.splitlines() if line.startswith("## ")}
    seen = set()
    for rule in _rules(example_config) + _rules(flux_config):
        if "alert" not in rule:
            assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"])
            continue
        name = rule["alert"]
        seen.add(name)
        assert re.fullmatch(r"(?:[A-Z][a-z0-9]*|TTFT|TPOT|LLM)+", name)
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["for"]
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}
        assert "{{" not in annotations["summary"], "summaries are static"
        if name in STATE_ALERTS:
            # Their value is a 0/1 state (absent(), up == 0): nothing worth printing.
            assert "$value" not in annotations["description"]
        else:
            assert '{{ printf "%.2f" $value }}' in annotations["description"]
        assert annotations["runbook_url"].endswith(f"/docs/runbooks.md#{name.lower()}")
        assert name.lower() in anchors, f"docs/runbooks.md has no section for {name}"
    assert seen == set(ALERT_NAMES)


def test_burn_rate_pairs(example_config: Config) -> None:
    burns = [r for r in _rules(example_config) if r.get("alert") == "TTFTErrorBudgetBurn"]
    pairs = [
        (r["labels"]["severity"], r["labels"]["long_window"], r["labels"]["short_window"], r["for"])
        for r in burns
    ]
    assert pairs == [
        ("critical", "1h", "5m", "2m"),
        ("critical", "6h", "30m", "2m"),
        ("warning", "1d", "2h", "15m"),
        ("warning", "3d", "6h", "15m"),
    ]
    factors = [re.findall(r"/ 0\.01 > ([0-9.]+)", r["expr"]) for r in burns]
    assert factors == [["14.4", "14.4"], ["6", "6"], ["3", "3"], ["1", "1"]]


def test_ttft_threshold_rules_cover_unknown_targets(example_config: Config) -> None:
    exprs = [r["expr"] for r in _rules(example_config) if r.get("alert") == "TTFTLatencyRegression"]
    assert exprs == [
        'target:ttft_probe_time_to_first_token_seconds:p95_5m{target!~"ollama-qwen|openai-gpt"} > 0.8',
        'target:ttft_probe_time_to_first_token_seconds:p95_5m{target="openai-gpt"} > 1.5',
        'target:ttft_probe_time_to_first_token_seconds:p95_5m{target="ollama-qwen"} > 2.0',
    ]


def test_no_slos_still_gives_the_health_alerts() -> None:
    files = build_rule_files(make_config({"name": "a", **TARGET}))
    assert [f.groups for f in files if f.name == "ttft_slos.yaml"] == [()]
    alerts = {r["alert"] for r in _rules(make_config()) if "alert" in r}
    assert "TTFTLatencyRegression" in alerts and "LLMProbeAbsent" not in alerts


def test_shortened_copy_scales_every_duration(example_config: Config) -> None:
    normal = _rules(example_config)
    short = _rules(example_config, E2E_TIME_SCALE)
    assert [r.get("record") or r.get("alert") for r in short] == [
        r.get("record") or r.get("alert") for r in normal
    ]
    durations = re.compile(r"\[(\w+)\]|offset (\w+)")
    for long_rule, short_rule in zip(normal, short, strict=True):
        assert short_rule.get("labels") == long_rule.get("labels")
        pairs = zip(
            durations.findall(long_rule["expr"]), durations.findall(short_rule["expr"]), strict=True
        )
        for (long_range, long_off), (short_range, short_off) in pairs:
            assert _seconds(short_range or short_off) * 60 == _seconds(long_range or long_off)
        if "for" in long_rule:
            assert _seconds(short_rule["for"]) * 60 == _seconds(long_rule["for"])
    regression = next(r for r in short if r.get("alert") == "TTFTLatencyRegression")
    assert regression["for"] == "5s"


def _seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d)", text))


def test_rule_files_can_be_written(example_config: Config, tmp_path: Path) -> None:
    from ttft_exporter.rules import write_rule_files

    written = write_rule_files(example_config, tmp_path / "new", source=EXAMPLE_SOURCE)
    assert [p.name for p in written] == list(RULE_FILE_NAMES)
