"""The metric catalogue: every metric's name, help text, unit, instrument kind, bucket
set, Prometheus labels and OpenTelemetry instrument name and attributes. A leaf: the
Prometheus and OTel sinks read it; it knows no probe, Flux or sink type (a test
enforces the imports)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from ttft_exporter.errors import (
    AdhocRejectReason,
    FailureReason,
    FluxCanaryReason,
    FluxReconnectReason,
    HTTPDropReason,
)

__all__ = [
    "ADHOC_REJECT_REASONS",
    "BACKGROUND_COMPONENTS",
    "DEFAULT_BUCKETS",
    "DEFAULT_INTER_TOKEN_BUCKETS",
    "EXPORTER_METRICS",
    "FINISH_REASONS",
    "FLUX_CANARY_REASONS",
    "FLUX_MESSAGE_TYPES",
    "FLUX_METRICS",
    "FLUX_RECONNECT_REASONS",
    "HTTP_DROP_REASONS",
    "LOOP_LAG_BUCKETS",
    "OPTIONAL_HISTOGRAMS",
    "OTEL_BUCKETS",
    "PHASES",
    "PREFILL_OVERHEAD",
    "PROBE_METRICS",
    "SERVER_TIMING_GAUGES",
    "SUSPECT_CAUSES",
    "FinishReasonLabel",
    "Kind",
    "MetricSpec",
    "spec_by_name",
]

# The connection phases a probe times (the `phase` label).
PHASES = ("dns", "connect", "tls", "headers")

# The default inter-token bucket boundaries (seconds), in the catalogue so that a probe can
# bucket its gaps without importing a sink; DEFAULT_BUCKETS uses them.
# TPOT and decode gaps, 10 boundaries (issue #9: a production-sized series count):
# 2.5 ms (speculative decoding, > 400 tokens/s) to 1 s (a stall), about 1.5-2x apart
# where decode rates of served models sit (10-100 ms: 100 to 10 tokens/s). A TPOT SLO
# threshold off these boundaries is added for the targets the SLO selects.
DEFAULT_INTER_TOKEN_BUCKETS: tuple[float, ...] = (
    0.0025,
    0.005,
    0.01,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    1.0,
)

FinishReasonLabel = Literal["stop", "length", "content_filter", "tool_calls", "other", "none"]
# The bounded values of the `finish_reason` label; `none` is a stream that gave none.
FINISH_REASONS: tuple[FinishReasonLabel, ...] = (
    "stop",
    "length",
    "content_filter",
    "tool_calls",
    "other",
    "none",
)


class Kind(enum.StrEnum):
    """Metric type."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family. `labels` are the labels beyond the target labels, and
    `children` the label values created at 0 up front (closed enums).

    The OpenTelemetry side (sinks/otel, issue #11): `otel_name` is the instrument
    (GenAI semantic conventions v1.41.0 where they have one, `ttft.*` otherwise;
    derived from `name` when not given), `otel_attributes` maps each Prometheus label
    to its attribute name (a label not given maps to `ttft.<label>`), `otel_constants`
    are attributes every measurement of this family carries (e.g. `gen_ai.token.type`,
    where two Prometheus families share one instrument), `otel_kind` the instrument
    kind where it is not the Prometheus one (a Prometheus counter of tokens is the
    semconv's per-call histogram), `otel_buckets` its boundary set (a key of
    DEFAULT_BUCKETS or OTEL_BUCKETS; default: `buckets`) and `otel` whether the OTel
    sink exports the family at all (last-value gauges and timestamps are a Prometheus
    idiom: an OTLP point carries its own time; the exporter's self-metrics stay on
    /metrics).
    """

    name: str
    kind: Kind
    help: str
    unit: str = ""
    labels: tuple[str, ...] = ()
    children: tuple[tuple[str, ...], ...] = ()
    buckets: str | None = None
    otel_name: str = ""
    otel_attributes: tuple[tuple[str, str], ...] = ()
    otel_constants: tuple[tuple[str, str], ...] = ()
    # No series until first written: a family only some targets have (by config).
    on_demand: bool = False
    otel_kind: Kind | None = None
    otel_buckets: str | None = None
    otel: bool = True
    # The instrument's description where it is not `help` (the semconv's brief).
    otel_help: str = ""

    def __post_init__(self) -> None:
        # Frozen: fill the derived OTel fields once, here, so readers see plain data.
        if not self.otel_name:
            object.__setattr__(self, "otel_name", _otel_name(self.name))
        given = dict(self.otel_attributes)
        unknown = set(given) - set(self.labels)
        if unknown:
            raise ValueError(f"{self.name}: otel_attributes name no label: {sorted(unknown)}")
        mapped = tuple((label, given.get(label, f"ttft.{label}")) for label in self.labels)
        object.__setattr__(self, "otel_attributes", mapped)
        if self.otel_kind is None:
            object.__setattr__(self, "otel_kind", self.kind)
        if self.otel_buckets is None and self.buckets is not None:
            object.__setattr__(self, "otel_buckets", self.buckets)


def _otel_name(name: str) -> str:
    """`ttft_probe_time_to_first_token_seconds` -> `ttft.probe.time_to_first_token`:
    OTel names carry no unit or `_total` (the unit is a field of the instrument)."""
    for suffix in ("_seconds_total", "_total", "_seconds"):
        if name.endswith(suffix):
            name = name.removesuffix(suffix)
            break
    prefix, _, rest = name.partition("_")
    group, _, rest = rest.partition("_")
    return f"{prefix}.{group}.{rest}" if rest else f"{prefix}.{group}"


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

# The advised explicit bucket boundaries of the GenAI semantic conventions v1.41.0
# (llm-streaming.md §C.1), for the semconv instruments whose boundaries are not ours.
# fmt: off
OTEL_BUCKETS: dict[str, tuple[float, ...]] = {
    "gen_ai_duration": (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24,
                        20.48, 40.96, 81.92),
    "gen_ai_tokens": (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576,
                      4194304, 16777216, 67108864),
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
        otel_buckets="gen_ai_duration",
        otel_help="Time to receive the first chunk in a streaming operation (role-only chunks count).",
    ),
    MetricSpec(
        "ttft_probe_duration_seconds",
        Kind.HISTOGRAM,
        "End-to-end latency: sending the request to the last token chunk (the usage chunk does not extend it), successful probes.",
        "s",
        buckets="duration",
        otel_name="gen_ai.client.operation.duration",
        otel_buckets="gen_ai_duration",
        otel_help="GenAI operation duration: request to last token chunk for successful probes, request to failure (with error.type) for failed ones.",
    ),
    MetricSpec(
        "ttft_probe_inter_chunk_latency_seconds",
        Kind.HISTOGRAM,
        "Gaps between successive token-carrying chunks after the first token chunk, successful probes that were not a burst.",
        "s",
        buckets="inter_token",
        otel_name="gen_ai.client.operation.time_per_output_chunk",
        otel_help="Time between streamed token chunks after the first token chunk (each gap), successful probes that were not a burst.",
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
        otel_attributes=(("reason", "error.type"),),
    ),
    MetricSpec(
        "ttft_probe_finish_reasons_total",
        Kind.COUNTER,
        "Probes whose stream ended (at its terminator or at EOF), successful or not, by the finish reason of its first choice: stop, length, content_filter, tool_calls, other (any other server value), none (the stream gave none; such a probe fails as truncated).",
        labels=("finish_reason",),
        otel_attributes=(("finish_reason", "gen_ai.response.finish_reasons"),),
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
        otel_constants=(("gen_ai.token.type", "output"),),
        otel_kind=Kind.HISTOGRAM,
        otel_buckets="gen_ai_tokens",
        otel_help="Number of input and output tokens used, per successful probe.",
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
        otel_constants=(("gen_ai.token.type", "input"),),
        otel_kind=Kind.HISTOGRAM,
        otel_buckets="gen_ai_tokens",
        otel_help="Number of input and output tokens used, per successful probe.",
    ),
    MetricSpec(
        "ttft_probe_generation_seconds_total",
        Kind.COUNTER,
        "Decode time: first to last token chunk, summed over successful probes with at least 2 output tokens that were not a burst.",
        "s",
        otel_name="ttft.probe.generation_time",
    ),
    MetricSpec(
        "ttft_probe_success", Kind.GAUGE, "1 if the last probe succeeded, else 0.", otel=False
    ),
    MetricSpec(
        "ttft_probe_last_time_to_first_token_seconds",
        Kind.GAUGE,
        "TTFT of the last probe; NaN if it failed.",
        "s",
        otel=False,
    ),
    MetricSpec(
        "ttft_probe_last_output_tokens_per_second",
        Kind.GAUGE,
        "Decode rate of the last probe: (tokens - 1) / (e2e - TTFT); NaN if it failed, had fewer than 2 tokens or was a burst.",
        "{token}/s",
        otel=False,
    ),
    MetricSpec(
        "ttft_probe_last_success_timestamp_seconds",
        Kind.GAUGE,
        "Unix time at which the last successful probe started.",
        "s",
        otel=False,
    ),
    MetricSpec(
        "ttft_probe_last_probe_timestamp_seconds",
        Kind.GAUGE,
        "Unix time at which the last probe started.",
        "s",
        otel=False,
    ),
    MetricSpec(
        "ttft_probe_phase_duration_seconds",
        Kind.GAUGE,
        "Connection phases of the last probe: dns, connect, tls and headers (connection ready to response headers); 0 for a phase the probe did not need (a reused connection, an address, plain HTTP), NaN for one it needed but did not complete.",
        "s",
        labels=("phase",),
        # OTel: a histogram of every probe's phases rather than the last one's.
        otel_name="ttft.probe.phase.duration",
        otel_kind=Kind.HISTOGRAM,
        otel_buckets="latency",
    ),
    MetricSpec(
        "ttft_probe_http_status_code",
        Kind.GAUGE,
        "HTTP status of the last probe; 0 if it got no response.",
        otel=False,
    ),
    MetricSpec(
        "ttft_probe_timeout_seconds",
        Kind.GAUGE,
        "Configured deadline of one probe.",
        "s",
        otel=False,
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
        otel=False,
    ),
    MetricSpec(
        "ttft_probe_budget_spent_tokens",
        Kind.GAUGE,
        "Tokens (input + output) the probes of the target spent since 00:00 UTC, counted against its daily budget.",
        "{token}",
        on_demand=True,
        otel=False,
    ),
    MetricSpec(
        "ttft_probe_budget_exhausted",
        Kind.GAUGE,
        "1 while the target's daily budget is spent and its probing is paused (until 00:00 UTC), else 0.",
        on_demand=True,
        otel=False,
    ),
    MetricSpec(
        "ttft_probe_budget_skipped_total",
        Kind.COUNTER,
        "Scheduled probes of the target not started because its daily budget was spent.",
        on_demand=True,
        otel=False,
    ),
    # --- server-reported timings (issue #10 §3): kept together, see SERVER_TIMING_GAUGES.
    MetricSpec(
        "ttft_probe_server_load_seconds",
        Kind.GAUGE,
        "Model load time the server reported for the last probe (Ollama load_duration); absent when the last probe did not report it.",
        "s",
        on_demand=True,
        otel=False,
    ),
    MetricSpec(
        "ttft_probe_server_prefill_seconds",
        Kind.GAUGE,
        "Prompt processing time the server reported for the last probe (Ollama prompt_eval_duration, llama.cpp timings.prompt_ms); absent when the last probe did not report it.",
        "s",
        on_demand=True,
        otel=False,
    ),
    MetricSpec(
        "ttft_probe_server_decode_seconds",
        Kind.GAUGE,
        "Generation time the server reported for the last probe (Ollama eval_duration, llama.cpp timings.predicted_ms); absent when the last probe did not report it.",
        "s",
        on_demand=True,
        otel=False,
    ),
    MetricSpec(
        "ttft_probe_server_total_seconds",
        Kind.GAUGE,
        "Whole-request time the server reported for the last probe (Ollama total_duration); absent when the last probe did not report it.",
        "s",
        on_demand=True,
        otel=False,
    ),
    MetricSpec(
        "ttft_probe_prefill_overhead_seconds",
        Kind.GAUGE,
        "Client TTFT of the last probe minus the server-reported load + prefill time: network, TLS, queueing and HTTP overhead; may be negative when the server's figures do not fit the client's. Absent when the last probe had no server prefill time or its timings were dropped as suspect.",
        "s",
        on_demand=True,
        otel=False,
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
        otel_name="ttft.exporter.cpu_throttled_time",
    ),
    MetricSpec(
        "ttft_exporter_otlp_export_failures_total",
        Kind.COUNTER,
        "OTLP exports that failed (collector down, refused, timed out or answering an error), by signal: metrics or traces. Exports run in the SDK's threads; a failed batch is dropped, never retried into a growing queue.",
        labels=("signal",),
        children=(("metrics",), ("traces",)),
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
        otel=False,
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
        otel=False,
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

# The histograms a target switches on or off (its `histograms:`), by config key; every
# other family is always exported. The alert rules read none of them but TTFOT, whose
# recording rules simply yield nothing for a target without it.
OPTIONAL_HISTOGRAMS: dict[str, str] = {
    "time_to_first_byte": "ttft_probe_time_to_first_byte_seconds",
    "time_to_first_chunk": "ttft_probe_time_to_first_chunk_seconds",
    "time_to_first_output_token": "ttft_probe_time_to_first_output_token_seconds",
    "inter_chunk_latency": "ttft_probe_inter_chunk_latency_seconds",
}


_ALL = {spec.name: spec for spec in (*PROBE_METRICS, *EXPORTER_METRICS, *FLUX_METRICS)}


def spec_by_name(name: str) -> MetricSpec:
    """The catalogue entry of a metric; KeyError names the metric if there is none."""
    return _ALL[name]
