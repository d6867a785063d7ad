"""Flux event-stream alerts: FluxStreamDown, FluxStreamStale, FluxEventRateDrop,
FluxCanaryPropagationSlow and FluxCanaryFailing. They are generated whether or not
this config watches a Flux instance (without Flux series they never fire), so one
rule set serves exporters with and without Flux."""

from __future__ import annotations

from decimal import Decimal

from ttft_exporter.rules.common import (
    BY_FLUX,
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


def _slow(res: Resolution, slos: SLOsConfig, timing: Timing) -> list[Rule]:
    pairs = with_overrides("flux", slos.flux_canary_threshold, res.canary_thresholds)
    return [
        alert(
            "FluxCanaryPropagationSlow",
            f"flux:ttft_flux_canary_propagation_seconds:p95_5m{matchers(member)} "
            f"> {prom_float(threshold)}",
            for_=timing(600),
            severity="warning",
            summary="Flux canary events take too long to reach the stream",
            description=(
                "p95 canary propagation (publish to state_update on the WebSocket) of Flux "
                'instance {{ $labels.flux }} over 5m is {{ printf "%.2f" $value }}s, above '
                f"the {prom_float(threshold)}s threshold for 10m."
            ),
            labels={"threshold": prom_float(threshold)},
        )
        for threshold, member in pairs
    ]


def _failing(slos: SLOsConfig, timing: Timing) -> Rule:
    w = timing(600)
    ratio = number(Decimal(str(slos.failure_ratio)))
    failures = f"sum by ({BY_FLUX}) (rate(ttft_flux_canary_failures_total[{w}]))"
    checks = (
        f"({failures} + sum by ({BY_FLUX}) (rate(ttft_flux_canary_propagation_seconds_count[{w}])))"
    )
    return alert(
        "FluxCanaryFailing",
        lines(
            f"sum by ({BY_FLUX}, reason) (rate(ttft_flux_canary_failures_total[{w}]))",
            f"/ on ({BY_FLUX}) group_left ()",
            checks,
            "> 0",
            f"and on ({BY_FLUX})",
            f"{failures} / {checks} > {ratio}",
        ),
        for_=timing(300),
        severity="critical",
        summary="Flux canary checks are failing",
        description=(
            f"More than {ratio} of the canary checks of Flux instance {{{{ $labels.flux }}}} "
            "failed over the last 10m; reason {{ $labels.reason }} accounts for a ratio of "
            '{{ printf "%.2f" $value }} of all checks.'
        ),
    )


def flux_alerts(res: Resolution, slos: SLOsConfig, timing: Timing) -> Group:
    """The Flux alert group."""
    current = "flux:ttft_flux_events_processed:rate30m"
    drop = number(slos.flux_event_rate_drop)
    return Group(
        FLUX_ALERT_GROUP,
        [
            alert(
                "FluxStreamDown",
                "ttft_flux_up == 0",
                for_=timing(300),
                severity="critical",
                summary="Flux event stream is down",
                description=(
                    "The WebSocket of Flux instance {{ $labels.flux }} has been disconnected "
                    "or stale for 5m: entity state updates do not reach subscribers."
                ),
            ),
            alert(
                "FluxStreamStale",
                "ttft_flux_stale == 1",
                for_=timing(60),
                severity="warning",
                summary="Flux event stream is stale",
                description=(
                    "Flux instance {{ $labels.flux }} has sent no message (not even its "
                    "periodic metrics_update) for longer than stale_after, for 1m."
                ),
            ),
            alert(
                "FluxEventRateDrop",
                lines(
                    f"{current} < {drop} * ({current} offset {timing(_DAY)})",
                    "and",
                    f"{current} < {drop} * {current}_median7d",
                ),
                for_=timing(900),
                severity="warning",
                summary="Flux event rate dropped against its own baseline",
                description=(
                    "Flux instance {{ $labels.flux }} processed "
                    '{{ printf "%.2f" $value }} events/s over 30m, below '
                    f"{drop}x both its rate a day ago and its 7-day median."
                ),
            ),
            *_slow(res, slos, timing),
            _failing(slos, timing),
        ],
    )
