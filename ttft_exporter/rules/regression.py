"""Latency regression alerts: TTFTLatencyRegression (p95 TTFT above an absolute
threshold), TTFTRelativeRegression (p95 TTFT well above its own history) and
TokensPerSecondDrop (decode rate well below its own history).

Each reads its recorded series per scenario, never the cold probe's (`warm()`): the
recording rules already leave it out, and the matcher here also keeps out cold
series recorded by older rules (still inside the 7-day baselines after an upgrade)
or by a recording rule of the user's own."""

from __future__ import annotations

from ttft_exporter.rules.common import (
    Context,
    Group,
    Rule,
    alert,
    lines,
    number,
    prom_float,
)
from ttft_exporter.rules.recording import TTFT
from ttft_exporter.rules.resolve import Resolution
from ttft_exporter.slo import SLOsConfig

__all__ = ["LATENCY_ALERTS", "LATENCY_ALERT_GROUP", "latency_alerts"]

LATENCY_ALERT_GROUP = "ttft_latency_alerts"
LATENCY_ALERTS = ("TTFTLatencyRegression", "TTFTRelativeRegression", "TokensPerSecondDrop")
_WHO = "{{ $labels.target }} ({{ $labels.model }}, {{ $labels.protocol }})"
_DAY = 86400


def _absolute(res: Resolution, slos: SLOsConfig, ctx: Context) -> list[Rule]:
    rules = []
    for override in res.ttft_thresholds:
        threshold = prom_float(override.value)
        sel = override.selection.warm()
        rules.append(
            alert(
                ctx,
                "TTFTLatencyRegression",
                f"{sel.series(f'target:{TTFT}:p95_5m')} > {threshold}",
                for_=ctx(300),
                # p95 of ~20 synthetic probes over 5m is noisy: a ticket by default;
                # the page comes from the TTFT burn-rate alert.
                severity=slos.ttft_regression_severity,
                summary="p95 time to first token is above its threshold",
                # The rule's own labels are not in $labels when annotations are
                # expanded (only the series' are), so the value is written in.
                description=(
                    f"p95 TTFT of {_WHO} over the last 5m is "
                    f'{{{{ printf "%.2f" $value }}}}s, above its {threshold}s '
                    "threshold for 5m."
                ),
                labels=override.labels(),
                annotations={"threshold": threshold},
            )
        )
    return rules


def _relative(res: Resolution, ctx: Context) -> list[Rule]:
    rules = []
    for override in res.regressions:
        params, sel = override.value, override.selection.warm()
        current = sel.series(f"target:{TTFT}:p95_30m")
        day_ago = sel.series(f"target:{TTFT}:p95_30m", offset=ctx(_DAY))
        baseline = sel.series(f"target:{TTFT}:p95_30m_median7d")
        factor, floor = number(params.factor), prom_float(params.floor)
        rules.append(
            alert(
                ctx,
                "TTFTRelativeRegression",
                lines(
                    f"{current} > {floor}",
                    "and",
                    f"{current} > {factor} * {day_ago}",
                    "and",
                    f"{current} > {factor} * {baseline}",
                ),
                for_=ctx(900),
                severity="warning",
                summary="p95 time to first token regressed against its own baseline",
                description=(
                    f"p95 TTFT of {_WHO} over 30m is "
                    f'{{{{ printf "%.2f" $value }}}}s: more than {factor}x both its '
                    "value a day ago and its 7-day median, and above the "
                    f"{floor}s floor."
                ),
                labels=override.labels(),
                annotations={"factor": factor, "floor": floor},
            )
        )
    return rules


def _tokens(slos: SLOsConfig, ctx: Context) -> Rule:
    sel = ctx.warm()
    current = sel.series("target:ttft_probe_output_tokens_per_second:rate30m")
    day_ago = sel.series("target:ttft_probe_output_tokens_per_second:rate30m", offset=ctx(_DAY))
    baseline = sel.series("target:ttft_probe_output_tokens_per_second:rate30m_median7d")
    ratio = number(slos.tokens_per_second_drop)
    return alert(
        ctx,
        "TokensPerSecondDrop",
        lines(
            f"{current} < {ratio} * {day_ago}",
            "and",
            f"{current} < {ratio} * {baseline}",
        ),
        for_=ctx(900),
        severity="warning",
        summary="Decode rate (output tokens/s) dropped against its own baseline",
        description=(
            f"Output tokens/s of {_WHO} over 30m is "
            '{{ printf "%.2f" $value }}, below '
            f"{ratio}x both its value a day ago and its 7-day median."
        ),
        annotations={"ratio": ratio},
    )


def latency_alerts(res: Resolution, slos: SLOsConfig, ctx: Context) -> Group:
    """The latency alert group."""
    return Group(
        LATENCY_ALERT_GROUP,
        [*_absolute(res, slos, ctx), *_relative(res, ctx), _tokens(slos, ctx)],
    )
