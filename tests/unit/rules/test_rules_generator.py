"""The `slos:` config models and the rule generator as pure functions: validation,
resolution of selectors, bucket boundaries, PromQL literals, determinism, the rule
conventions, and the shortened copy for the end-to-end test."""

from __future__ import annotations

import ast
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
from ttft_exporter.durations import parse_duration
from ttft_exporter.errors import ConfigError
from ttft_exporter.rules import (
    ALERT_NAMES,
    BURN_WINDOWS,
    E2E_TIME_SCALE,
    RULE_FILE_NAMES,
    RuleOptions,
    RulesError,
    SLOKind,
    build_rule_files,
    render_rule_files,
    resolve,
)
from ttft_exporter.rules.common import (
    Selection,
    format_duration,
    member_matcher,
    number,
    prom_float,
)
from ttft_exporter.rules.regression import LATENCY_ALERTS
from ttft_exporter.rules.slo import burn_factor
from ttft_exporter.sinks.prometheus.series import MetricStore
from ttft_exporter.slo import SLOsConfig

STATE_ALERTS = {
    "LLMProbeAbsent",
    "LLMProbeBudgetExhausted",
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


def _rules(config: Config, options: RuleOptions | None = None) -> list[dict[str, Any]]:
    return [
        rule
        for f in build_rule_files(config, options)
        for group in f.groups
        for rule in group.rules
    ]


def _alerts(config: Config, name: str, options: RuleOptions | None = None) -> list[dict[str, Any]]:
    return [r for r in _rules(config, options) if r.get("alert") == name]


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
        ({"job": "("}, "job", "regular"),
        ({"ttft_regression_severity": "page"}, "ttft_regression_severity", "critical"),
        (
            {"targets": [{"selector": {"name_regex": "a.*"}, "availability": {"objective": 0.9}}]},
            "targets[0].service",
            "required with name_regex",
        ),
        (
            {"targets": [{"service": "Bad Name", "availability": {"objective": 0.9}}]},
            "targets[0].service",
            "lower-case",
        ),
        (
            {
                "targets": [
                    {"selector": {"labels": {"env": "a"}}, "availability": {"objective": 0.9}},
                    {"service": "env-a", "availability": {"objective": 0.99}},
                ]
            },
            "targets[1].service",
            "already defined by targets[0]",
        ),
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
    # What the server does: each target gets the thresholds of the SLOs selecting it.
    store.apply_config(example_config)
    target = example_config.targets[0]  # vllm-llama, env=prod: TTFT 0.8 s, TPOT 60 ms
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
    assert [(g.kind, g.service, g.members) for g in res.slos] == [
        (SLOKind.TTFT, "env-prod", ("b",)),
        (SLOKind.AVAILABILITY, "all", ("a", "b", "c")),
    ]
    ttft = res.slos[0]
    # The prod SLO selects env="prod" in PromQL, minus the earlier entry's target.
    assert ttft.selection == Selection(('job="ttft-exporter"', 'env="prod"'), (('target="a"',),))
    assert [(o.value, o.members, o.service) for o in res.ttft_thresholds] == [
        (2.0, ("a",), "a"),
        (0.8, ("b",), "env-prod"),
        (0.8, ("c",), None),
    ]
    assert res.slos[1].objective == Decimal("0.995")
    assert res.slos[1].budget == Decimal("0.005")


def test_selection_renders_exclusions() -> None:
    # One-matcher exclusions fold into negative matchers; a conjunction of several
    # becomes `unless` over the same expression with those matchers added, which
    # removes exactly the series that match all of them.
    sel = Selection(
        ('job="j"', 'env="prod"'),
        (('target="a"',), ('team="x"', 'zone="z"'), ('target=~"b.*"',)),
    )
    assert sel.rate("m", "5m", 'le="0.8"') == (
        '(rate(m{job="j",env="prod",target!="a",target!~"b.*",le="0.8"}[5m]) unless '
        'rate(m{job="j",env="prod",target!="a",target!~"b.*",le="0.8",team="x",zone="z"}[5m]))'
    )
    assert sel.series("m", offset="1d") == (
        '(m{job="j",env="prod",target!="a",target!~"b.*"} offset 1d unless '
        'm{job="j",env="prod",target!="a",target!~"b.*",team="x",zone="z"} offset 1d)'
    )


def test_an_entry_shadowed_by_a_catch_all_is_an_error() -> None:
    config = _config(
        {
            "targets": [
                {"availability": {"objective": 0.9}},
                {"selector": {"name": "a"}, "service": "a2", "availability": {"objective": 0.99}},
            ]
        },
        {"name": "a"},
    )
    with pytest.raises(RulesError, match=r"slos\.targets\[1\] is never used"):
        build_rule_files(config)


def test_selector_by_model_and_regex() -> None:
    config = _config(
        {
            "targets": [
                {
                    "selector": {"name_regex": "v.*", "labels": {"model": "big"}},
                    "service": "big-v",
                    "ttft": {},
                }
            ]
        },
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
    entry: dict[str, Any] = {"selector": {"name": "typo"}}
    entry.update(
        {"availability": {"objective": 0.9}} if kind == "targets" else {"canary_threshold": 1}
    )
    config = _config({kind: [entry]}, {"name": "a"}, flux=[{"name": "f", "url": "http://h:1"}])
    with pytest.raises(RulesError, match=rf"slos\.{kind}\[0\]\.selector \(name='typo'\)"):
        build_rule_files(config)


# --- literals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (300, "5m"),
        (86400, "1d"),
        # Prometheus prints weeks (and years) only when exact: Sloth's ratio_rate4w.
        (2419200, "4w"),
        (604800, "1w"),
        (2592000, "30d"),
        (4320, "1h12m"),
        (5, "5s"),
        (0.5, "500ms"),
    ],
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
            assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+|sloth_slo_info", rule["record"])
            continue
        name = rule["alert"]
        seen.add(name)
        assert re.fullmatch(r"(?:[A-Z][a-z0-9]*|TTFT|TPOT|LLM)+", name)
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["for"]
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations)
        assert "{{" not in annotations["summary"], "summaries are static"
        if name in STATE_ALERTS:
            # Their value is a 0/1 state (absent(), up == 0): nothing worth printing.
            assert "$value" not in annotations["description"]
        else:
            assert "$value" in annotations["description"]
        assert annotations["runbook_url"].endswith(f"/docs/runbooks.md#{name.lower()}")
        assert name.lower() in anchors, f"docs/runbooks.md has no section for {name}"
    assert seen == set(ALERT_NAMES)


# --- issue 7: one test per item ------------------------------------------------------


def test_latency_slis_count_failed_probes_in_both_terms(example_config: Config) -> None:
    """Item 1: a failed or timed-out probe is a bad event of the latency SLIs and
    counts in their denominator (the outage scenario runs in ttft_slo_alerts_test)."""
    for record in _rules(example_config):
        if record.get("record") != "slo:sli_error:ratio_rate5m":
            continue
        if record["labels"]["sloth_slo"] in ("ttft-latency", "tpot-latency"):
            error, total = record["expr"].split("\n/\n")
            for part in (error, total):
                assert re.search(
                    r'ttft_probe_requests_total\{job="ttft-exporter",[^}]*outcome="failure"\}', part
                )


@pytest.mark.parametrize(
    ("days", "factors"),
    [
        (30, ["14.4", "6", "3", "1"]),
        (28, ["13.44", "5.6", "2.8", "0.933333333333"]),
        (7, ["3.36", "1.4", "0.7", "0.233333333333"]),
    ],
)
def test_burn_factors_follow_the_period(days: int, factors: list[str]) -> None:
    """Item 2: factor = budget share consumed in the long window x period / long
    window (Sloth), for page 2% in 1h and 5% in 6h, ticket 10% in 1d and in 3d."""
    computed = [burn_factor(w, days * 86400) for w in BURN_WINDOWS]
    assert [number(Decimal(format(f, ".12g"))) for f in computed] == factors
    config = _config(
        {"targets": [{"availability": {"objective": 0.99, "period": f"{days}d"}}]}, {"name": "a"}
    )
    page, ticket = _alerts(config, "LLMAvailabilityErrorBudgetBurn")
    limits = re.findall(r"> \(([0-9.]+) \* 0\.01\)", page["expr"] + ticket["expr"])
    assert limits == [f for f in factors for _ in range(2)]
    assert [page["labels"]["sloth_severity"], ticket["labels"]["sloth_severity"]] == [
        "page",
        "ticket",
    ]
    assert [page["for"], ticket["for"]] == ["2m", "15m"]


def test_objective_changes_do_not_touch_the_sli_series() -> None:
    """Item 3: objective, budget and period are series of their own, never SLI labels:
    a new objective changes the meta rules and the alert thresholds only."""

    def sli_rules(objective: float) -> list[dict[str, Any]]:
        config = _config(
            {"targets": [{"tpot": {"objective": objective, "threshold": "60ms"}}]}, {"name": "a"}
        )
        return [r for r in _rules(config) if r.get("record", "").startswith("slo:sli_error")]

    assert sli_rules(0.99) == sli_rules(0.95)
    for rule in sli_rules(0.99):
        assert set(rule["labels"]) <= {"sloth_id", "sloth_service", "sloth_slo", "sloth_window"}


SLOTH_SERIES = {
    *(f"slo:sli_error:ratio_rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "4w")),
    "slo:objective:ratio",
    "slo:error_budget:ratio",
    "slo:time_period:days",
    "slo:current_burn_rate:ratio",
    "slo:period_burn_rate:ratio",
    "slo:period_error_budget_remaining:ratio",
    "sloth_slo_info",
}


def test_slo_output_has_sloths_series_labels_and_groups(example_config: Config) -> None:
    """Item 4: per SLO, Sloth's three groups with Sloth's series and labels."""
    slos = next(f for f in build_rule_files(example_config) if f.name == "ttft_slos.yaml")
    ids = [g.sloth_id for g in resolve(example_config).slos]
    assert ids == [
        "env-prod-ttft-latency",
        "ollama-qwen-availability",
        "env-saas-availability",
        "env-prod-availability",
        "env-prod-tpot-latency",
    ]
    assert [g.name for g in slos.groups] == [
        f"sloth-slo-{kind}-{i}"
        for i in ids
        for kind in ("sli-recordings", "meta-recordings", "alerts")
    ]
    for sli, meta, alerts in zip(*[iter(slos.groups)] * 3, strict=True):
        sloth_id = sli.name.removeprefix("sloth-slo-sli-recordings-")
        records = {r["record"] for r in sli.rules + meta.rules}
        assert records == SLOTH_SERIES
        for rule in sli.rules + meta.rules + alerts.rules:
            assert rule["labels"]["sloth_id"] == sloth_id
            assert f"{rule['labels']['sloth_service']}-{rule['labels']['sloth_slo']}" == sloth_id
        for rule in sli.rules:
            assert rule["labels"]["sloth_window"] == rule["record"].removeprefix(
                "slo:sli_error:ratio_rate"
            )
        info = next(r for r in meta.rules if r["record"] == "sloth_slo_info")
        assert {"sloth_mode", "sloth_objective", "sloth_spec", "sloth_version"} <= set(
            info["labels"]
        )
        assert [r["labels"]["sloth_severity"] for r in alerts.rules] == ["page", "ticket"]
        assert [r["labels"]["severity"] for r in alerts.rules] == ["critical", "warning"]


def test_rules_keep_static_and_topology_labels(example_config: Config) -> None:
    """Item 5: no rule aggregates `by` a fixed label list; every aggregation drops only
    the exporter replica (instance, pod) and metric-specific labels (the SLIs also the
    scenario: an SLO is the target's); every selector of an exporter metric names the
    job."""
    for rule in _rules(example_config):
        expr = rule["expr"]
        assert " by (" not in expr and "group_left (target" not in expr
        sli = rule.get("record", "").startswith("slo:sli_error:")
        for aggregation in re.findall(r"\b(?:sum|avg) without \(([^)]*)\)", expr):
            dropped = [label.strip() for label in aggregation.split(",")]
            assert dropped[:2] == ["instance", "pod"]
            allowed = {"outcome", "le", "reason", "cause"} | ({"scenario"} if sli else set())
            assert set(dropped[2:]) <= allowed, rule.get("record") or rule.get("alert")
        for selector in re.findall(r"\b((?:ttft_|up\b)[a-z_]*)\{([^}]*)\}", expr):
            assert 'job="ttft-exporter"' in selector[1], (
                rule.get("record") or rule.get("alert"),
                selector,
            )


def test_rules_job_option_selects_another_job(example_config: Config) -> None:
    options = RuleOptions(job="llm-probes|ttft")
    for rule in _rules(example_config, options):
        assert 'job="ttft-exporter"' not in rule["expr"]
    (down,) = _alerts(example_config, "TTFTExporterDown", options)
    assert down["expr"] == 'up{job=~"llm-probes|ttft"} == 0\nor\nabsent(up{job=~"llm-probes|ttft"})'


def test_label_selectors_select_by_label_not_by_name(example_config: Config) -> None:
    """Item 6: where a selector uses labels, the rules select by those labels, so a new
    target with the same labels is covered without regenerating; names appear only
    for name selectors and in LLMProbeAbsent (which checks the configured names)."""
    for rule in _rules(example_config):
        if rule.get("alert") == "LLMProbeAbsent":
            continue
        for name in ("vllm-llama", "vllm-llama-warm", "openai-gpt"):
            assert f'"{name}"' not in rule["expr"] and f"{name}|" not in rule["expr"]
    (prod_page, _) = _alerts(example_config, "TTFTErrorBudgetBurn")
    sli = next(
        r
        for r in _rules(example_config)
        if r.get("record") == "slo:sli_error:ratio_rate5m"
        and r["labels"]["sloth_id"] == "env-prod-ttft-latency"
    )
    assert 'env="prod"' in sli["expr"]
    assert prod_page["labels"]["sloth_id"] == "env-prod-ttft-latency"


def test_ttft_threshold_rules_cover_unknown_targets(example_config: Config) -> None:
    exprs = [r["expr"] for r in _alerts(example_config, "TTFTLatencyRegression")]
    p95 = "target:ttft_probe_time_to_first_token_seconds:p95_5m"
    warm = 'scenario!="cold"'
    assert exprs == [
        f'{p95}{{job="ttft-exporter",target="ollama-qwen",{warm}}} > 2.0',
        f'{p95}{{job="ttft-exporter",env="saas",{warm},target!="ollama-qwen"}} > 1.5',
        f'{p95}{{job="ttft-exporter",env="prod",{warm},target!="ollama-qwen",env!="saas"}} > 0.8',
        # Every other target, including those of other configs: the default.
        f'{p95}{{job="ttft-exporter",{warm},target!="ollama-qwen",env!="saas",env!="prod"}} > 0.8',
    ]


def test_alert_parameters_are_annotations_and_severity_is_configurable(
    example_config: Config,
) -> None:
    """Item 8: thresholds, factors and floors are annotations, never labels;
    TTFTLatencyRegression is a warning unless configured otherwise."""
    parameters = {"threshold", "factor", "floor", "ratio", "long_window", "short_window"}
    for rule in _rules(example_config):
        if "alert" in rule:
            assert not parameters & set(rule["labels"]), rule["alert"]
    regressions = _alerts(example_config, "TTFTLatencyRegression")
    assert {r["labels"]["severity"] for r in regressions} == {"warning"}
    assert [r["annotations"]["threshold"] for r in regressions] == ["2.0", "1.5", "0.8", "0.8"]
    (relative, *_) = _alerts(example_config, "TTFTRelativeRegression")
    assert (relative["annotations"]["factor"], relative["annotations"]["floor"]) == ("2.0", "0.5")
    paging = _config({"ttft_regression_severity": "critical"}, {"name": "a"})
    assert {r["labels"]["severity"] for r in _alerts(paging, "TTFTLatencyRegression")} == {
        "critical"
    }


def test_runbook_url_is_configurable(example_config: Config) -> None:
    """Item 9: slos.runbook_url, overridden by --rules.runbook-url."""
    own = _config({"runbook_url": "https://wiki.example.com/ttft/{alertname}"}, {"name": "a"})
    for rule in _rules(own):
        if "alert" in rule:
            assert rule["annotations"]["runbook_url"] == (
                f"https://wiki.example.com/ttft/{rule['alert'].lower()}"
            )
    options = RuleOptions(runbook_url="https://runbooks.internal/llm#{alertname}")
    (down,) = _alerts(example_config, "TTFTExporterDown", options)
    assert down["annotations"]["runbook_url"] == "https://runbooks.internal/llm#ttftexporterdown"


@pytest.mark.parametrize(
    ("text", "value"),
    [("700ms", 0.7), ("0.7s", 0.7), ("100ms", 0.1), ("60ms", 0.06), ("1.1s", 1.1), ("1h30m", 5400)],
)
def test_durations_parse_exactly(text: str, value: float) -> None:
    """Item 10: no binary noise (700ms was 0.7000000000000001)."""
    assert parse_duration(text) == value
    assert repr(parse_duration(text)) == repr(float(value))


def test_every_le_and_threshold_string_is_canonical() -> None:
    """Item 10: every `le` and threshold in the rules is the shortest exact form of
    a configured value, as the exporter writes it."""
    config = _config(
        {
            "ttft_threshold": "700ms",
            "targets": [
                {"selector": {"name": "a"}, "ttft": {"objective": 0.99, "threshold": "0.7s"}},
                {"selector": {"name": "b"}, "tpot": {"objective": 0.99, "threshold": "30ms"}},
                {"selector": {"name": "c"}, "ttft": {"threshold": "1100ms"}},
            ],
        },
        {"name": "a"},
        {"name": "b"},
        {"name": "c"},
    )
    texts = "\n".join(render_rule_files(config, source="x").values())
    values = re.findall(r'le="([^"]+)"', texts) + re.findall(r":p95_5m\{[^}]*\} > ([0-9.]+)", texts)
    values += re.findall(r"threshold: '([^']+)'", texts)
    assert {"0.7", "0.03", "1.1"} <= set(values)
    for value in values:
        assert value == repr(float(value)), value
        assert len(Decimal(value).normalize().as_tuple().digits) <= 6, value


def test_no_slos_still_gives_the_health_alerts() -> None:
    files = build_rule_files(make_config({"name": "a", **TARGET}))
    assert [f.groups for f in files if f.name == "ttft_slos.yaml"] == [()]
    alerts = {r["alert"] for r in _rules(make_config()) if "alert" in r}
    assert "TTFTLatencyRegression" in alerts and "LLMProbeAbsent" not in alerts


def test_shortened_copy_scales_every_duration(example_config: Config) -> None:
    normal = _rules(example_config)
    short = _rules(example_config, RuleOptions(time_scale=E2E_TIME_SCALE))
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
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w)", text))


def test_rule_files_can_be_written(example_config: Config, tmp_path: Path) -> None:
    from ttft_exporter.rules import write_rule_files

    written = write_rule_files(example_config, tmp_path / "new", source=EXAMPLE_SOURCE)
    assert [p.name for p in written] == list(RULE_FILE_NAMES)


# --- issue 10: scenarios and the cold probe ----------------------------------------------

NOT_COLD = 'scenario!="cold"'
LATENCY_RECORDS = re.compile(
    r"target:(ttft_probe_time_to_first(_output)?_token_seconds:p\d+_\d+m"
    r"|ttft_probe_output_tokens_per_second:rate\d+m)$"
)
LATENCY_SLOS = {"ttft-latency", "tpot-latency"}
SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}")


def _is_latency_kind(rule: dict[str, Any]) -> bool:
    if rule.get("alert") in LATENCY_ALERTS:
        return True
    name = rule.get("record", "")
    if name.startswith("slo:sli_error:ratio_rate") and "sloth_window" in rule["labels"]:
        # The period SLI reads the 5m SLI series (already warm), not the exporter's.
        return rule["labels"]["sloth_slo"] in LATENCY_SLOS
    return bool(LATENCY_RECORDS.match(name))


@pytest.mark.parametrize("scaled", [False, True], ids=["rules", "e2e-copy"])
def test_latency_rules_leave_out_the_cold_probe(example_config: Config, scaled: bool) -> None:
    """Every selector of a latency-kind rule (quantiles, decode rate, latency and TPOT
    SLIs in both terms, the regression and tokens/s alerts) drops scenario="cold"; no
    other rule does: availability, success ratio, LLMProbeFailing and LLMProbeAbsent
    count the cold probe (a failed cold start is a failure)."""
    options = RuleOptions(time_scale=E2E_TIME_SCALE) if scaled else None
    latency: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    for rule in _rules(example_config, options):
        if not _is_latency_kind(rule):
            other.append(rule)
            assert NOT_COLD not in rule["expr"], rule.get("record") or rule.get("alert")
            continue
        latency.append(rule)
        selectors = SELECTOR.findall(rule["expr"])
        # The 7-day medians read their recorded series unfiltered: those are warm.
        if not rule.get("record", "").endswith("_median7d"):
            assert selectors, rule
        for metric, matchers in selectors:
            if metric.startswith("slo:"):  # the period SLI: the mean of the warm 5m SLI
                continue
            assert NOT_COLD in matchers.split(","), (
                rule.get("record") or rule.get("alert"),
                metric,
            )
    names = {r.get("record") or r.get("alert") for r in latency}
    assert set(LATENCY_ALERTS) <= names
    assert "target:ttft_probe_output_tokens_per_second:rate5m" in names
    assert {r["labels"]["sloth_slo"] for r in latency if "sloth_slo" in r.get("labels", {})} == (
        LATENCY_SLOS
    )
    kept = {r.get("record") or r.get("alert") for r in other}
    assert {"LLMProbeFailing", "LLMProbeAbsent"} <= kept
    assert "target:ttft_probe_requests:success_ratio_rate5m" in kept


def test_target_slis_sum_the_scenarios_flux_slis_have_none(flux_config: Config) -> None:
    """An SLO is the target's: every aggregation of a target SLI drops `scenario`,
    so one SLI series per target sums its (non-cold, for latency) scenarios; a
    Flux SLI reads series without the label and keeps its aggregation."""
    config = _config(
        {
            "targets": [
                {
                    "ttft": {"objective": 0.99, "threshold": "800ms"},
                    "availability": {"objective": 0.99},
                    "tpot": {"objective": 0.99, "threshold": "60ms"},
                }
            ]
        },
        {"name": "a", "scenarios": [{"name": "short"}, {"name": "long"}], "cold": {"idle": "1m"}},
    )
    slis = [r for r in _rules(config) if r.get("record") == "slo:sli_error:ratio_rate5m"]
    assert {r["labels"]["sloth_slo"] for r in slis} == {
        "ttft-latency",
        "availability",
        "tpot-latency",
    }
    for rule in slis:
        aggregations = re.findall(r"\bsum without \(([^)]*)\)", rule["expr"])
        assert aggregations
        assert all("scenario" in a.split(", ") for a in aggregations), rule["expr"]
    flux = [r for r in _rules(flux_config) if r.get("record") == "slo:sli_error:ratio_rate5m"]
    for rule in flux:
        assert "scenario" not in rule["expr"]


def _code_strings(source: str) -> list[str]:
    """The string literals of a module, docstrings left out."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_the_cold_matcher_is_built_in_one_place() -> None:
    """`scenario!="cold"` comes from Selection.warm only: no other rule module spells
    the cold scenario or a scenario matcher in its code."""
    spelled = [
        path.name
        for path in sorted((ROOT / "ttft_exporter" / "rules").glob("*.py"))
        if path.name != "common.py"
        and any(
            text == "cold" or "scenario!" in text or 'scenario="' in text
            for text in _code_strings(path.read_text())
        )
    ]
    assert spelled == []
    warm = Selection(('job="j"',), (('target="x"',),)).warm()
    assert warm.series("m") == 'm{job="j",scenario!="cold",target!="x"}'
