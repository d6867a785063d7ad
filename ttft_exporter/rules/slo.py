"""SLO rules exactly as Sloth generates them, so Sloth's Grafana dashboards work on
them unchanged: per SLO three groups (`sloth-slo-sli-recordings-<id>`,
`sloth-slo-meta-recordings-<id>`, `sloth-slo-alerts-<id>`), the series
`slo:sli_error:ratio_rate<window>` for 5m ... 3d and the period, the meta series
(`slo:objective:ratio`, `slo:error_budget:ratio`, `slo:time_period:days`, burn
rates, budget remaining, `sloth_slo_info`), Sloth's labels (`sloth_id`,
`sloth_service`, `sloth_slo`, `sloth_window`) and Sloth's page and ticket alerts.

Where we differ from a plain Sloth spec, on purpose:
- an SLI keeps every label but the exporter replica's (instance, pod) and the
  probe's scenario: one SLI series per target, carrying its static labels (team,
  env) and the scrape's topology labels (job, namespace, cluster), so alerts can be
  routed. The SLO is the target's: its scenarios (#10) are summed, as its users
  send every kind of request;
- the latency SLIs (TTFT, TPOT) leave out the cold probe (`scenario="cold"`, sent
  after the target was held idle): it is slow on purpose and would burn the budget
  at every scale from zero. The availability SLI counts it: a cold start that fails
  is a failure the users see;
- a probe that failed (timed out, refused, broke mid-stream) is a bad event of the
  latency SLIs too, and every attempted probe counts in their denominator: an outage
  never makes a latency SLO look healthier;
- burn-rate factors follow the SLO period (Sloth's formula: budget share consumed in
  the long window x period / long window), and the alerts wait a short `for:`.

Probes run at a fixed interval, so traffic is uniform and the period ratio as the
mean of the 5m ratios (Sloth's method) is not biased by traffic swings.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from ttft_exporter.rules.common import (
    SCENARIO,
    Context,
    Group,
    Rule,
    Selection,
    alert,
    format_duration,
    lines,
    matchers,
    number,
    prom_float,
    quote,
    record,
    without,
)
from ttft_exporter.rules.resolve import SLOGroup, SLOKind

__all__ = [
    "BURN_WINDOWS",
    "SLI_WINDOWS",
    "SLOTH_MODE",
    "SLOTH_SPEC",
    "SLOTH_VERSION",
    "SLO_ALERTS",
    "BurnWindow",
    "Events",
    "Raw",
    "burn_factor",
    "sli_of",
    "slo_groups",
]

# Every window a burn-rate pair uses, in seconds.
SLI_WINDOWS = (300, 1800, 3600, 7200, 21600, 86400, 259200)
SLOTH_SPEC = "prometheus/v1"
SLOTH_MODE = "cli-gen-prom"
SLOTH_VERSION = "ttft-exporter"


@dataclass(frozen=True)
class BurnWindow:
    """One long/short window pair: fires when both burn faster than the factor."""

    sloth_severity: str
    long: int
    short: int
    # Share of the whole period's error budget consumed within `long`.
    budget_share: Decimal
    for_: int

    @property
    def severity(self) -> str:
        """Our severity: a page is critical, a ticket a warning."""
        return "critical" if self.sloth_severity == "page" else "warning"


# SRE Workbook ch. 5, approach 6 (Sloth's google windows): 2% of the budget in 1h or
# 5% in 6h page; 10% in 1d or in 3d open a ticket. The short window (1/12 of the
# long one) makes the alert stop soon after the burn stops. As Pyrra does, a short
# `for:` keeps one bad evaluation from paging; tickets wait longer.
BURN_WINDOWS = (
    BurnWindow("page", 3600, 300, Decimal("0.02"), 120),
    BurnWindow("page", 21600, 1800, Decimal("0.05"), 120),
    BurnWindow("ticket", 86400, 7200, Decimal("0.1"), 900),
    BurnWindow("ticket", 259200, 21600, Decimal("0.1"), 900),
)


def burn_factor(window: BurnWindow, period: float) -> Decimal:
    """Sloth's factor: budget share x period / long window (14.4 for 1h in 30d,
    13.44 in 28d)."""
    return window.budget_share * Decimal(int(period)) / Decimal(window.long)


def _literal(value: Decimal) -> str:
    # 12 significant digits: 0.9333... as 0.933333333333, exact values unchanged.
    return number(Decimal(format(value, ".12g")))


@dataclass(frozen=True)
class Events:
    """An events SLI: bad events / all events (Sloth `sli.events`)."""

    error: str
    total: str


@dataclass(frozen=True)
class Raw:
    """A ratio SLI computed directly (Sloth `sli.raw`)."""

    error_ratio: str


SLI = Events | Raw


def _failed_probes(selection: Selection, window: str) -> str:
    rate = selection.rate("ttft_probe_requests_total", window, 'outcome="failure"')
    return f"sum {without(SCENARIO, 'outcome')} ({rate})"


def _latency_sli(
    metric: str, failed: Callable[[Selection, str], str], *, probe: bool
) -> Callable[[SLOGroup, str], SLI]:
    """Bad = events measured above the threshold bucket plus events that failed
    (their latency is unknown, and above any threshold below the timeout); total =
    measured + failed. Every threshold is a bucket boundary (SLOsConfig.thresholds),
    so this is an exact bucket ratio. For a `probe` metric both terms leave out the
    cold probe and sum the target's other scenarios (`failed` sums them too)."""
    drop = (SCENARIO,) if probe else ()

    def sli(group: SLOGroup, window: str) -> SLI:
        assert group.threshold is not None  # noqa: S101 - latency kinds always have one
        sel = group.selection.warm() if probe else group.selection
        measured = f"sum {without(*drop)} ({sel.rate(f'{metric}_count', window)})"
        le = f"le={quote(prom_float(group.threshold))}"
        good = f"sum {without(*drop, 'le')} ({sel.rate(f'{metric}_bucket', window, le)})"
        bad_runs = failed(sel, window)
        return Events(
            error=lines(bad_runs, "+", measured, "-", good),
            total=lines(bad_runs, "+", measured),
        )

    return sli


def _availability_sli(group: SLOGroup, window: str) -> SLI:
    """Every scenario, the cold probe included: a cold start that fails is a failure."""
    sel = group.selection
    requests = sel.rate("ttft_probe_requests_total", window)
    return Events(
        error=_failed_probes(sel, window),
        total=f"sum {without(SCENARIO, 'outcome')} ({requests})",
    )


def _failed_canaries(selection: Selection, window: str) -> str:
    rate = selection.rate("ttft_flux_canary_failures_total", window)
    return f"sum {without('reason')} ({rate})"


def _stream_sli(group: SLOGroup, window: str) -> SLI:
    """Time-based: the share of the window the stream was not up."""
    up = group.selection.over_time("avg", "ttft_flux_up", window)
    return Raw(f"1 - avg {without()} ({up})")


@dataclass(frozen=True)
class _Kind:
    alert: str
    summary: str
    # What the objective promises; `{who}`, `{objective}`, `{threshold}` and
    # `{period}` are filled in per SLO.
    promise: str
    sli: Callable[[SLOGroup, str], SLI]


_KINDS: dict[SLOKind, _Kind] = {
    SLOKind.TTFT: _Kind(
        "TTFTErrorBudgetBurn",
        "TTFT SLO error budget is burning too fast",
        "TTFT SLO of {who}: {objective} of probes succeed with a TTFT within "
        "{threshold}s over {period} (a failed probe counts as too slow).",
        _latency_sli("ttft_probe_time_to_first_token_seconds", _failed_probes, probe=True),
    ),
    SLOKind.AVAILABILITY: _Kind(
        "LLMAvailabilityErrorBudgetBurn",
        "LLM availability SLO error budget is burning too fast",
        "Availability SLO of {who}: {objective} of probes succeed over {period}.",
        _availability_sli,
    ),
    SLOKind.TPOT: _Kind(
        "TPOTErrorBudgetBurn",
        "TPOT SLO error budget is burning too fast",
        "TPOT SLO of {who}: {objective} of probes succeed with a time per output "
        "token within {threshold}s over {period} (a failed probe counts as too slow).",
        _latency_sli("ttft_probe_time_per_output_token_seconds", _failed_probes, probe=True),
    ),
    SLOKind.FLUX_CANARY: _Kind(
        "FluxCanaryErrorBudgetBurn",
        "Flux canary propagation SLO error budget is burning too fast",
        "Canary SLO of {who}: {objective} of canary events seen "
        "on the stream within {threshold}s over {period} (a failed check counts as too slow).",
        _latency_sli("ttft_flux_canary_propagation_seconds", _failed_canaries, probe=False),
    ),
    SLOKind.FLUX_STREAM: _Kind(
        "FluxStreamErrorBudgetBurn",
        "Flux stream availability SLO error budget is burning too fast",
        "Stream SLO of {who}: up {objective} of the time over {period}.",
        _stream_sli,
    ),
}
SLO_ALERTS = tuple(kind.alert for kind in _KINDS.values())


def sli_of(group: SLOGroup, window: str) -> SLI:
    """The SLI of an SLO over a window (a PromQL duration or Sloth's `{{.window}}`)."""
    return _KINDS[group.kind].sli(group, window)


def alert_name(kind: SLOKind) -> str:
    """The alert name of an SLO kind."""
    return _KINDS[kind].alert


def promise(group: SLOGroup, *, templated: bool = True) -> str:
    """What the SLO promises, in words: for an alert (`templated`: the member from the
    alert's labels) or for Sloth's description (the members configured today)."""
    if group.kind.is_flux:
        noun = "Flux instance "
        who = "{{ $labels.flux }}" if templated else ", ".join(group.members)
    else:
        noun = ""
        who = (
            "{{ $labels.target }} ({{ $labels.model }})" if templated else ", ".join(group.members)
        )
    who = noun + (who or "none configured yet")
    # Not str.format: the text also holds Go templates (`{{ $labels.target }}`).
    text = _KINDS[group.kind].promise.replace("{who}", who)
    text = text.replace("{objective}", f"{number(group.objective * 100)}%")
    text = text.replace("{period}", format_duration(group.period))
    if group.threshold is not None:
        text = text.replace("{threshold}", prom_float(group.threshold))
    return text


def _sli_name(seconds: float) -> str:
    return f"slo:sli_error:ratio_rate{format_duration(seconds)}"


def _ratio_expr(sli: SLI) -> str:
    """Sloth's `(error) / (total)`, with no sample rather than NaN for a window
    without events."""
    if isinstance(sli, Raw):
        return sli.error_ratio
    total = textwrap.indent(sli.total, "    ")
    return lines("(", textwrap.indent(sli.error, "  "), ")", "/", "(", "  (", total, "  ) > 0", ")")


def _sli_rules(group: SLOGroup, ctx: Context) -> list[Rule]:
    rules = []
    for seconds in SLI_WINDOWS:
        rule = record(
            _sli_name(seconds),
            _ratio_expr(sli_of(group, ctx(seconds))),
            {**group.ids(), "sloth_window": format_duration(seconds)},
        )
        rules.append(rule)
    rules[0]["_comment"] = (
        f"{group.sloth_id}: error ratio of {', '.join(group.members) or 'no target yet'} "
        "per window."
    )
    five = f"{_sli_name(300)}{matchers(group.ids())}"
    period = ctx(group.period)
    rule = record(
        _sli_name(group.period),
        lines(
            f"sum_over_time({five}[{period}])",
            "/ ignoring (sloth_window)",
            f"count_over_time({five}[{period}])",
        ),
        # Sloth sets only sloth_window here (the rest come from the series); the ids
        # keep the rules of several SLOs in one file apart for promtool's lint.
        {**group.ids(), "sloth_window": format_duration(group.period)},
    )
    rule["_comment"] = f"{group.sloth_id}: error ratio over the period (mean of the 5m ratios)."
    rules.append(rule)
    return rules


def _meta_rules(group: SLOGroup) -> list[Rule]:
    ids = group.ids()
    own = matchers(ids)
    objective = number(group.objective)
    budget = f"slo:error_budget:ratio{own}"
    on = "/ on (sloth_id, sloth_slo, sloth_service) group_left"
    return [
        record("slo:objective:ratio", f"vector({objective})", ids),
        record("slo:error_budget:ratio", f"vector(1-{objective})", ids),
        record(
            "slo:time_period:days", f"vector({number(Decimal(int(group.period)) / 86400)})", ids
        ),
        record(
            "slo:current_burn_rate:ratio",
            lines(f"{_sli_name(300)}{own}", on, budget),
            ids,
        ),
        record(
            "slo:period_burn_rate:ratio",
            lines(f"{_sli_name(group.period)}{own}", on, budget),
            ids,
        ),
        record(
            "slo:period_error_budget_remaining:ratio",
            f"1 - slo:period_burn_rate:ratio{own}",
            ids,
        ),
        record(
            "sloth_slo_info",
            "vector(1)",
            {
                **ids,
                "sloth_mode": SLOTH_MODE,
                "sloth_objective": number(group.objective * 100),
                "sloth_spec": SLOTH_SPEC,
                "sloth_version": SLOTH_VERSION,
            },
        ),
    ]


def _burn_condition(group: SLOGroup, window: BurnWindow) -> str:
    own = matchers(group.ids())
    limit = f"({_literal(burn_factor(window, group.period))} * {number(group.budget)})"
    return lines(
        "(",
        f"    ({_sli_name(window.short)}{own} > {limit})",
        "    and ignoring (sloth_window)",
        f"    ({_sli_name(window.long)}{own} > {limit})",
        ")",
    )


def _thresholds_text(group: SLOGroup, windows: list[BurnWindow]) -> str:
    return ", or ".join(
        f"{_literal(burn_factor(w, group.period))}x over {format_duration(w.long)} and "
        f"{format_duration(w.short)}"
        for w in windows
    )


def _alert_rules(group: SLOGroup, ctx: Context) -> list[Rule]:
    kind = _KINDS[group.kind]
    rules = []
    for sloth_severity in ("page", "ticket"):
        windows = [w for w in BURN_WINDOWS if w.sloth_severity == sloth_severity]
        either = "\nor ignoring (sloth_window)\n".join(_burn_condition(group, w) for w in windows)
        # Sloth's alert keeps the sloth_window of whichever pair matched, so an alert
        # whose pairs take turns changes identity and pages again; without it, one
        # alert lasts the whole burn.
        expr = lines("max without (sloth_window) (", textwrap.indent(either, "  "), ")")
        rules.append(
            alert(
                ctx,
                kind.alert,
                expr,
                for_=ctx(windows[0].for_),
                severity=windows[0].severity,
                summary=kind.summary,
                description=(
                    f"{promise(group)} The error ratio over the short window is "
                    "{{ $value | humanizePercentage }}: the error budget burns faster than "
                    f"{_thresholds_text(group, windows)}."
                ),
                # The ids are on the SLI series too; as static labels they keep the
                # alerts of several SLOs apart for promtool's duplicate-rule lint.
                labels={**group.ids(), "sloth_severity": sloth_severity},
                annotations={
                    "title": f"({sloth_severity}) {{{{$labels.sloth_service}}}} "
                    "{{$labels.sloth_slo}} SLO error budget burn rate is too fast.",
                    "burn_rate_thresholds": _thresholds_text(group, windows),
                },
            )
        )
    return rules


def slo_groups(slos: tuple[SLOGroup, ...], ctx: Context) -> list[Group]:
    """Sloth's three groups per SLO; none when no SLO is configured."""
    out = []
    for group in slos:
        out += [
            Group(f"sloth-slo-sli-recordings-{group.sloth_id}", _sli_rules(group, ctx)),
            Group(f"sloth-slo-meta-recordings-{group.sloth_id}", _meta_rules(group)),
            Group(f"sloth-slo-alerts-{group.sloth_id}", _alert_rules(group, ctx)),
        ]
    return out
