"""A probe result into a target's series: which figure goes to which family, and what
`on_suspect: drop` keeps out."""

from __future__ import annotations

import math
from collections.abc import Callable

from ttft_exporter.catalogue import PHASES, PREFILL_OVERHEAD, SERVER_TIMING_GAUGES
from ttft_exporter.errors import FailureReason
from ttft_exporter.probes.base import ProbeResult
from ttft_exporter.sinks.prometheus.exemplars import EXEMPLAR_FAMILIES, ProbeTrace
from ttft_exporter.sinks.prometheus.series import SeriesSet

__all__ = ["record_result"]


def record_result(
    series: SeriesSet, result: ProbeResult, *, timeout: float, drop_suspect: bool = False
) -> None:
    """Record one probe result into a target's series.

    The last-value gauges describe the last probe: a figure it did not measure is NaN,
    never an older probe's value or a made-up 0. The exception, as in blackbox, is
    the HTTP status: 0 when no response came. The server-reported timings follow the
    same rule with absence for NaN (see _record_server_timings). With `drop_suspect`
    (`on_suspect: drop`)
    a suspect probe is counted (requests, failures, suspect, finish reasons, bursts,
    tokens) but none of its timings is recorded (see _record_timings), and its
    timing gauges read NaN: a figure the exporter cannot vouch for is not shown.
    """
    series.set("ttft_probe_timeout_seconds", timeout)
    if result.idle_before is not None:  # a cold probe (scenario "cold")
        series.set("ttft_probe_idle_before_seconds", result.idle_before)
    series.inc("ttft_probe_requests_total", child=("success" if result.success else "failure",))
    for cause in result.suspect:
        series.inc("ttft_probe_suspect_total", child=(cause,))
    timings = not (drop_suspect and result.suspect)
    series.set("ttft_probe_success", 1.0 if result.success else 0.0)
    if result.started_at:
        series.set("ttft_probe_last_probe_timestamp_seconds", result.started_at)
    for phase in PHASES:
        value = result.phases.get(phase, math.nan) if timings else math.nan
        series.set("ttft_probe_phase_duration_seconds", value, (phase,))
    series.set("ttft_probe_http_status_code", float(result.http_status or 0))
    if result.finish_reason is not None:
        series.inc("ttft_probe_finish_reasons_total", child=(result.finish_reason,))
    ttft = result.time_to_first_token if result.success and timings else None
    rate = result.output_tokens_per_second if result.success and timings else None
    series.set("ttft_probe_last_time_to_first_token_seconds", _or_nan(ttft))
    series.set("ttft_probe_last_output_tokens_per_second", _or_nan(rate))
    _record_server_timings(series, result, timings=timings)
    if not result.success:
        reason = result.reason or FailureReason.INTERNAL
        series.inc("ttft_probe_failures_total", child=(reason.value,))
        return
    if result.burst:
        series.inc("ttft_probe_burst_streams_total")
    if result.usage_rejected is not None:
        series.inc("ttft_probe_usage_rejected_total")
    tokens = result.output_tokens or 0
    if result.usage_source is not None:
        series.inc("ttft_probe_output_tokens_total", tokens, (result.usage_source,))
    if result.input_tokens is not None:
        series.inc("ttft_probe_input_tokens_total", result.input_tokens)
    series.set("ttft_probe_last_success_timestamp_seconds", result.started_at)
    if result.reasoning_chunks:
        series.saw_reasoning()
    if timings:
        _record_timings(series, result)


def _record_server_timings(series: SeriesSet, result: ProbeResult, *, timings: bool) -> None:
    """The server's own timings of the last probe, and the client's TTFT less its
    load + prefill. Each series is absent, not NaN, when the last probe did not report
    it: most protocols never do, and a NaN series per target for each would cost
    series everywhere for nothing. The server timed these itself, so an exporter that
    was starved (`timings` False, `on_suspect: drop`) does not spoil them; the
    overhead, measured by the client, goes with the other timings."""
    server = result.server_timings if result.success else None
    for field, name in SERVER_TIMING_GAUGES.items():
        value = getattr(server, field) if server is not None else None
        if value is None:
            series.clear(name)
        else:
            series.set(name, value)
    overhead = result.prefill_overhead if result.success and timings else None
    if overhead is None:
        series.clear(PREFILL_OVERHEAD)
    else:
        series.set(PREFILL_OVERHEAD, overhead)


def _record_timings(series: SeriesSet, result: ProbeResult) -> None:
    """What `on_suspect: drop` keeps out: the latency histograms (TTFB, first chunk,
    TTFT, TTFOT, duration, TPOT, inter-chunk gaps) and the decode pair (decode tokens
    and generation seconds, together so their ratio stays right)."""
    observe = _observe if result.trace_id is None else _traced(result)
    observe(series, "ttft_probe_time_to_first_byte_seconds", result.time_to_first_byte)
    observe(series, "ttft_probe_time_to_first_chunk_seconds", result.time_to_first_chunk)
    observe(series, "ttft_probe_time_to_first_token_seconds", result.time_to_first_token)
    observe(
        series,
        "ttft_probe_time_to_first_output_token_seconds",
        result.time_to_first_output_token,
    )
    observe(series, "ttft_probe_duration_seconds", result.duration)
    # A burst carries no TPOT, gaps or decode window (see ProbeResult): none is fed.
    observe(series, "ttft_probe_time_per_output_token_seconds", result.time_per_output_token)
    if result.inter_chunk_gaps is not None and result.inter_chunk_gaps.count:
        series.merge("ttft_probe_inter_chunk_latency_seconds", result.inter_chunk_gaps)
    decode_tokens = result.decode_tokens or 0
    decode = result.decode_seconds
    if decode_tokens >= 1 and decode is not None:
        series.inc("ttft_probe_decode_tokens_total", decode_tokens)
        series.inc("ttft_probe_generation_seconds_total", decode)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _observe(series: SeriesSet, name: str, value: float | None) -> None:
    if value is not None:
        series.observe(name, value)


def _traced(result: ProbeResult) -> Callable[[SeriesSet, str, float | None], None]:
    """_observe with the probe's trace as the exemplar of the exemplar families. The
    exemplar's time is the probe's start (wall clock), where its span starts too."""
    if result.trace_id is None or result.span_id is None:
        return _observe
    trace = ProbeTrace(result.trace_id, result.span_id, result.started_at)

    def observe(series: SeriesSet, name: str, value: float | None) -> None:
        if value is None:
            return
        exemplar = trace.exemplar(value) if name in EXEMPLAR_FAMILIES else None
        series.observe(name, value, exemplar=exemplar)

    return observe
