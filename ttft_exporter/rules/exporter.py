"""Probe health and exporter health alerts: LLMProbeFailing (by reason),
LLMProbeAbsent (per configured target), TTFTExporterDown and
TTFTExporterConfigReloadFailed."""

from __future__ import annotations

from decimal import Decimal

from ttft_exporter.rules.common import (
    Context,
    Group,
    Rule,
    alert,
    lines,
    matchers,
    number,
    without,
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
PROBE_ALERTS = (
    "LLMProbeFailing",
    "LLMProbeAbsent",
    "LLMUsageImplausible",
    "LLMStreamsBuffered",
    "TTFTExporterStarved",
    "LLMProbeBudgetExhausted",
)
EXPORTER_ALERTS = (
    "TTFTExporterDown",
    "TTFTExporterConfigReloadFailed",
    "TTFTExporterBackgroundErrors",
    "TTFTExporterBackgroundLoopDown",
    "TTFTExporterOTLPExportFailing",
)


def _failing(slos: SLOsConfig, ctx: Context) -> Rule:
    w = ctx(300)
    sel = ctx.everything()
    ratio = number(Decimal(str(slos.failure_ratio)))
    requests = f"sum {without('outcome')} ({sel.rate('ttft_probe_requests_total', w)})"
    failed_rate = sel.rate("ttft_probe_requests_total", w, 'outcome="failure"')
    failed = f"sum {without('outcome')} ({failed_rate})"
    return alert(
        ctx,
        "LLMProbeFailing",
        # One alert per reason present (its value: that reason's share of all probes),
        # but only while the failures together pass the ratio, so a reason that
        # shows up once among successes does not page.
        lines(
            f"sum {without()} ({sel.rate('ttft_probe_failures_total', w)})",
            "/ ignoring (reason) group_left ()",
            requests,
            "> 0",
            "and ignoring (reason)",
            f"{failed} / {requests} > {ratio}",
        ),
        for_=ctx(300),
        severity="critical",
        summary="LLM probes are failing",
        description=(
            "More than "
            f"{ratio} of the probes of {{{{ $labels.target }}}} ({{{{ $labels.model }}}}) "
            "failed over the last 5m; reason {{ $labels.reason }} accounts for a ratio of "
            '{{ printf "%.2f" $value }} of all probes.'
        ),
        annotations={"failure_ratio": ratio},
    )


def _absent(res: Resolution, ctx: Context) -> Rule | None:
    if not res.targets:
        return None
    # absent() copies the equality matchers into its labels, so each branch yields
    # the target's name and static labels: one routable alert per missing target,
    # from one rule. This is the one rule that lists target names: it checks that
    # the exporter probes what this config names.
    expr = "\nor\n".join(
        f"absent(ttft_probe_requests_total{matchers(ctx.job_matcher, {'target': name}, labels)})"
        for name, labels in res.target_labels
    )
    return alert(
        ctx,
        "LLMProbeAbsent",
        expr,
        for_=ctx(600),
        severity="warning",
        summary="No probe results for a configured target",
        description=(
            "Prometheus has no ttft_probe_requests_total series for target "
            "{{ $labels.target }} for 10m: the exporter does not probe it (config out of "
            "sync with these rules) or Prometheus does not scrape the exporter."
        ),
    )


def _usage(ctx: Context) -> Rule:
    rejected = ctx.everything().rate("ttft_probe_usage_rejected_total", ctx(3600))
    return alert(
        ctx,
        "LLMUsageImplausible",
        # rate() * 3600 rather than increase(): the same number, and `without` keeps
        # the static labels through the aggregation over replicas.
        f"sum {without()} ({rejected}) * 3600 > 0",
        for_=ctx(60),
        severity="warning",
        summary="An LLM endpoint reports token counts that cannot be true",
        description=(
            "{{ $labels.target }} ({{ $labels.model }}) reported implausible usage "
            '(negative, above max_tokens or above the bytes it sent) {{ printf "%.0f" $value }} '
            "time(s) in the last hour; its token counts fall back to counting chunks "
            '(usage_source="chunks").'
        ),
    )


def _ratio_of_probes(ctx: Context, counter: str, drop: tuple[str, ...], outcome: str | None) -> str:
    """`counter` per target over 15m as a share of its probes (of one outcome)."""
    sel = ctx.everything()
    w = ctx(900)
    part = f"sum {without(*drop)} ({sel.rate(counter, w)})"
    extra = (f'outcome="{outcome}"',) if outcome else ()
    whole = f"sum {without('outcome')} ({sel.rate('ttft_probe_requests_total', w, *extra)})"
    return lines(part, "/", f"({whole} > 0)")


def _starved(ctx: Context) -> Rule:
    return alert(
        ctx,
        "TTFTExporterStarved",
        f"{_ratio_of_probes(ctx, 'ttft_probe_suspect_total', ('cause',), None)}\n> 0.1",
        for_=ctx(900),
        severity="warning",
        summary="The exporter was starved of CPU during many probes: its timings are suspect",
        description=(
            "{{ $value | humanizePercentage }} of the probes of {{ $labels.target }} over "
            "15m ran while the exporter's event loop lagged or its cgroup was CPU-throttled: "
            "their TTFT and decode figures include the exporter's own wait. Give the "
            "exporter a CPU request (and no tight CPU limit), or set on_suspect: drop."
        ),
        annotations={"ratio": "0.1"},
    )


def _buffered(ctx: Context) -> Rule:
    return alert(
        ctx,
        "LLMStreamsBuffered",
        f"{_ratio_of_probes(ctx, 'ttft_probe_burst_streams_total', (), 'success')}\n> 0.2",
        for_=ctx(900),
        severity="warning",
        summary="Streams arrive in one burst: the decode figures are not measured",
        description=(
            "{{ $value | humanizePercentage }} of the successful probes of "
            "{{ $labels.target }} ({{ $labels.model }}) over 15m received every token at once "
            "(a proxy buffering the stream, or a starved exporter): TPOT and tokens/s are "
            "not measured for them."
        ),
        annotations={"ratio": "0.2"},
    )


def _budget(ctx: Context) -> Rule:
    sel = ctx.everything()
    return alert(
        ctx,
        "LLMProbeBudgetExhausted",
        # max: one series per replica; any replica paused is a paused target.
        f"max {without()} ({sel.series('ttft_probe_budget_exhausted')}) == 1",
        for_=ctx(300),
        severity="warning",
        summary="A target's daily probe budget is spent: it is not probed until 00:00 UTC",
        description=(
            "The probes of {{ $labels.target }} ({{ $labels.model }}) spent the target's "
            "daily token or cost budget: probing is paused until 00:00 UTC, so its TTFT, "
            "availability and SLO figures stand still until then. Raise budget.daily_tokens "
            "or budget.daily_cost, or probe less often, if this happens every day."
        ),
    )


def probe_alerts(res: Resolution, slos: SLOsConfig, ctx: Context) -> Group:
    """The probe health group."""
    rules = [_failing(slos, ctx), _usage(ctx), _buffered(ctx), _starved(ctx), _budget(ctx)]
    absent = _absent(res, ctx)
    if absent is not None:
        rules.append(absent)
    return Group(PROBE_ALERT_GROUP, rules)


def exporter_alerts(ctx: Context) -> Group:
    """The exporter's own health group."""
    up = f"up{{{ctx.job_matcher}}}"
    return Group(
        EXPORTER_ALERT_GROUP,
        [
            alert(
                ctx,
                "TTFTExporterDown",
                f"{up} == 0\nor\nabsent({up})",
                for_=ctx(300),
                severity="critical",
                summary="ttft_exporter is down or not scraped",
                description=(
                    "Prometheus could not scrape ttft_exporter"
                    "{{ if $labels.instance }} at {{ $labels.instance }}{{ end }} "
                    f"(or finds no target of a job matching {ctx.job}) for 5m: "
                    "no LLM probe or Flux results arrive, and every other ttft alert is blind."
                ),
            ),
            alert(
                ctx,
                "TTFTExporterConfigReloadFailed",
                f"ttft_exporter_config_last_reload_successful{{{ctx.job_matcher}}} == 0",
                for_=ctx(300),
                severity="warning",
                summary="ttft_exporter configuration reload failed",
                description=(
                    "ttft_exporter at {{ $labels.instance }} could not load its configuration "
                    "file for 5m and keeps running the previous configuration."
                ),
            ),
            alert(
                ctx,
                "TTFTExporterBackgroundErrors",
                # Per replica and component: which exporter hit the bug matters.
                f"increase(ttft_exporter_background_errors_total{{{ctx.job_matcher}}}"
                f"[{ctx(900)}]) > 0",
                for_=ctx(60),
                severity="warning",
                summary="A ttft_exporter background loop failed and was restarted",
                description=(
                    "A {{ $labels.component }} loop of ttft_exporter at {{ $labels.instance }} "
                    'raised an unexpected exception {{ printf "%.0f" $value }} time(s) in the '
                    "last 15m and was restarted with backoff: a bug; its traceback is in the "
                    "exporter's log."
                ),
            ),
            alert(
                ctx,
                "TTFTExporterBackgroundLoopDown",
                f"ttft_exporter_background_down{{{ctx.job_matcher}}} > 0",
                for_=ctx(60),
                severity="critical",
                summary="A ttft_exporter background loop is down for good",
                description=(
                    '{{ printf "%.0f" $value }} {{ $labels.component }} loop(s) of '
                    "ttft_exporter at {{ $labels.instance }} failed 5 times in a row and are "
                    "down (retried every minute); /-/ready answers 503 and their targets or "
                    "Flux instances are not measured."
                ),
            ),
            alert(
                ctx,
                "TTFTExporterOTLPExportFailing",
                # Per replica and signal: which collector path is broken matters.
                f"rate(ttft_exporter_otlp_export_failures_total{{{ctx.job_matcher}}}"
                f"[{ctx(900)}]) > 0",
                for_=ctx(900),
                severity="warning",
                summary="ttft_exporter cannot deliver OTLP to its collector",
                description=(
                    "OTLP {{ $labels.signal }} exports of ttft_exporter at "
                    '{{ $labels.instance }} failed at {{ printf "%.3f" $value }} per second '
                    "over 15m: the collector is down, slow or refusing them, and those "
                    "metrics or traces are dropped (probing and /metrics are unaffected)."
                ),
            ),
        ],
    )
