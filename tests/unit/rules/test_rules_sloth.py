"""`ttft-exporter rules --format=sloth`: Sloth prometheus/v1 specs of the same SLOs,
whose SLI queries are exactly the ones our own rules record."""

from __future__ import annotations

from typing import Any

import yaml

from tests.unit.rules.conftest import EXAMPLE_SOURCE
from ttft_exporter.config import Config
from ttft_exporter.rules import build_rule_files
from ttft_exporter.rules.common import Context
from ttft_exporter.rules.sloth import SLOTH_WINDOW, render_sloth


def _specs(config: Config) -> list[dict[str, Any]]:
    text = render_sloth(config, Context(), source=EXAMPLE_SOURCE)
    assert text.startswith("# Sloth prometheus/v1 specs")
    assert "--default-slo-period=28d" in text
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_one_spec_per_service(example_config: Config) -> None:
    specs = _specs(example_config)
    assert [(s["version"], s["service"]) for s in specs] == [
        ("prometheus/v1", "env-prod"),
        ("prometheus/v1", "ollama-qwen"),
        ("prometheus/v1", "env-saas"),
    ]
    prod = specs[0]["slos"]
    assert [(slo["name"], slo["objective"]) for slo in prod] == [
        ("ttft-latency", 99.0),
        ("availability", 99.5),
        ("tpot-latency", 99.0),
    ]
    for slo in prod:
        alerting = slo["alerting"]
        assert alerting["page_alert"]["labels"] == {"severity": "critical"}
        assert alerting["ticket_alert"]["labels"] == {"severity": "warning"}
        assert alerting["annotations"]["runbook_url"].endswith(alerting["name"].lower())
        assert "vllm-llama" in slo["description"]


def test_sli_queries_are_the_recorded_ones(example_config: Config) -> None:
    """Sloth renders `(error) / (total)` with `{{.window}}` filled in; ours adds only
    the no-traffic guard. Same queries, same series."""
    recorded = {
        (rule["labels"]["sloth_service"], rule["labels"]["sloth_slo"]): rule["expr"]
        for f in build_rule_files(example_config)
        for group in f.groups
        for rule in group.rules
        if rule.get("record") == "slo:sli_error:ratio_rate5m"
    }
    seen = set()
    for spec in _specs(example_config):
        for slo in spec["slos"]:
            events = slo["sli"]["events"]
            assert SLOTH_WINDOW in events["error_query"] and SLOTH_WINDOW in events["total_query"]
            ours = recorded[(spec["service"], slo["name"])]
            error = events["error_query"].replace(SLOTH_WINDOW, "5m")
            total = events["total_query"].replace(SLOTH_WINDOW, "5m")
            for line in (*error.splitlines(), *total.splitlines()):
                assert line.strip() in ours
            seen.add((spec["service"], slo["name"]))
    assert seen == set(recorded)


def test_time_based_sli_is_raw(flux_config: Config) -> None:
    text = render_sloth(flux_config, Context(), source="flux-slos.yml")
    (spec,) = [doc for doc in yaml.safe_load_all(text) if doc]
    stream = next(slo for slo in spec["slos"] if slo["name"] == "flux-stream-up")
    assert stream["sli"]["raw"]["error_ratio_query"].startswith("1 - avg without (instance, pod)")
