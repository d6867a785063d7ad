"""alerts/alertmanager/alertmanager.yml against the real amtool 0.25: the config is
valid, and every severity the rules emit routes to the receiver it should. The
inhibition rules are exercised in a running Alertmanager by
tests/integration/test_alerting_e2e.py."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.unit.rules.conftest import ALERTS
from ttft_exporter.rules import ALERT_NAMES

CONFIG = ALERTS / "alertmanager" / "alertmanager.yml"
SEVERITY = {
    rule["alert"]: rule["labels"]["severity"]
    for name in ("ttft_alerts.yaml", "ttft_slos.yaml")
    for group in yaml.safe_load((ALERTS / name).read_text())["groups"]
    for rule in group["rules"]
    if "alert" in rule
}
RECEIVER = {"critical": "pager", "warning": "tickets"}


def _amtool(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool, *args], capture_output=True, text=True, timeout=30, check=False)


def test_check_config(amtool: str) -> None:
    result = _amtool(amtool, "check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=TTFTErrorBudgetBurn", "target=vllm-llama"], "pager"),
        # The team that owns the endpoint has its own pager; its tickets stay shared.
        (
            ["severity=critical", "alertname=TTFTErrorBudgetBurn", "team=ml-platform"],
            "ml-platform-pager",
        ),
        (["severity=warning", "alertname=TTFTLatencyRegression", "team=ml-platform"], "tickets"),
        (["severity=warning", "alertname=TTFTRelativeRegression", "target=vllm-llama"], "tickets"),
        (["severity=critical", "alertname=FluxStreamDown", "flux=flux-prod"], "pager"),
        (["severity=warning", "alertname=FluxStreamStale", "flux=flux-prod"], "tickets"),
        # Without a known severity an alert must still reach a human.
        (["alertname=SomethingElse"], "tickets"),
        (["severity=info", "alertname=SomethingElse"], "tickets"),
    ],
    ids=[
        "critical",
        "team-critical",
        "team-warning",
        "warning",
        "flux-critical",
        "flux-warning",
        "no-severity",
        "info",
    ],
)
def test_routes(amtool: str, labels: list[str], receiver: str) -> None:
    result = _amtool(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", sorted(SEVERITY), ids=str)
def test_every_generated_alert_routes_by_its_severity(amtool: str, alert: str) -> None:
    receiver = RECEIVER[SEVERITY[alert]]
    result = _amtool(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={receiver}",
        f"alertname={alert}",
        f"severity={SEVERITY[alert]}",
        "target=t",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_routing_covers_the_alert_names() -> None:
    # The Flux SLO alerts are not in the example's rules; everything else must be.
    assert set(SEVERITY) == set(ALERT_NAMES) - {
        "FluxCanaryErrorBudgetBurn",
        "FluxStreamErrorBudgetBurn",
    }


def test_grouping_and_inhibition_are_per_target() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["route"]["group_by"] == ["target", "flux"]
    targets, fluxes, exporter = config["inhibit_rules"]
    assert targets["equal"] == ["target", "job", "namespace", "cluster"]
    assert fluxes["equal"] == ["flux", "job", "namespace", "cluster"]
    assert exporter["equal"] == ["job"]


def _alertnames(matchers: list[str]) -> set[str]:
    names: set[str] = set()
    for matcher in matchers:
        match = re.fullmatch(r'alertname(=~|=)"([^"]*)"', matcher)
        if match:
            names |= set(match.group(2).split("|"))
    return names


def test_inhibit_rules_only_touch_this_projects_alerts() -> None:
    """Both sides of every inhibit rule name our alerts: in a shared Alertmanager a
    critical alert of another team must not silence anything, nor ours theirs."""
    config = yaml.safe_load(CONFIG.read_text())
    flux = {name for name in ALERT_NAMES if name.startswith("Flux")}
    for rule in config["inhibit_rules"]:
        for side in ("source_matchers", "target_matchers"):
            names = _alertnames(rule[side])
            assert names, f"{side} of {rule} matches any alert name"
            assert names <= set(ALERT_NAMES)
    targets, fluxes, _ = config["inhibit_rules"]
    # Every alert carrying a target label is on both sides of the target rule.
    by_target = {
        rule["alert"]
        for name in ("ttft_alerts.yaml", "ttft_slos.yaml")
        for group in yaml.safe_load((ALERTS / name).read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule and not rule["alert"].startswith(("Flux", "TTFTExporter"))
    }
    assert _alertnames(targets["source_matchers"]) == by_target
    assert _alertnames(targets["target_matchers"]) == by_target
    assert _alertnames(fluxes["source_matchers"]) == flux
    assert _alertnames(fluxes["target_matchers"]) == flux
