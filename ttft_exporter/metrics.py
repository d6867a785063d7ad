"""The metric catalogue (every name, help text, unit, label and bucket set; Prometheus
and OpenTelemetry both read it), the per-target series store and its text renderer.

Per-target series live in our own store instead of prometheus_client metric objects:
every target may carry its own static labels, series must survive config reloads for
unchanged targets, and stock rendering of 100 targets takes ~140 ms where the budget
is 20 ms. Exporter self-metrics stay ordinary prometheus_client objects.
"""

from __future__ import annotations

import enum
import functools
import math
import platform
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    gc_collector,
    platform_collector,
    process_collector,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from ttft_exporter import __version__
from ttft_exporter.cgroup import CPUThrottling
from ttft_exporter.errors import (
    AdhocRejectReason,
    FailureReason,
    FluxCanaryReason,
    FluxReconnectReason,
    HTTPDropReason,
)
from ttft_exporter.probes.base import (
    DEFAULT_INTER_TOKEN_BUCKETS,
    FINISH_REASONS,
    PHASES,
    GapHistogram,
    ProbeResult,
)
from ttft_exporter.scenarios import DEFAULT_SCENARIO
from ttft_exporter.targets import HistogramsConfig

if TYPE_CHECKING:
    from ttft_exporter.config import Config

__all__ = [
    "BACKGROUND_COMPONENTS",
    "DEFAULT_BUCKETS",
    "EXPORTER_METRICS",
    "FLUX_METRICS",
    "OPTIONAL_HISTOGRAMS",
    "PREFILL_OVERHEAD",
    "PROBE_METRICS",
    "SERVER_TIMING_GAUGES",
    "SUSPECT_CAUSES",
    "ExporterMetrics",
    "Kind",
    "MetricSpec",
    "MetricStore",
    "SeriesLayout",
    "SeriesSet",
    "histogram_switches",
    "record_result",
]


class Kind(enum.StrEnum):
    """Metric type."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family. `labels` are the labels beyond the target labels, and
    `children` the label values created at 0 up front (closed enums)."""

    name: str
    kind: Kind
    help: str
    unit: str = ""
    labels: tuple[str, ...] = ()
    children: tuple[tuple[str, ...], ...] = ()
    buckets: str | None = None
    otel_name: str | None = None
    # No series until first written: a family only some targets have (by config).
    on_demand: bool = False


# Default bucket boundaries (seconds), chosen for LLM serving and few enough that a
# target exports at most 80 series by default (issue #9; the README has the count):
# - latency (14): TTFT-like values from 5 ms (a sidecar beside a local model sees 5-15
#   ms) to 30 s (a cold start or a queue; the default probe timeout is 10 s), at most
#   1.7x apart between 100 ms and 1 s where interactive SLOs sit; 0.8 is the default
#   TTFT threshold of the alert rules and 0.5, 1 and 2 common ones, so these cost no
#   extra boundary;
# - duration (7): whole generations, 250 ms to 30 s (a 64-token answer at 10 to 300
#   tokens/s); longer ones count in +Inf;
# - inter_token (10): TPOT and decode gaps, see probes.base.
# The SLO thresholds that apply to a target are added to its own boundaries.
# fmt: off
DEFAULT_BUCKETS: dict[str, tuple[float, ...]] = {
    "latency": (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 2.0, 5.0, 10.0,
                30.0),
    "duration": (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    # Defined beside the probe timeline, which buckets gaps as they arrive.
    "inter_token": DEFAULT_INTER_TOKEN_BUCKETS,
    # Flux: state-update lag (two hosts' wall clocks) and canary round trips.
    "flux_lag": (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                 10.0),
    "flux_canary": (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0,
                    5.0, 10.0),
}
# fmt: on

_REASONS = tuple((r.value,) for r in FailureReason)
# Why a probe's timings may include the exporter's own delay (looplag.LoopLagMonitor).
SUSPECT_CAUSES = ("loop_lag", "throttled")
_LAT = "latency"

PROBE_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "ttft_probe_time_to_first_token_seconds",
        Kind.HISTOGRAM,
        "Time from sending the request to the first chunk carrying generated text (answer or reasoning), successful probes.",
        "s",
        buckets=_LAT,
    ),
    MetricSpec(
        "ttft_probe_time_to_first_output_token_seconds",
        Kind.HISTOGRAM,
        "Time from sending the request to the first answer (non-reasoning) text, successful probes.",
        "s",
        buckets=_LAT,
    ),
    MetricSpec(
        "ttft_probe_time_to_first_byte_seconds",
        Kind.HISTOGRAM,
        "Time from sending the request to the response headers (includes DNS, connect and TLS on a fresh connection), successful probes.",
        "s",
        buckets=_LAT,
    ),
    MetricSpec(
        "ttft_probe_time_to_first_chunk_seconds",
        Kind.HISTOGRAM,
        "Time from sending the request to the first stream data event of any kind (role-only chunks count), successful probes.",
        "s",
        buckets=_LAT,
        otel_name="gen_ai.client.operation.time_to_first_chunk",
    ),
    MetricSpec(
        "ttft_probe_duration_seconds",
        Kind.HISTOGRAM,
        "End-to-end latency: sending the request to the last token chunk (the usage chunk does not extend it), successful probes.",
        "s",
        buckets="duration",
        otel_name="gen_ai.client.operation.duration",
    ),
    MetricSpec(
        "ttft_probe_inter_chunk_latency_seconds",
        Kind.HISTOGRAM,
        "Gaps between successive token-carrying chunks after the first token chunk, successful probes that were not a burst.",
        "s",
        buckets="inter_token",
        otel_name="gen_ai.client.operation.time_per_output_chunk",
    ),
    MetricSpec(
        "ttft_probe_time_per_output_token_seconds",
        Kind.HISTOGRAM,
        "TPOT per probe: (e2e - TTFT) / (output tokens - 1), probes with at least 2 output tokens whose decode window was measured (not a burst); reasoning the server counted but did not stream is not in the count (it came before the first token).",
        "s",
        buckets="inter_token",
    ),
    MetricSpec(
        "ttft_probe_requests_total",
        Kind.COUNTER,
        "Probes finished, by outcome.",
        labels=("outcome",),
        children=(("success",), ("failure",)),
    ),
    MetricSpec(
        "ttft_probe_failures_total",
        Kind.COUNTER,
        "Failed probes, by bounded reason.",
        labels=("reason",),
        children=_REASONS,
    ),
    MetricSpec(
        "ttft_probe_finish_reasons_total",
        Kind.COUNTER,
        "Probes whose stream ended (at its terminator or at EOF), successful or not, by the finish reason of its first choice: stop, length, content_filter, tool_calls, other (any other server value), none (the stream gave none; such a probe fails as truncated).",
        labels=("finish_reason",),
        children=tuple((f,) for f in FINISH_REASONS),
    ),
    MetricSpec(
        "ttft_probe_burst_streams_total",
        Kind.COUNTER,
        "Successful probes whose decode window (first to last token chunk) was below max(1 ms, 100 us x (decoded tokens - 1)), as when every token arrives in one read: they feed no TPOT, inter-chunk gap, decode tokens or generation seconds, and set the last tokens/s gauge to NaN.",
    ),
    MetricSpec(
        "ttft_probe_suspect_total",
        Kind.COUNTER,
        "Probes during which the exporter itself was starved, by cause: loop_lag (the event loop ran a wake-up later than suspect_loop_lag) or throttled (the cgroup's CPU quota ran out); a probe may count under both. Counted in requests_total too; with on_suspect: drop its timings stay out of the histograms.",
        labels=("cause",),
        children=tuple((c,) for c in SUSPECT_CAUSES),
    ),
    MetricSpec(
        "ttft_probe_output_tokens_total",
        Kind.COUNTER,
        "Output tokens of successful probes; usage_source says whether the server reported them (usage) or they are counted text chunks (chunks).",
        "{token}",
        labels=("usage_source",),
        children=(("usage",), ("chunks",)),
        otel_name="gen_ai.client.token.usage",
    ),
    MetricSpec(
        "ttft_probe_usage_rejected_total",
        Kind.COUNTER,
        "Successful probes whose server-reported usage was implausible (not a whole non-negative number, output tokens above 2 x max_tokens + 16 or above the bytes received, prompt tokens above 1e8) and was replaced by chunk counting (usage_source=chunks).",
    ),
    MetricSpec(
        "ttft_probe_decode_tokens_total",
        Kind.COUNTER,
        "Output tokens after the first streamed one, i.e. produced during ttft_probe_generation_seconds_total (bursts and hidden reasoning excluded); rate(decode_tokens)/rate(generation_seconds) is the decode rate in tokens/s.",
        "{token}",
    ),
    MetricSpec(
        "ttft_probe_input_tokens_total",
        Kind.COUNTER,
        "Prompt tokens reported by the server in usage, successful probes.",
        "{token}",
        otel_name="gen_ai.client.token.usage",
    ),
    MetricSpec(
        "ttft_probe_generation_seconds_total",
        Kind.COUNTER,
        "Decode time: first to last token chunk, summed over successful probes with at least 2 output tokens that were not a burst.",
        "s",
    ),
    MetricSpec("ttft_probe_success", Kind.GAUGE, "1 if the last probe succeeded, else 0."),
    MetricSpec(
        "ttft_probe_last_time_to_first_token_seconds",
        Kind.GAUGE,
        "TTFT of the last probe; NaN if it failed.",
        "s",
    ),
    MetricSpec(
        "ttft_probe_last_output_tokens_per_second",
        Kind.GAUGE,
        "Decode rate of the last probe: (tokens - 1) / (e2e - TTFT); NaN if it failed, had fewer than 2 tokens or was a burst.",
        "{token}/s",
    ),
    MetricSpec(
        "ttft_probe_last_success_timestamp_seconds",
        Kind.GAUGE,
        "Unix time at which the last successful probe started.",
        "s",
    ),
    MetricSpec(
        "ttft_probe_last_probe_timestamp_seconds",
        Kind.GAUGE,
        "Unix time at which the last probe started.",
        "s",
    ),
    MetricSpec(
        "ttft_probe_phase_duration_seconds",
        Kind.GAUGE,
        "Connection phases of the last probe: dns, connect, tls and headers (connection ready to response headers); 0 for a phase the probe did not need (a reused connection, an address, plain HTTP), NaN for one it needed but did not complete.",
        "s",
        labels=("phase",),
    ),
    MetricSpec(
        "ttft_probe_http_status_code",
        Kind.GAUGE,
        "HTTP status of the last probe; 0 if it got no response.",
    ),
    MetricSpec(
        "ttft_probe_timeout_seconds",
        Kind.GAUGE,
        "Configured deadline of one probe.",
        "s",
    ),
    # Scenarios and cold probes (#10).
    MetricSpec(
        "ttft_probe_idle_before_seconds",
        Kind.GAUGE,
        'Cold probes only (scenario="cold"): how long the target had been idle, no probe of it by this exporter, when the last cold probe was sent; at least cold.idle unless ad-hoc probes kept it busy past the longest hold (2 x idle).',
        "s",
    ),
    # Cost guard (#10, budget.py): only targets with `cost:` or `budget:` have these
    # series (on_demand), so a default target's series count does not move.
    MetricSpec(
        "ttft_probe_cost_total",
        Kind.COUNTER,
        "What the probes of the target cost (scheduled and /probe), from their tokens and the target's cost prices, in the label's currency; tokens are the server's usage where it reported them, else estimated (see README, cost guard). Exact decimal sum, exported as a float.",
        labels=("currency",),
        on_demand=True,
    ),
    MetricSpec(
        "ttft_probe_budget_spent_tokens",
        Kind.GAUGE,
        "Tokens (input + output) the probes of the target spent since 00:00 UTC, counted against its daily budget.",
        "{token}",
        on_demand=True,
    ),
    MetricSpec(
        "ttft_probe_budget_exhausted",
        Kind.GAUGE,
        "1 while the target's daily budget is spent and its probing is paused (until 00:00 UTC), else 0.",
        on_demand=True,
    ),
    MetricSpec(
        "ttft_probe_budget_skipped_total",
        Kind.COUNTER,
        "Scheduled probes of the target not started because its daily budget was spent.",
        on_demand=True,
    ),
    # --- server-reported timings (issue #10 §3): kept together, see SERVER_TIMING_GAUGES.
    MetricSpec(
        "ttft_probe_server_load_seconds",
        Kind.GAUGE,
        "Model load time the server reported for the last probe (Ollama load_duration); absent when the last probe did not report it.",
        "s",
        on_demand=True,
    ),
    MetricSpec(
        "ttft_probe_server_prefill_seconds",
        Kind.GAUGE,
        "Prompt processing time the server reported for the last probe (Ollama prompt_eval_duration, llama.cpp timings.prompt_ms); absent when the last probe did not report it.",
        "s",
        on_demand=True,
    ),
    MetricSpec(
        "ttft_probe_server_decode_seconds",
        Kind.GAUGE,
        "Generation time the server reported for the last probe (Ollama eval_duration, llama.cpp timings.predicted_ms); absent when the last probe did not report it.",
        "s",
        on_demand=True,
    ),
    MetricSpec(
        "ttft_probe_server_total_seconds",
        Kind.GAUGE,
        "Whole-request time the server reported for the last probe (Ollama total_duration); absent when the last probe did not report it.",
        "s",
        on_demand=True,
    ),
    MetricSpec(
        "ttft_probe_prefill_overhead_seconds",
        Kind.GAUGE,
        "Client TTFT of the last probe minus the server-reported load + prefill time: network, TLS, queueing and HTTP overhead; may be negative when the server's figures do not fit the client's. Absent when the last probe had no server prefill time or its timings were dropped as suspect.",
        "s",
        on_demand=True,
    ),
)

# The gauges of the server's own timings, by ServerTimings field.
SERVER_TIMING_GAUGES: dict[str, str] = {
    "load": "ttft_probe_server_load_seconds",
    "prefill": "ttft_probe_server_prefill_seconds",
    "decode": "ttft_probe_server_decode_seconds",
    "total": "ttft_probe_server_total_seconds",
}
PREFILL_OVERHEAD = "ttft_probe_prefill_overhead_seconds"

# The `component` values of the supervised loops (supervise.Component mirrors them).
BACKGROUND_COMPONENTS = (
    "probe",
    "flux_monitor",
    "flux_staleness",
    "flux_canary",
    "flux_read_check",
    "config_reload",
    "loop_lag",
)
# The reason enums live in errors.py; these are their label values, in enum order.
ADHOC_REJECT_REASONS = tuple(r.value for r in AdhocRejectReason)
HTTP_DROP_REASONS = tuple(r.value for r in HTTPDropReason)

EXPORTER_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "ttft_exporter_build_info",
        Kind.GAUGE,
        "Always 1; labels carry the version and the Python version.",
        labels=("version", "python_version"),
    ),
    MetricSpec(
        "ttft_exporter_config_last_reload_successful",
        Kind.GAUGE,
        "1 if the last configuration load succeeded, else 0.",
    ),
    MetricSpec(
        "ttft_exporter_config_last_reload_success_timestamp_seconds",
        Kind.GAUGE,
        "Unix time of the last successful configuration load.",
        "s",
    ),
    MetricSpec("ttft_exporter_probes_in_flight", Kind.GAUGE, "Probes running now."),
    MetricSpec(
        "ttft_exporter_probes_skipped_total",
        Kind.COUNTER,
        "Scheduled probes skipped because the previous probe of the target was still running.",
        labels=("target",),
    ),
    MetricSpec(
        "ttft_exporter_target_unknown_total",
        Kind.COUNTER,
        "Requests to /probe naming a target that is not configured.",
    ),
    MetricSpec(
        "ttft_exporter_background_errors_total",
        Kind.COUNTER,
        "Unexpected failures of a long-lived loop (each one restarted with backoff), by component.",
        labels=("component",),
        children=tuple((c,) for c in BACKGROUND_COMPONENTS),
    ),
    MetricSpec(
        "ttft_exporter_background_down",
        Kind.GAUGE,
        "Long-lived loops that failed their restart budget and have not recovered, by component; while above 0, /-/ready answers 503.",
        labels=("component",),
        children=tuple((c,) for c in BACKGROUND_COMPONENTS),
    ),
    MetricSpec(
        "ttft_exporter_adhoc_probes_rejected_total",
        Kind.COUNTER,
        "Requests to /probe answered without probing: target_busy (429, the target had a probe in flight) or pool_timeout (503, no ad-hoc probe slot became free within the deadline).",
        labels=("reason",),
        children=tuple((r,) for r in ADHOC_REJECT_REASONS),
    ),
    MetricSpec(
        "ttft_exporter_http_connections",
        Kind.GAUGE,
        "Open connections to the exporter's own HTTP server, TLS handshakes in progress included.",
    ),
    MetricSpec(
        "ttft_exporter_http_connections_dropped_total",
        Kind.COUNTER,
        "Connections the exporter closed on its own: limit (over --web.max-connections, closed at accept), client_limit (the client address already holds --web.max-connections-per-client) or header_timeout (no TLS handshake and request head within --web.read-header-timeout).",
        labels=("reason",),
        children=tuple((r,) for r in HTTP_DROP_REASONS),
    ),
    MetricSpec(
        "ttft_exporter_http_accept_errors_total",
        Kind.COUNTER,
        "Failures to accept a connection for lack of file descriptors or memory.",
    ),
    MetricSpec(
        "ttft_exporter_http_unauthorized_total",
        Kind.COUNTER,
        "Requests refused with 401 because basic-auth credentials were missing or wrong.",
    ),
    MetricSpec(
        "ttft_exporter_event_loop_lag_seconds",
        Kind.HISTOGRAM,
        "How late the event loop ran a wake-up due every 100 ms: the time every timestamp of every probe may be late by.",
        "s",
    ),
    MetricSpec(
        "ttft_exporter_cpu_periods_total",
        Kind.COUNTER,
        "CFS enforcement periods of the exporter's cgroup with runnable tasks (cpu.stat nr_periods); absent where the cgroup does not expose it.",
    ),
    MetricSpec(
        "ttft_exporter_cpu_throttled_periods_total",
        Kind.COUNTER,
        "Periods in which the exporter's cgroup used up its CPU quota and was throttled (cpu.stat nr_throttled); absent where the cgroup does not expose it.",
    ),
    MetricSpec(
        "ttft_exporter_cpu_throttled_seconds_total",
        Kind.COUNTER,
        "Time the exporter's cgroup was held back by CPU throttling (cpu.stat throttled_usec, v1 throttled_time); absent where the cgroup does not expose it.",
        "s",
    ),
)

# Event-loop lag, 1 ms (a busy moment) to 1 s (a process starved for a CPU).
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

FLUX_RECONNECT_REASONS = tuple(r.value for r in FluxReconnectReason)
FLUX_MESSAGE_TYPES = ("metrics_update", "state_update", "entity_deleted", "other")
FLUX_CANARY_REASONS = tuple(r.value for r in FluxCanaryReason)

# Every Flux series carries the `flux` label (the instance name) first.
FLUX_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "ttft_flux_up", Kind.GAUGE, "1 if the WebSocket is connected and not stale, else 0."
    ),
    MetricSpec(
        "ttft_flux_connected", Kind.GAUGE, "1 if the WebSocket is connected (stale or not)."
    ),
    MetricSpec(
        "ttft_flux_stale", Kind.GAUGE, "1 if no message arrived for longer than stale_after."
    ),
    MetricSpec(
        "ttft_flux_reconnects_total",
        Kind.COUNTER,
        "WebSocket reconnects, by why the previous connection ended or failed.",
        labels=("reason",),
        children=tuple((r,) for r in FLUX_RECONNECT_REASONS),
    ),
    MetricSpec(
        "ttft_flux_last_message_timestamp_seconds",
        Kind.GAUGE,
        "Unix time of the last message received.",
        "s",
    ),
    MetricSpec(
        "ttft_flux_messages_total",
        Kind.COUNTER,
        "Messages received, by type (unknown types count as other).",
        labels=("type",),
        children=tuple((t,) for t in FLUX_MESSAGE_TYPES),
    ),
    MetricSpec(
        "ttft_flux_malformed_messages_total",
        Kind.COUNTER,
        "Frames that are not a JSON object of a known shape (skipped).",
    ),
    MetricSpec(
        "ttft_flux_events_processed_total",
        Kind.COUNTER,
        "Events processed by Flux, from deltas of metrics_update events.total; a Flux restart (the total going down) counts the post-reset value as the delta.",
    ),
    MetricSpec(
        "ttft_flux_restarts_total",
        Kind.COUNTER,
        "Flux restarts seen as events.total going down (a counter reset); named so because promtool rejects `counter` in a metric name.",
    ),
    MetricSpec(
        "ttft_flux_reported_events_per_second",
        Kind.GAUGE,
        "Flux's own events.rate_per_second; it freezes at its last value when traffic stops, so prefer rate(ttft_flux_events_processed_total).",
    ),
    MetricSpec("ttft_flux_entities", Kind.GAUGE, "Entities in Flux's memory (entities.total)."),
    MetricSpec(
        "ttft_flux_websocket_connections",
        Kind.GAUGE,
        "Open /api/ws sessions reported by Flux (ours included).",
    ),
    MetricSpec(
        "ttft_flux_publishers_active",
        Kind.GAUGE,
        "Distinct event sources seen by Flux in its publisher window.",
    ),
    MetricSpec(
        "ttft_flux_state_updates_total",
        Kind.COUNTER,
        "state_update messages, by configured entity-id prefix group (other for the rest).",
        labels=("group",),
    ),
    MetricSpec("ttft_flux_entities_deleted_total", Kind.COUNTER, "entity_deleted messages."),
    MetricSpec(
        "ttft_flux_state_update_lag_seconds",
        Kind.HISTOGRAM,
        "Receive time minus the state_update's server timestamp (wall clocks of two hosts: skew shifts it; negative values count as 0).",
        "s",
        buckets="flux_lag",
    ),
    MetricSpec(
        "ttft_flux_canary_checks_total",
        Kind.COUNTER,
        "Canary checks finished, by outcome.",
        labels=("outcome",),
        children=(("success",), ("failure",)),
    ),
    MetricSpec(
        "ttft_flux_canary_publish_seconds",
        Kind.HISTOGRAM,
        "Canary POST /api/events until its HTTP acknowledgement.",
        "s",
        buckets="flux_canary",
    ),
    MetricSpec(
        "ttft_flux_canary_propagation_seconds",
        Kind.HISTOGRAM,
        "Canary publish start until its state_update arrived on the WebSocket.",
        "s",
        buckets="flux_canary",
    ),
    MetricSpec(
        "ttft_flux_canary_last_propagation_seconds",
        Kind.GAUGE,
        "Propagation time of the last successful canary.",
        "s",
    ),
    MetricSpec(
        "ttft_flux_canary_failures_total",
        Kind.COUNTER,
        "Failed canary checks, by reason.",
        labels=("reason",),
        children=tuple((r,) for r in FLUX_CANARY_REASONS),
    ),
    MetricSpec(
        "ttft_flux_query_seconds",
        Kind.HISTOGRAM,
        "Successful GET /api/state/entities?prefix=... reads.",
        "s",
        buckets="flux_canary",
    ),
    MetricSpec(
        "ttft_flux_query_failures_total", Kind.COUNTER, "Failed reads of /api/state/entities."
    ),
)

_SPECS = {spec.name: spec for spec in PROBE_METRICS}

HistogramSwitch = bool | Literal["auto"]

# The histograms a target switches on or off (its `histograms:`), by config key; every
# other family is always exported. The alert rules read none of them but TTFOT, whose
# recording rules simply yield nothing for a target without it.
OPTIONAL_HISTOGRAMS: dict[str, str] = {
    "time_to_first_byte": "ttft_probe_time_to_first_byte_seconds",
    "time_to_first_chunk": "ttft_probe_time_to_first_chunk_seconds",
    "time_to_first_output_token": "ttft_probe_time_to_first_output_token_seconds",
    "inter_chunk_latency": "ttft_probe_inter_chunk_latency_seconds",
}


def histogram_switches(config: HistogramsConfig) -> dict[str, HistogramSwitch]:
    """The switch of every optional histogram, by metric name."""
    return {name: getattr(config, key) for key, name in OPTIONAL_HISTOGRAMS.items()}


_DEFAULT_SWITCHES = histogram_switches(HistogramsConfig())


@dataclass(frozen=True, slots=True)
class SeriesLayout:
    """The shape of a target's histograms: boundaries by bucket set (defaults or
    overrides plus the SLO thresholds that apply to the target) and the switch of every
    optional histogram by metric name."""

    buckets: Mapping[str, tuple[float, ...]]
    histograms: Mapping[str, HistogramSwitch]


def _merge_buckets(
    base: Mapping[str, Sequence[float]], *extra: Mapping[str, Sequence[float]] | None
) -> dict[str, tuple[float, ...]]:
    merged = {name: tuple(sorted(set(map(float, values)))) for name, values in base.items()}
    for more in extra:
        for name, values in (more or {}).items():
            merged[name] = tuple(sorted({*merged.get(name, ()), *map(float, values)}))
    return merged


class _Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a boundary belongs to that bucket (le semantics).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def merge(self, other: GapHistogram) -> None:
        """Add a probe's histogram. With the same boundaries (the executor passes the
        store's) this is exact. Otherwise (a probe that straddled a bucket change) each
        bucket moves to the first one here whose bound is not below its own: counts
        and sum stay exact, no gap is ever put below its true bucket."""
        if other.bounds == self.bounds:
            for index, count in enumerate(other.counts):
                self.counts[index] += count
        else:
            upper = (*other.bounds, math.inf)
            for index, count in enumerate(other.counts):
                if count:
                    self.counts[bisect_left(self.bounds, upper[index])] += count
        self.sum += other.sum
        self.count += other.count


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@functools.cache
def _family_header(spec: MetricSpec, openmetrics: bool) -> str:
    """`# HELP` and `# TYPE` of a family. HELP is escaped per format, as
    prometheus_client does: backslash and line feed in the classic text format, double
    quotes too in OpenMetrics (where HELP is an escaped string)."""
    family = spec.name
    help_text = spec.help.replace("\\", "\\\\").replace("\n", "\\n")
    if openmetrics:
        help_text = help_text.replace('"', '\\"')
        if spec.kind is Kind.COUNTER:
            family = family.removesuffix("_total")
    return f"# HELP {family} {help_text}\n# TYPE {family} {spec.kind.value}\n"


def _float(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


@functools.cache
def _le_strings(bounds: tuple[float, ...]) -> tuple[str, ...]:
    return (*(_float(b) for b in bounds), "+Inf")


def _labelstr(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)


class SeriesSet:
    """Every series of one target. Values are keyed by metric name, then by the
    values of the metric's own labels. `buckets` are the target's boundaries by bucket
    set; `histograms` the switches of optional histograms by metric name (a histogram
    not named keeps the default of the `histograms:` config)."""

    def __init__(
        self,
        labels: Mapping[str, str],
        buckets: Mapping[str, tuple[float, ...]],
        histograms: Mapping[str, HistogramSwitch] | None = None,
    ) -> None:
        self.labels = dict(labels)
        # A switch not given keeps its default.
        self.layout = SeriesLayout(dict(buckets), {**_DEFAULT_SWITCHES, **(histograms or {})})
        # `auto` histograms turned on by a probe that streamed reasoning; kept while
        # this set lives, also across a reload that leaves the switch at `auto`.
        self._auto_on: set[str] = set()
        self._off = self._disabled()
        self._base = _labelstr(self.labels.items())
        self.values: dict[str, dict[tuple[str, ...], float | _Histogram | None]] = {}
        self._prefix: dict[tuple[str, tuple[str, ...]], str] = {}
        # Bumped on every change; a family's rendered text is reused until it moves,
        # so scrapes between probes (HA Prometheus pairs, short scrape intervals) are cheap.
        self.version = 0
        self._rendered: dict[str, tuple[int, str]] = {}
        for spec in PROBE_METRICS:
            children = self.values.setdefault(spec.name, {})
            for child in spec.children:
                children[child] = self._new(spec)
            if (
                not spec.labels
                and spec.kind is not Kind.GAUGE
                and not spec.on_demand
                and spec.name not in self._off
            ):
                # Histograms and counters exist at 0 from the start, so rate() and
                # SLO ratios work before the first observation.
                children[()] = self._new(spec)

    def _disabled(self) -> frozenset[str]:
        return frozenset(
            name
            for name, switch in self.layout.histograms.items()
            if switch is False or (switch == "auto" and name not in self._auto_on)
        )

    def _bounds(self, spec: MetricSpec) -> tuple[float, ...]:
        return self.layout.buckets[spec.buckets or _LAT]

    def _new(self, spec: MetricSpec) -> float | _Histogram | None:
        if spec.kind is Kind.HISTOGRAM:
            return _Histogram(self._bounds(spec))
        return 0.0 if spec.kind is Kind.COUNTER else None

    def exports(self, name: str) -> bool:
        """Whether a family is exported now (optional histograms may be off)."""
        return name not in self._off

    def saw_reasoning(self) -> None:
        """A probe streamed reasoning text: every `auto` histogram turns on, at 0, and
        stays on."""
        for name, switch in self.layout.histograms.items():
            if switch == "auto" and name not in self._auto_on:
                self._auto_on.add(name)
                self.values[name][()] = self._new(_SPECS[name])
                self.version += 1
        self._off = self._disabled()

    def relayout(self, layout: SeriesLayout) -> bool:
        """Take new boundaries and switches in place: counters, gauges and every
        histogram whose boundaries stay keep their values; a histogram with other
        boundaries restarts from zero (its `le` series cannot be continued), one
        switched off goes. Returns whether a histogram holding observations restarted."""
        self.layout = SeriesLayout(dict(layout.buckets), {**_DEFAULT_SWITCHES, **layout.histograms})
        self._off = self._disabled()
        restarted = False
        for spec in PROBE_METRICS:
            if spec.kind is not Kind.HISTOGRAM:
                continue
            children = self.values[spec.name]
            current = children.get(())
            if spec.name in self._off:
                children.clear()
            elif not isinstance(current, _Histogram) or current.bounds != self._bounds(spec):
                restarted |= isinstance(current, _Histogram) and current.count > 0
                children[()] = self._new(spec)
        self.version += 1
        return restarted

    def inc(self, name: str, amount: float = 1.0, child: tuple[str, ...] = ()) -> None:
        """Add to a counter."""
        children = self.values[name]
        children[child] = float(children.get(child) or 0.0) + amount  # type: ignore[arg-type]
        self.version += 1

    def set(self, name: str, value: float, child: tuple[str, ...] = ()) -> None:
        """Set a gauge."""
        self.values[name][child] = value
        self.version += 1

    def clear(self, name: str) -> None:
        """Drop every series of a family (an on-demand one the config no longer asks for)."""
        children = self.values[name]
        if children:
            children.clear()
            self.version += 1

    def observe(self, name: str, value: float, child: tuple[str, ...] = ()) -> None:
        """Observe into a histogram (nothing if the histogram is switched off)."""
        if name in self._off:
            return
        children = self.values[name]
        hist = children.get(child)
        if not isinstance(hist, _Histogram):
            hist = children[child] = _Histogram(self._bounds(_SPECS[name]))
        hist.observe(value)
        self.version += 1

    def merge(self, name: str, hist: GapHistogram, child: tuple[str, ...] = ()) -> None:
        """Add a per-probe histogram into a histogram, in one step (nothing if the
        histogram is switched off)."""
        if name in self._off:
            return
        children = self.values[name]
        target = children.get(child)
        if not isinstance(target, _Histogram):
            target = children[child] = _Histogram(self._bounds(_SPECS[name]))
        target.merge(hist)
        self.version += 1

    def get(self, name: str, child: tuple[str, ...] = ()) -> float | None:
        """A counter or gauge value (None if never set); for tests and the index page."""
        value = self.values[name].get(child)
        return value if not isinstance(value, _Histogram) else float(value.count)

    def histogram(self, name: str, child: tuple[str, ...] = ()) -> tuple[int, float] | None:
        """(count, sum) of a histogram, or None."""
        value = self.values[name].get(child)
        return (value.count, value.sum) if isinstance(value, _Histogram) else None

    def _labels(self, spec: MetricSpec, child: tuple[str, ...]) -> str:
        key = (spec.name, child)
        found = self._prefix.get(key)
        if found is None:
            extra = _labelstr(zip(spec.labels, child, strict=True))
            found = ",".join(p for p in (self._base, extra) if p)
            self._prefix[key] = found
        return found

    def render(self, spec: MetricSpec, out: list[str]) -> None:
        """Append the sample lines of one family of this target to `out`."""
        name = spec.name
        cached = self._rendered.get(name)
        if cached is not None and cached[0] == self.version:
            out.append(cached[1])
            return
        lines: list[str] = []
        self._render(spec, lines)
        text = "".join(lines)
        self._rendered[name] = (self.version, text)
        out.append(text)

    def _render(self, spec: MetricSpec, out: list[str]) -> None:
        name = spec.name
        for child, value in self.values[name].items():
            if value is None:
                continue
            labels = self._labels(spec, child)
            if isinstance(value, _Histogram):
                sep = "," if labels else ""
                cumulative = 0
                for le, count in zip(_le_strings(value.bounds), value.counts, strict=True):
                    cumulative += count
                    out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {cumulative}\n')
                out.append(f"{name}_sum{{{labels}}} {_float(value.sum)}\n")
                out.append(f"{name}_count{{{labels}}} {value.count}\n")
            else:
                out.append(f"{name}{{{labels}}} {_float(value)}\n")


class MetricStore:
    """The series of every configured target, one set per scenario it probes (a
    target without scenarios has one, `default`), rendered on scrape."""

    def __init__(self, buckets: Mapping[str, Sequence[float]] | None = None) -> None:
        # By (target name, scenario).
        self.series: dict[tuple[str, str], SeriesSet] = {}
        # The shared boundaries: defaults, overrides and every threshold of the
        # config. Flux uses them, and so does a target without a layout of its own.
        self.buckets = _merge_buckets({**DEFAULT_BUCKETS, **(buckets or {})})
        self._layouts: dict[str, SeriesLayout] = {}

    def layout(self, name: str) -> SeriesLayout:
        """The histogram layout of a target."""
        found = self._layouts.get(name)
        return found if found is not None else SeriesLayout(self.buckets, _DEFAULT_SWITCHES)

    def configure(
        self,
        overrides: Mapping[str, Sequence[float]],
        thresholds: Mapping[str, Sequence[float]] | None = None,
        layouts: Mapping[str, SeriesLayout] | None = None,
    ) -> list[str]:
        """Use new boundaries: the defaults replaced by `overrides`, plus `thresholds`
        for the shared ones; `layouts` give configured targets their own. Existing
        series take their new layout in place (see SeriesSet.relayout). Returns the
        targets whose histograms restarted from zero because their boundaries moved."""
        self.buckets = _merge_buckets({**DEFAULT_BUCKETS, **overrides}, thresholds)
        self._layouts = dict(layouts or {})
        restarted = []
        for (name, _scenario), series in self.series.items():
            layout = self.layout(name)
            if series.layout != layout and series.relayout(layout) and name not in restarted:
                restarted.append(name)
        return restarted

    def apply_config(self, config: Config) -> list[str]:
        """configure() from a config: each target gets the boundaries of its bucket
        sets plus only the SLO thresholds that apply to it, and its `histograms:`."""
        overrides = config.bucket_overrides()
        base = {**DEFAULT_BUCKETS, **overrides}
        layouts = {
            target.name: SeriesLayout(
                _merge_buckets(base, config.target_thresholds(target)),
                histogram_switches(target.histograms),
            )
            for target in config.targets
        }
        return self.configure(overrides, config.thresholds(), layouts)

    def ensure(
        self, name: str, labels: Mapping[str, str], scenario: str = DEFAULT_SCENARIO
    ) -> SeriesSet:
        """The series of a target's scenario, created (every closed-enum child at 0) if
        new or if its labels changed."""
        key = (name, scenario)
        series = self.series.get(key)
        if series is None or series.labels != dict(labels):
            layout = self.layout(name)
            series = self.series[key] = SeriesSet(labels, layout.buckets, layout.histograms)
        return series

    def get(self, name: str, scenario: str = DEFAULT_SCENARIO) -> SeriesSet | None:
        """The series of a target's scenario, if it has any."""
        return self.series.get((name, scenario))

    def of_target(self, name: str) -> list[SeriesSet]:
        """Every series set of a target, one per scenario."""
        return [series for (target, _), series in self.series.items() if target == name]

    def remove(self, name: str, scenario: str | None = None) -> None:
        """Forget a target that left the config (every scenario), or one scenario of
        it."""
        for key in [k for k in self.series if k[0] == name]:
            if scenario is None or key[1] == scenario:
                del self.series[key]

    def render(self, *, openmetrics: bool = False) -> str:
        """The text (or OpenMetrics, without `# EOF`) exposition of every target."""
        out: list[str] = []
        series_sets = list(self.series.values())
        for spec in PROBE_METRICS:
            out.append(_family_header(spec, openmetrics))
            for series in series_sets:
                series.render(spec, out)
        return "".join(out)


def record_result(
    series: SeriesSet, result: ProbeResult, *, timeout: float, drop_suspect: bool = False
) -> None:
    """Record one probe result into a target's series.

    The last-value gauges describe the last probe: a figure it did not measure is NaN,
    never an older probe's value or a made-up 0. The exception, as in blackbox, is
    the HTTP status: 0 when no response came. The server-reported timings follow the
    same rule with absence for NaN (see _record_server_timings). With `drop_suspect` (`on_suspect: drop`)
    a suspect probe is counted (requests, failures, suspect, finish reasons, bursts,
    tokens) but none of its timings is recorded (see _record_timings), and its
    timing gauges read NaN: a figure the exporter cannot vouch for is not shown.
    """
    series.set("ttft_probe_timeout_seconds", timeout)
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
    _observe(series, "ttft_probe_time_to_first_byte_seconds", result.time_to_first_byte)
    _observe(series, "ttft_probe_time_to_first_chunk_seconds", result.time_to_first_chunk)
    _observe(series, "ttft_probe_time_to_first_token_seconds", result.time_to_first_token)
    _observe(
        series,
        "ttft_probe_time_to_first_output_token_seconds",
        result.time_to_first_output_token,
    )
    _observe(series, "ttft_probe_duration_seconds", result.duration)
    # A burst carries no TPOT, gaps or decode window (see ProbeResult): none is fed.
    _observe(series, "ttft_probe_time_per_output_token_seconds", result.time_per_output_token)
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


class ExporterMetrics:
    """The exporter's own metrics (EXPORTER_METRICS), as prometheus_client objects in
    a registry of their own, with the process, platform and GC collectors."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        # `_created` series double the series count for no use in PromQL; the probe
        # store does not emit them either.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        specs = {spec.name: spec for spec in EXPORTER_METRICS}

        def gauge(name: str) -> Gauge:
            spec = specs[name]
            return Gauge(name, spec.help, spec.labels, registry=self.registry)

        self.build_info = gauge("ttft_exporter_build_info")
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.reload_successful = gauge("ttft_exporter_config_last_reload_successful")
        self.reload_timestamp = gauge("ttft_exporter_config_last_reload_success_timestamp_seconds")
        self.in_flight = gauge("ttft_exporter_probes_in_flight")
        spec = specs["ttft_exporter_probes_skipped_total"]
        self.skipped = Counter(spec.name, spec.help, spec.labels, registry=self.registry)
        spec = specs["ttft_exporter_target_unknown_total"]
        self.target_unknown = Counter(spec.name, spec.help, registry=self.registry)
        spec = specs["ttft_exporter_background_errors_total"]
        self.background_errors = Counter(spec.name, spec.help, spec.labels, registry=self.registry)
        self.background_down = gauge("ttft_exporter_background_down")
        self.adhoc_rejected = self._counter(specs["ttft_exporter_adhoc_probes_rejected_total"])
        self.http_connections = gauge("ttft_exporter_http_connections")
        self.http_dropped = self._counter(specs["ttft_exporter_http_connections_dropped_total"])
        self.http_accept_errors = self._counter(specs["ttft_exporter_http_accept_errors_total"])
        self.http_unauthorized = self._counter(specs["ttft_exporter_http_unauthorized_total"])
        spec = specs["ttft_exporter_event_loop_lag_seconds"]
        self.loop_lag = Histogram(
            spec.name, spec.help, registry=self.registry, buckets=LOOP_LAG_BUCKETS
        )
        self.cpu_throttling = ThrottlingCollector(specs, registry=self.registry)
        process_collector.ProcessCollector(registry=self.registry)
        platform_collector.PlatformCollector(registry=self.registry)
        gc_collector.GCCollector(registry=self.registry)

    def _counter(self, spec: MetricSpec) -> Counter:
        """A counter of the catalogue with every labelled child created at 0."""
        counter = Counter(spec.name, spec.help, spec.labels, registry=self.registry)
        for child in spec.children:
            counter.labels(*child)
        return counter


class ThrottlingCollector(Collector):
    """The cgroup's CPU throttling counters as last sampled (looplag.LoopLagMonitor
    sets `sample`); nothing at all, not zeros, while there is no sample. No I/O at
    scrape time."""

    _NAMES = (
        "ttft_exporter_cpu_periods_total",
        "ttft_exporter_cpu_throttled_periods_total",
        "ttft_exporter_cpu_throttled_seconds_total",
    )

    def __init__(
        self, specs: Mapping[str, MetricSpec], registry: CollectorRegistry | None = None
    ) -> None:
        self._help = {name: specs[name].help for name in self._NAMES}
        self.sample: CPUThrottling | None = None
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterable[CounterMetricFamily]:
        # The names, for the registry's duplicate check, whether or not sampled yet.
        return [CounterMetricFamily(name, self._help[name], value=0.0) for name in self._NAMES]

    def collect(self) -> Iterable[CounterMetricFamily]:
        sample = self.sample
        if sample is None:
            return []
        values = (sample.periods, sample.throttled_periods, sample.throttled_seconds)
        return [
            CounterMetricFamily(name, self._help[name], value=float(value))
            for name, value in zip(self._NAMES, values, strict=True)
        ]
