"""Latency regression alerts: TTFTLatencyRegression (p95 TTFT above an absolute
threshold), TTFTRelativeRegression (p95 TTFT well above its own history) and
TokensPerSecondDrop (decode rate well below its own history)."""

from __future__ import annotations

from ttft_exporter.rules.common import (
    Group,
    Rule,
    Timing,
    alert,
    lines,
    matchers,
    number,
    prom_float,
    with_overrides,
)
from ttft_exporter.rules.recording import TTFT
from ttft_exporter.rules.resolve import Resolution
from ttft_exporter.slo import SLOsConfig

__all__ = ["LATENCY_ALERTS", "LATENCY_ALERT_GROUP", "latency_alerts"]

LATENCY_ALERT_GROUP = "ttft_latency_alerts"
LATENCY_ALERTS = ("TTFTLatencyRegression", "TTFTRelativeRegression", "TokensPerSecondDrop")
_WHO = "{{ $labels.target }} ({{ $labels.model }}, {{ $labels.protocol }})"
_DAY = 86400


def _absolute(res: Resolution, slos: SLOsConfig, timing: Timing) -> list[Rule]:
    rules = []
    for threshold, member in with_overrides("target", slos.ttft_threshold, res.ttft_thresholds):
        rules.append(
            alert(
                "TTFTLatencyRegression",
                f"target:{TTFT}:p95_5m{matchers(member)} > {prom_float(threshold)}",
                for_=timing(300),
                severity="critical",
                summary="p95 time to first token is above its threshold",
                # The rule's own labels are not in $labels when annotations are
                # expanded (only the series' are), so the value is written in.
                description=(
                    f"p95 TTFT of {_WHO} over the last 5m is "
                    f'{{{{ printf "%.2f" $value }}}}s, above its {prom_float(threshold)}s '
                    "threshold for 5m."
                ),
                labels={"threshold": prom_float(threshold)},
            )
        )
    return rules


def _relative(res: Resolution, slos: SLOsConfig, timing: Timing) -> list[Rule]:
    rules = []
    for params, member in with_overrides("target", slos.regression, res.regressions):
        current = f"target:{TTFT}:p95_30m{matchers(member)}"
        factor = number(params.factor)
        rules.append(
            alert(
                "TTFTRelativeRegression",
                lines(
                    f"{current} > {prom_float(params.floor)}",
                    "and",
                    f"{current} > {factor} * ({current} offset {timing(_DAY)})",
                    "and",
                    f"{current} > {factor} * target:{TTFT}:p95_30m_median7d{matchers(member)}",
                ),
                for_=timing(900),
                severity="warning",
                summary="p95 time to first token regressed against its own baseline",
                description=(
                    f"p95 TTFT of {_WHO} over 30m is "
                    f'{{{{ printf "%.2f" $value }}}}s: more than {factor}x both its '
                    "value a day ago and its 7-day median, and above the "
                    f"{prom_float(params.floor)}s floor."
                ),
                labels={"factor": factor, "floor": prom_float(params.floor)},
            )
        )
    return rules


def _tokens(slos: SLOsConfig, timing: Timing) -> Rule:
    current = "target:ttft_probe_output_tokens_per_second:rate30m"
    ratio = number(slos.tokens_per_second_drop)
    return alert(
        "TokensPerSecondDrop",
        lines(
            f"{current} < {ratio} * ({current} offset {timing(_DAY)})",
            "and",
            f"{current} < {ratio} * {current}_median7d",
        ),
        for_=timing(900),
        severity="warning",
        summary="Decode rate (output tokens/s) dropped against its own baseline",
        description=(
            f"Output tokens/s of {_WHO} over 30m is "
            '{{ printf "%.2f" $value }}, below '
            f"{ratio}x both its value a day ago and its 7-day median."
        ),
    )


def latency_alerts(res: Resolution, slos: SLOsConfig, timing: Timing) -> Group:
    """The latency alert group."""
    return Group(
        LATENCY_ALERT_GROUP,
        [*_absolute(res, slos, timing), *_relative(res, slos, timing), _tokens(slos, timing)],
    )
