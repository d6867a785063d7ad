"""Probe health and exporter health alerts: LLMProbeFailing (by reason),
LLMProbeAbsent (per configured target), TTFTExporterDown and
TTFTExporterConfigReloadFailed."""

from __future__ import annotations

from decimal import Decimal

from ttft_exporter.rules.common import (
    BY_TARGET,
    Group,
    Rule,
    Timing,
    alert,
    lines,
    matchers,
    member_matcher,
    number,
)
from ttft_exporter.rules.resolve import Resolution
from ttft_exporter.slo import SLOsConfig

__all__ = [
    "EXPORTER_ALERTS",
    "EXPORTER_ALERT_GROUP",
    "PROBE_ALERTS",
    "PROBE_ALERT_GROUP",
    "exporter_alerts",
    "probe_alerts",
]

PROBE_ALERT_GROUP = "ttft_probe_alerts"
EXPORTER_ALERT_GROUP = "ttft_exporter_alerts"
PROBE_ALERTS = ("LLMProbeFailing", "LLMProbeAbsent")
EXPORTER_ALERTS = ("TTFTExporterDown", "TTFTExporterConfigReloadFailed")


def _failing(slos: SLOsConfig, timing: Timing) -> Rule:
    w = timing(300)
    ratio = number(Decimal(str(slos.failure_ratio)))
    requests = f"sum by ({BY_TARGET}) (rate(ttft_probe_requests_total[{w}]))"
    failed = f'sum by ({BY_TARGET}) (rate(ttft_probe_requests_total{{outcome="failure"}}[{w}]))'
    return alert(
        "LLMProbeFailing",
        # One alert per reason present (its value: that reason's share of all probes),
        # but only while the failures together pass the ratio, so a reason that
        # shows up once among successes does not page.
        lines(
            f"sum by ({BY_TARGET}, reason) (rate(ttft_probe_failures_total[{w}]))",
            f"/ on ({BY_TARGET}) group_left ()",
            f"{requests}",
            "> 0",
            f"and on ({BY_TARGET})",
            f"{failed} / {requests} > {ratio}",
        ),
        for_=timing(300),
        severity="critical",
        summary="LLM probes are failing",
        description=(
            "More than "
            f"{ratio} of the probes of {{{{ $labels.target }}}} ({{{{ $labels.model }}}}) "
            "failed over the last 5m; reason {{ $labels.reason }} accounts for a ratio of "
            '{{ printf "%.2f" $value }} of all probes.'
        ),
    )


def _absent(res: Resolution, timing: Timing) -> Rule | None:
    if not res.targets:
        return None
    # absent() copies the equality matchers into its labels, so each branch yields
    # {target="<name>"}: one alert per missing target, from one rule.
    expr = "\nor\n".join(
        f"absent(ttft_probe_requests_total{matchers(member_matcher('target', [name]))})"
        for name in res.targets
    )
    return alert(
        "LLMProbeAbsent",
        expr,
        for_=timing(600),
        severity="warning",
        summary="No probe results for a configured target",
        description=(
            "Prometheus has no ttft_probe_requests_total series for target "
            "{{ $labels.target }} for 10m: the exporter does not probe it (config out of "
            "sync with these rules) or Prometheus does not scrape the exporter."
        ),
    )


def probe_alerts(res: Resolution, slos: SLOsConfig, timing: Timing) -> Group:
    """The probe health group."""
    rules = [_failing(slos, timing)]
    absent = _absent(res, timing)
    if absent is not None:
        rules.append(absent)
    return Group(PROBE_ALERT_GROUP, rules)


def exporter_alerts(slos: SLOsConfig, timing: Timing) -> Group:
    """The exporter's own health group."""
    up = f"up{matchers(f'job=~{_string(slos.exporter_job)}')}"
    return Group(
        EXPORTER_ALERT_GROUP,
        [
            alert(
                "TTFTExporterDown",
                f"{up} == 0\nor\nabsent({up})",
                for_=timing(300),
                severity="critical",
                summary="ttft_exporter is down or not scraped",
                description=(
                    "Prometheus could not scrape ttft_exporter"
                    "{{ if $labels.instance }} at {{ $labels.instance }}{{ end }} "
                    f"(or finds no target of a job matching {slos.exporter_job}) for 5m: "
                    "no LLM probe or Flux results arrive, and every other ttft alert is blind."
                ),
            ),
            alert(
                "TTFTExporterConfigReloadFailed",
                "ttft_exporter_config_last_reload_successful == 0",
                for_=timing(300),
                severity="warning",
                summary="ttft_exporter configuration reload failed",
                description=(
                    "ttft_exporter at {{ $labels.instance }} could not load its configuration "
                    "file for 5m and keeps running the previous configuration."
                ),
            ),
        ],
    )


def _string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
