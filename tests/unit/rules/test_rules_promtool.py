"""The rule files against the real promtool 2.42: `check rules` with every lint fatal,
`test rules` on every unit test file, and the completeness checks around them: every
alert has a firing and a non-firing test, every recording rule has a promql_expr_test,
every rule group has its test file, and every `ttft_*` metric the rules read exists in
the metric catalogue."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.rules.conftest import ALERTS, DATA
from ttft_exporter.catalogue import EXPORTER_METRICS, FLUX_METRICS, PROBE_METRICS, Kind
from ttft_exporter.config import Config
from ttft_exporter.rules import ALERT_NAMES, RULE_FILE_NAMES, write_rule_files

RULE_FILES = [ALERTS / name for name in RULE_FILE_NAMES]
TEST_FILES = sorted((ALERTS / "tests").glob("*_test.yaml"))
# Flux SLO alerts only exist for configs that watch Flux; the example does not.
EXTRA_TESTS = [DATA / "flux_slo_test.yaml"]
# A metric name that is not part of a recording rule name (`target:ttft_...:p95_5m`).
METRIC_REF = re.compile(r"(?<![\w:])(ttft_[a-z0-9_]+)(?![\w:])")


def _rules(paths: list[Path]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in paths:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield group["name"], rule


def _tests(paths: list[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        yield from yaml.safe_load(path.read_text())["tests"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(promtool: str, path: Path) -> None:
    result = _run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(promtool: str, path: Path) -> None:
    result = _run(promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_flux_slo_rules_generated_for_flux_config(
    promtool: str, flux_config: Config, tmp_path: Path
) -> None:
    # The generated (not committed) rules of a config with Flux SLOs, with their test.
    written = write_rule_files(flux_config, tmp_path, source="flux-slos.yml")
    result = _run(promtool, "check", "rules", "--lint=all", "--lint-fatal", *map(str, written))
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.copy(DATA / "flux_slo_test.yaml", tmp_path)
    result = _run(promtool, "test", "rules", str(tmp_path / "flux_slo_test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


# Sloth's groups are one set per SLO; one test file covers each family of them.
_SLOTH_FAMILIES = {
    "sloth-slo-sli-recordings-": "ttft_slo_sli",
    "sloth-slo-meta-recordings-": "ttft_slo_meta",
    "sloth-slo-alerts-": "ttft_slo_alerts",
}


def _test_file_of(group: str) -> str:
    for prefix, test in _SLOTH_FAMILIES.items():
        if group.startswith(prefix):
            return test
    return group


def test_every_group_has_its_test_file() -> None:
    groups = {_test_file_of(group) for group, _ in _rules(RULE_FILES)}
    assert {p.name.removesuffix("_test.yaml") for p in TEST_FILES} == groups


def test_every_sloth_group_is_evaluated_by_its_test_file() -> None:
    # promtool only evaluates the groups a test file lists in group_eval_order when
    # it lists any; a forgotten SLO group would silently go untested.
    groups = list(dict.fromkeys(group for group, _ in _rules([ALERTS / "ttft_slos.yaml"])))
    for test in _SLOTH_FAMILIES.values():
        data = yaml.safe_load((ALERTS / "tests" / f"{test}_test.yaml").read_text())
        assert data["group_eval_order"] == groups


def test_every_alert_fires_and_stays_quiet_in_a_test() -> None:
    """Each alert name has a test where it fires and one where it must not."""
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in _tests(TEST_FILES + EXTRA_TESTS):
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    committed = {rule["alert"] for _, rule in _rules(RULE_FILES) if "alert" in rule}
    for names, what in ((committed, "committed rules"), (set(ALERT_NAMES), "ALERT_NAMES")):
        assert not names - firing, f"alerts of the {what} without a firing test"
        assert not names - quiet, f"alerts of the {what} without a non-firing test"


def test_every_firing_test_checks_all_annotations() -> None:
    for test in _tests(TEST_FILES + EXTRA_TESTS):
        for case in test.get("alert_rule_test", []):
            for expected in case.get("exp_alerts") or []:
                annotations = set(expected["exp_annotations"])
                assert {"summary", "description", "runbook_url"} <= annotations
                # ... and the rule's own parameters (threshold, factor, title ...).
                assert annotations == _annotations_of(case["alertname"]), case["alertname"]
                assert "severity" in expected["exp_labels"], case["alertname"]


def _annotations_of(alertname: str) -> set[str]:
    rules = [rule for _, rule in _rules(RULE_FILES) if rule.get("alert") == alertname]
    if not rules:  # the Flux SLO alerts: only in the generated Flux config's rules
        return {"summary", "description", "runbook_url", "title", "burn_rate_thresholds"}
    return set(rules[0]["annotations"])


def test_every_recording_rule_has_a_promql_expr_test() -> None:
    tested: set[str] = set()
    for test in _tests(TEST_FILES):
        for case in test.get("promql_expr_test", []):
            # The expression may carry a selector: slo:sli_error:ratio_rate1h{target="x"}.
            tested.add(case["expr"].split("{")[0].strip())
    records = {rule["record"] for _, rule in _rules(RULE_FILES) if "record" in rule}
    assert not records - tested, f"recording rules without a promql_expr_test: {records - tested}"


def _catalogue() -> set[str]:
    names: set[str] = set()
    specs = [*PROBE_METRICS, *EXPORTER_METRICS, *FLUX_METRICS]
    for spec in specs:
        if spec.kind is Kind.HISTOGRAM:
            names |= {f"{spec.name}_bucket", f"{spec.name}_count", f"{spec.name}_sum"}
        else:
            names.add(spec.name)
    return names


def _check_metrics(files: list[Path]) -> None:
    known = _catalogue()
    used = {m for _, rule in _rules(files) for m in METRIC_REF.findall(rule["expr"])}
    assert used, "no metric found: the pattern is broken"
    assert not used - known, "rules read metrics the exporter does not expose"


def test_every_metric_in_the_committed_rules_exists() -> None:
    _check_metrics(RULE_FILES)


def test_every_metric_in_flux_slo_rules_exists(flux_config: Config, tmp_path: Path) -> None:
    _check_metrics(list(write_rule_files(flux_config, tmp_path, source="flux-slos.yml")))
