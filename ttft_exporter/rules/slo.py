"""SLO rules with Sloth-compatible names: SLI error ratios per window
(`slo:sli_error:ratio_rate5m` ... `ratio_rate3d`, and one over the SLO period),
error budget meta rules, and the SRE Workbook's multi-window multi-burn-rate alerts.

Labels (our own, documented in docs/runbooks.md): every rule of an SLO carries
`slo` (the kind: ttft-latency, availability, tpot-latency, flux-canary-propagation,
flux-stream-up), `slo_objective`, `slo_threshold` (latency kinds, seconds) and
`slo_period`; SLI series also carry `slo_window`. The member is the `target` (or
`flux`) label of the series itself, as every SLI is aggregated per member.

Probes run at a fixed interval, so traffic is uniform and the period ratio as the
mean of 5m ratios (Sloth's method) is not biased by traffic swings as it would be
for user traffic. 5m windows without events produce no sample (`> 0` guards), so
an outage of a latency SLI does not poison 28 days of averages with NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from ttft_exporter.rules.common import (
    BY_FLUX,
    BY_TARGET,
    Group,
    Rule,
    Timing,
    alert,
    format_duration,
    lines,
    matchers,
    member_matcher,
    number,
    prom_float,
    record,
)
from ttft_exporter.rules.resolve import SLOGroup, SLOKind

__all__ = [
    "BURN_PAIRS",
    "SLI_WINDOWS",
    "SLO_ALERTS",
    "SLO_ALERT_GROUP",
    "SLO_META_GROUP",
    "SLO_SLI_GROUP",
    "BurnPair",
    "slo_groups",
]

SLO_SLI_GROUP = "ttft_slo_sli"
SLO_META_GROUP = "ttft_slo_meta"
SLO_ALERT_GROUP = "ttft_slo_alerts"

# Every window a burn-rate pair uses, in seconds.
SLI_WINDOWS = (300, 1800, 3600, 7200, 21600, 86400, 259200)


@dataclass(frozen=True)
class BurnPair:
    """One long/short window pair: fires when both burn faster than `factor`."""

    severity: str
    long: int
    short: int
    factor: Decimal
    for_: int


# SRE Workbook ch. 5, approach 6 (Sloth's google-30d table): 2% of the budget in 1h
# or 5% in 6h page; 10% in 1d or 3d open a ticket. The short window (1/12 of the
# long one) makes the alert stop soon after the burn stops. Pyrra adds a short
# `for:` so one bad scrape cannot page; tickets wait longer.
BURN_PAIRS = (
    BurnPair("critical", 3600, 300, Decimal("14.4"), 120),
    BurnPair("critical", 21600, 1800, Decimal("6"), 120),
    BurnPair("warning", 86400, 7200, Decimal("3"), 900),
    BurnPair("warning", 259200, 21600, Decimal("1"), 900),
)


@dataclass(frozen=True)
class _Kind:
    alert: str
    summary: str
    # What the objective promises, as a template over the SLI labels.
    promise: str
    sli: Callable[[SLOGroup, str], str]


def _latency_sli(metric: str, by: str) -> Callable[[SLOGroup, str], str]:
    """Bad = observations above the threshold bucket: an exact bucket ratio, since
    every threshold is a bucket boundary (SLOsConfig.thresholds)."""

    def sli(group: SLOGroup, window: str) -> str:
        assert group.threshold is not None  # noqa: S101 - latency kinds always have one
        member = member_matcher(group.member_label, group.members)
        le = matchers(member, {"le": prom_float(group.threshold)})
        count = f"sum by ({by}) (rate({metric}_count{matchers(member)}[{window}]))"
        return lines(
            "(",
            f"  {count}",
            "  -",
            f"  sum by ({by}) (rate({metric}_bucket{le}[{window}]))",
            ")",
            "/",
            f"({count} > 0)",
        )

    return sli


def _availability_sli(group: SLOGroup, window: str) -> str:
    member = member_matcher("target", group.members)
    failed = matchers(member, {"outcome": "failure"})
    return lines(
        f"sum by ({BY_TARGET}) (rate(ttft_probe_requests_total{failed}[{window}]))",
        "/",
        f"(sum by ({BY_TARGET}) (rate(ttft_probe_requests_total{matchers(member)}[{window}])) > 0)",
    )


def _canary_sli(group: SLOGroup, window: str) -> str:
    """Bad = canaries slower than the threshold plus canaries that failed outright
    (failed checks are not observed in the propagation histogram)."""
    assert group.threshold is not None  # noqa: S101
    member = member_matcher("flux", group.members)
    metric = "ttft_flux_canary_propagation_seconds"
    le = matchers(member, {"le": prom_float(group.threshold)})
    count = f"sum by ({BY_FLUX}) (rate({metric}_count{matchers(member)}[{window}]))"
    failed = (
        f"sum by ({BY_FLUX}) (rate(ttft_flux_canary_failures_total{matchers(member)}[{window}]))"
    )
    return lines(
        "(",
        f"  {count}",
        f"  - sum by ({BY_FLUX}) (rate({metric}_bucket{le}[{window}]))",
        f"  + {failed}",
        ")",
        "/",
        f"(({count} + {failed}) > 0)",
    )


def _stream_sli(group: SLOGroup, window: str) -> str:
    """Time-based: the share of the window the stream was not up."""
    member = matchers(member_matcher("flux", group.members))
    return f"1 - avg by ({BY_FLUX}) (avg_over_time(ttft_flux_up{member}[{window}]))"


_TARGET_WHO = "{{ $labels.target }} ({{ $labels.model }})"
_KINDS: dict[SLOKind, _Kind] = {
    SLOKind.TTFT: _Kind(
        "TTFTErrorBudgetBurn",
        "TTFT SLO error budget is burning too fast",
        f"TTFT SLO of {_TARGET_WHO}: {{{{ $labels.slo_objective }}}} of successful probes "
        "within {{ $labels.slo_threshold }}s over {{ $labels.slo_period }}.",
        _latency_sli("ttft_probe_time_to_first_token_seconds", BY_TARGET),
    ),
    SLOKind.AVAILABILITY: _Kind(
        "LLMAvailabilityErrorBudgetBurn",
        "LLM availability SLO error budget is burning too fast",
        f"Availability SLO of {_TARGET_WHO}: {{{{ $labels.slo_objective }}}} of probes "
        "succeed over {{ $labels.slo_period }}.",
        _availability_sli,
    ),
    SLOKind.TPOT: _Kind(
        "TPOTErrorBudgetBurn",
        "TPOT SLO error budget is burning too fast",
        f"TPOT SLO of {_TARGET_WHO}: {{{{ $labels.slo_objective }}}} of probes with a time "
        "per output token within {{ $labels.slo_threshold }}s over {{ $labels.slo_period }}.",
        _latency_sli("ttft_probe_time_per_output_token_seconds", BY_TARGET),
    ),
    SLOKind.FLUX_CANARY: _Kind(
        "FluxCanaryErrorBudgetBurn",
        "Flux canary propagation SLO error budget is burning too fast",
        "Canary SLO of Flux instance {{ $labels.flux }}: {{ $labels.slo_objective }} of "
        "canary events seen on the stream within {{ $labels.slo_threshold }}s over "
        "{{ $labels.slo_period }}.",
        _canary_sli,
    ),
    SLOKind.FLUX_STREAM: _Kind(
        "FluxStreamErrorBudgetBurn",
        "Flux stream availability SLO error budget is burning too fast",
        "Stream SLO of Flux instance {{ $labels.flux }}: up {{ $labels.slo_objective }} "
        "of the time over {{ $labels.slo_period }}.",
        _stream_sli,
    ),
}
SLO_ALERTS = tuple(kind.alert for kind in _KINDS.values())


def _sli_name(seconds: float) -> str:
    return f"slo:sli_error:ratio_rate{format_duration(seconds)}"


def _series(group: SLOGroup, seconds: float) -> str:
    """The SLI series of one window of this SLO (selected by its identity labels)."""
    window = {"slo_window": format_duration(seconds)}
    return f"{_sli_name(seconds)}{matchers(group.ids(), window)}"


def _sli_rules(group: SLOGroup, timing: Timing) -> list[Rule]:
    kind = _KINDS[group.kind]
    rules = []
    for seconds in SLI_WINDOWS:
        rule = record(
            _sli_name(seconds),
            kind.sli(group, timing(seconds)),
            {**group.ids(), "slo_window": format_duration(seconds)},
        )
        rule["_comment"] = (
            f"{group.kind.value} SLI of {', '.join(group.members)}: error ratio over "
            f"{format_duration(seconds)}."
        )
        rules.append(rule)
    five = _series(group, 300)
    period = record(
        _sli_name(group.period),
        f"sum_over_time({five}[{timing(group.period)}])\n/\ncount_over_time({five}[{timing(group.period)}])",
        {**group.ids(), "slo_window": format_duration(group.period)},
    )
    period["_comment"] = (
        f"{group.kind.value} SLI of {', '.join(group.members)}: error ratio over the "
        f"{format_duration(group.period)} period (mean of the 5m ratios)."
    )
    rules.append(period)
    return rules


def _meta_rules(group: SLOGroup) -> list[Rule]:
    budget = number(group.budget)
    burn = record(
        "slo:current_burn_rate:ratio",
        f"max without (slo_window) ({_series(group, 300)}) / {budget}",
        group.ids(),
    )
    burn["_comment"] = f"{group.kind.value}: how many times faster than sustainable (5m)."
    remaining = record(
        "slo:period_error_budget_remaining:ratio",
        f"1 - max without (slo_window) ({_series(group, group.period)}) / {budget}",
        group.ids(),
    )
    remaining["_comment"] = (
        f"{group.kind.value}: share of the {format_duration(group.period)} error budget left "
        "(negative once overspent)."
    )
    return [burn, remaining]


def _alert_rules(group: SLOGroup, timing: Timing) -> list[Rule]:
    kind = _KINDS[group.kind]
    budget = number(group.budget)
    rules = []
    for pair in BURN_PAIRS:
        factor = number(pair.factor)
        long_w, short_w = format_duration(pair.long), format_duration(pair.short)
        expr = lines(
            f"max without (slo_window) ({_series(group, pair.long)}) / {budget} > {factor}",
            "and",
            f"max without (slo_window) ({_series(group, pair.short)}) / {budget} > {factor}",
        )
        action = "page" if pair.severity == "critical" else "ticket"
        rules.append(
            alert(
                kind.alert,
                expr,
                for_=timing(pair.for_),
                severity=pair.severity,
                summary=kind.summary,
                description=(
                    f'{kind.promise} The error budget burns {{{{ printf "%.2f" $value }}}}x '
                    f"as fast as sustainable over {long_w}, and over {short_w} too "
                    f"({action} threshold {factor}x)."
                ),
                labels={**group.ids(), "long_window": long_w, "short_window": short_w},
            )
        )
    return rules


def slo_groups(slos: tuple[SLOGroup, ...], timing: Timing) -> list[Group]:
    """The SLI, meta and alert groups; none when no SLO is configured."""
    if not slos:
        return []
    sli, meta, alerts = Group(SLO_SLI_GROUP), Group(SLO_META_GROUP), Group(SLO_ALERT_GROUP)
    for group in slos:
        sli.rules += _sli_rules(group, timing)
        meta.rules += _meta_rules(group)
        alerts.rules += _alert_rules(group, timing)
    return [sli, meta, alerts]
