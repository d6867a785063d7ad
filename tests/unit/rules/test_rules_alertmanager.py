"""alerts/alertmanager/alertmanager.yml against the real amtool 0.25: the config is
valid, and every severity the rules emit routes to the receiver it should. The
inhibition rules are exercised in a running Alertmanager by
tests/integration/test_alerting_e2e.py."""

from __future__ import annotations

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
        (["severity=critical", "alertname=TTFTLatencyRegression", "target=vllm-llama"], "pager"),
        (["severity=warning", "alertname=TTFTRelativeRegression", "target=vllm-llama"], "tickets"),
        (["severity=critical", "alertname=FluxStreamDown", "flux=flux-prod"], "pager"),
        (["severity=warning", "alertname=FluxStreamStale", "flux=flux-prod"], "tickets"),
        # Without a known severity an alert must still reach a human.
        (["alertname=SomethingElse"], "tickets"),
        (["severity=info", "alertname=SomethingElse"], "tickets"),
    ],
    ids=["critical", "warning", "flux-critical", "flux-warning", "no-severity", "info"],
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
    critical = config["inhibit_rules"][0]
    assert critical["source_matchers"] == ['severity="critical"']
    assert critical["target_matchers"] == ['severity="warning"']
    assert critical["equal"] == ["target", "flux"]
