"""Flux event-stream alerts: FluxStreamDown, FluxStreamStale, FluxEventRateDrop,
FluxCanaryPropagationSlow and FluxCanaryFailing. They are generated whether or not
this config watches a Flux instance (without Flux series they never fire), so one
rule set serves exporters with and without Flux."""

from __future__ import annotations

from decimal import Decimal

from ttft_exporter.rules.common import (
    Context,
    Group,
    Rule,
    alert,
    lines,
    number,
    prom_float,
    without,
)
from ttft_exporter.rules.resolve import Resolution
from ttft_exporter.slo import SLOsConfig

__all__ = ["FLUX_ALERTS", "FLUX_ALERT_GROUP", "flux_alerts"]

FLUX_ALERT_GROUP = "ttft_flux_alerts"
FLUX_ALERTS = (
    "FluxStreamDown",
    "FluxStreamStale",
    "FluxEventRateDrop",
    "FluxCanaryPropagationSlow",
    "FluxCanaryFailing",
)
_DAY = 86400


def _slow(res: Resolution, ctx: Context) -> list[Rule]:
    rules = []
    for override in res.canary_thresholds:
        threshold = prom_float(override.value)
        p95 = override.selection.series("flux:ttft_flux_canary_propagation_seconds:p95_5m")
        rules.append(
            alert(
                ctx,
                "FluxCanaryPropagationSlow",
                f"{p95} > {threshold}",
                for_=ctx(600),
                severity="warning",
                summary="Flux canary events take too long to reach the stream",
                description=(
                    "p95 canary propagation (publish to state_update on the WebSocket) of "
                    'Flux instance {{ $labels.flux }} over 5m is {{ printf "%.2f" $value }}s, '
                    f"above the {threshold}s threshold for 10m."
                ),
                labels=override.labels(),
                annotations={"threshold": threshold},
            )
        )
    return rules


def _failing(slos: SLOsConfig, ctx: Context) -> Rule:
    w = ctx(600)
    sel = ctx.everything()
    ratio = number(Decimal(str(slos.failure_ratio)))
    by_reason = f"sum {without()} ({sel.rate('ttft_flux_canary_failures_total', w)})"
    failures = f"sum {without('reason')} ({sel.rate('ttft_flux_canary_failures_total', w)})"
    seen = sel.rate("ttft_flux_canary_propagation_seconds_count", w)
    checks = f"({failures} + sum {without()} ({seen}))"
    return alert(
        ctx,
        "FluxCanaryFailing",
        lines(
            by_reason,
            "/ ignoring (reason) group_left ()",
            checks,
            "> 0",
            "and ignoring (reason)",
            f"{failures} / {checks} > {ratio}",
        ),
        for_=ctx(300),
        severity="critical",
        summary="Flux canary checks are failing",
        description=(
            f"More than {ratio} of the canary checks of Flux instance {{{{ $labels.flux }}}} "
            "failed over the last 10m; reason {{ $labels.reason }} accounts for a ratio of "
            '{{ printf "%.2f" $value }} of all checks.'
        ),
        annotations={"failure_ratio": ratio},
    )


def flux_alerts(res: Resolution, slos: SLOsConfig, ctx: Context) -> Group:
    """The Flux alert group."""
    sel = ctx.everything()
    current = sel.series("flux:ttft_flux_events_processed:rate30m")
    day_ago = sel.series("flux:ttft_flux_events_processed:rate30m", offset=ctx(_DAY))
    baseline = sel.series("flux:ttft_flux_events_processed:rate30m_median7d")
    drop = number(slos.flux_event_rate_drop)
    return Group(
        FLUX_ALERT_GROUP,
        [
            alert(
                ctx,
                "FluxStreamDown",
                f"{sel.series('ttft_flux_up')} == 0",
                for_=ctx(300),
                severity="critical",
                summary="Flux event stream is down",
                description=(
                    "The WebSocket of Flux instance {{ $labels.flux }} has been disconnected "
                    "or stale for 5m: entity state updates do not reach subscribers."
                ),
            ),
            alert(
                ctx,
                "FluxStreamStale",
                f"{sel.series('ttft_flux_stale')} == 1",
                for_=ctx(60),
                severity="warning",
                summary="Flux event stream is stale",
                description=(
                    "Flux instance {{ $labels.flux }} has sent no message (not even its "
                    "periodic metrics_update) for longer than stale_after, for 1m."
                ),
            ),
            alert(
                ctx,
                "FluxEventRateDrop",
                lines(
                    f"{current} < {drop} * {day_ago}",
                    "and",
                    f"{current} < {drop} * {baseline}",
                ),
                for_=ctx(900),
                severity="warning",
                summary="Flux event rate dropped against its own baseline",
                description=(
                    "Flux instance {{ $labels.flux }} processed "
                    '{{ printf "%.2f" $value }} events/s over 30m, below '
                    f"{drop}x both its rate a day ago and its 7-day median."
                ),
                annotations={"ratio": drop},
            ),
            *_slow(res, ctx),
            _failing(slos, ctx),
        ],
    )
