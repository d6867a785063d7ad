"""The probe model: what a protocol decodes from a stream, what a probe returns, and the
pure timeline that turns arrival times into TTFT, gaps, TPOT and token counts."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Literal, Protocol, TypeVar

from ttft_exporter.catalogue import (
    DEFAULT_INTER_TOKEN_BUCKETS,
    FINISH_REASONS,
    PHASES,
    FinishReasonLabel,
)
from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.framing import Frame, Framer
from ttft_exporter.probes.server_timings import ServerTimings

if TYPE_CHECKING:
    import aiohttp

    from ttft_exporter.clock import Clock
    from ttft_exporter.targets import TargetBase

__all__ = [
    "BURST_MIN_SECONDS_PER_TOKEN",
    "BURST_MIN_WINDOW_SECONDS",
    "DEFAULT_INTER_TOKEN_BUCKETS",
    "FINISH_REASONS",
    "MAX_INPUT_TOKENS",
    "PHASES",
    "FinishReasonLabel",
    "GapHistogram",
    "HTTPRequest",
    "ProbeResult",
    "ProtocolSpec",
    "ServerTimings",
    "StreamDecoder",
    "StreamItem",
    "StreamTimeline",
    "Usage",
    "UsageSource",
    "burst_bound",
    "check_usage",
    "finish_reason_label",
    "output_token_bound",
]

UsageSource = Literal["usage", "chunks"]
_NS = 1e-9


# Server-reported usage beyond these cannot be true (see check_usage). Prompt tokens
# are bounded only absolutely: servers add templates and system prompts of their own.
MAX_INPUT_TOKENS = 100_000_000
_OUTPUT_FACTOR = 2
_OUTPUT_SLACK = 16

# The resolution bound of the decode figures (TPOT, inter-chunk gaps, tokens/s,
# generation seconds). A decode window (first to last token chunk) shorter than
# max(1 ms, 100 us x decode tokens) is a burst, not a measurement:
# - 1 ms is the order of event-loop and scheduler jitter on a busy host, so a window
#   that short says more about when the exporter got the CPU than about the server;
# - 100 us per token is 10,000 tokens/s for one stream, several times the fastest
#   single-stream decode served today: a shorter window can only come from chunks that
#   waited in a buffer (a starved client, a buffering proxy) and were read together.
# Tokens that arrive in one read have a window of exactly 0 and are always a burst.
BURST_MIN_WINDOW_SECONDS = 0.001
BURST_MIN_SECONDS_PER_TOKEN = 0.0001

# Server spellings of the same ends. OpenAI's deprecated `function_call` is a tool call;
# TGI and Anthropic name a natural stop `eos_token`, `stop_sequence` or `end_turn`,
# the token limit `max_tokens`, a tool call `tool_use` and a refusal `refusal`.
_FINISH_ALIASES: dict[str, FinishReasonLabel] = {
    "stop": "stop",
    "eos_token": "stop",
    "stop_sequence": "stop",
    "end_turn": "stop",
    "length": "length",
    "max_tokens": "length",
    # Anthropic: the context window ended the generation, a length limit all the same.
    "model_context_window_exceeded": "length",
    "content_filter": "content_filter",
    "refusal": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "tool_use": "tool_calls",
}


def finish_reason_label(raw: str | None) -> FinishReasonLabel:
    """The bounded label of a server's finish reason: `none` when it gave none,
    `other` for any value not known (the raw value may be anything, of any length)."""
    if raw is None:
        return "none"
    return _FINISH_ALIASES.get(raw, "other")


def burst_bound(decode_tokens: int) -> float:
    """The shortest decode window, in seconds, that counts as measured for a probe
    with this many tokens after the first (see BURST_MIN_WINDOW_SECONDS)."""
    return max(BURST_MIN_WINDOW_SECONDS, BURST_MIN_SECONDS_PER_TOKEN * decode_tokens)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the server reported them, not yet checked: JSON numbers, so
    possibly negative, fractional or absurd (see check_usage)."""

    input_tokens: int | float | None = None
    output_tokens: int | float | None = None
    reasoning_tokens: int | float | None = None

    def merge(self, later: Usage | None) -> Usage:
        """This usage updated by a later report: each count the later one gives wins,
        each it omits is kept. Streams report usage in pieces (Anthropic: input tokens
        in `message_start`, output tokens in `message_delta`) and counts are cumulative
        (the last value is the total, never a sum of reports)."""
        if later is None:
            return self
        return Usage(
            input_tokens=_later(self.input_tokens, later.input_tokens),
            output_tokens=_later(self.output_tokens, later.output_tokens),
            reasoning_tokens=_later(self.reasoning_tokens, later.reasoning_tokens),
        )


def _later(earlier: int | float | None, later: int | float | None) -> int | float | None:
    return earlier if later is None else later


def output_token_bound(max_tokens: int) -> int:
    """The most output (or reasoning) tokens a request asking for `max_tokens` can
    plausibly produce: 2 x max_tokens + 16 (a stop token, a slight overshoot). Usage
    above it is implausible (check_usage), and no probe is charged more (budget)."""
    return _OUTPUT_FACTOR * max_tokens + _OUTPUT_SLACK


def check_usage(usage: Usage, *, max_tokens: int | None, bytes_received: int | None) -> str | None:
    """Why reported usage cannot be true, or None when it is plausible.

    Rejected: a count that is not a whole non-negative number; prompt tokens above
    MAX_INPUT_TOKENS; output (or reasoning) tokens above 2 x max_tokens + 16 (servers
    may count a stop token or overshoot slightly, never by that much); output tokens,
    less reasoning tokens (which a server may count without streaming them), above the
    bytes of the response body, since every streamed token costs at least a byte.
    """
    counts = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
    }
    for name, value in counts.items():
        if value is None:
            continue
        if not math.isfinite(value) or value != int(value):
            return f"{name} {value!r} is not a whole number"
        if value < 0:
            return f"{name} {value!r} is negative"
    if usage.input_tokens is not None and usage.input_tokens > MAX_INPUT_TOKENS:
        return f"input_tokens {usage.input_tokens:.0f} above {MAX_INPUT_TOKENS}"
    output = usage.output_tokens or 0
    reasoning = usage.reasoning_tokens or 0
    if max_tokens is not None:
        limit = output_token_bound(max_tokens)
        for name, value in (("output_tokens", output), ("reasoning_tokens", reasoning)):
            if value > limit:
                return (
                    f"{name} {value:.0f} above {_OUTPUT_FACTOR} x max_tokens ({max_tokens})"
                    f" + {_OUTPUT_SLACK}"
                )
    if bytes_received is not None and output - reasoning > bytes_received:
        return f"output_tokens {output:.0f} above the {bytes_received} bytes received"
    return None


class GapHistogram:
    """The inter-chunk gaps of one probe as bucket counts, sum, count, min and max:
    fixed memory whatever the number of chunks, merged into the store once at the end.
    `counts[i]` holds gaps <= bounds[i] (and above the previous bound); the last
    count is the +Inf bucket, `sums[i]` the sum of the gaps counted in `counts[i]`
    (so a sink with other boundaries can replay the gaps exactly; sinks/otel)."""

    __slots__ = ("bounds", "count", "counts", "max", "min", "sum", "sums")

    def __init__(self, bounds: Sequence[float] = DEFAULT_INTER_TOKEN_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sums = [0.0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0
        self.min = math.inf
        self.max = 0.0

    def observe(self, value: float) -> None:
        """One gap, in seconds."""
        # bisect_left: a value equal to a boundary belongs to that bucket (le semantics).
        index = bisect_left(self.bounds, value)
        self.counts[index] += 1
        self.sums[index] += value
        self.sum += value
        self.count += 1
        # Comparisons, not min()/max(): once per token chunk (issue #14).
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value


@dataclass(slots=True)
class StreamItem:
    """What one stream event means, independent of the protocol that carried it."""

    text: str = ""
    reasoning: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    done: bool = False
    # What the server reported of its own timings (Ollama's final line, llama.cpp's
    # `timings`), already parsed and bounded by the decoder.
    server_timings: ServerTimings | None = None


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """A request a protocol wants sent: the engine only moves bytes and stamps times."""

    url: str
    headers: dict[str, str]
    body: bytes


class StreamDecoder(Protocol):
    """Turns one framed event (an SSE event, an NDJSON line) into a StreamItem, or
    None for events without meaning (pings). Raises ProbeFailure(STREAM_ERROR) for an
    error payload and ProbeFailure(PROTOCOL) for malformed data. One decoder per
    stream, so it may keep state across events (the protocol's block structure, the
    usage it has seen so far)."""

    def decode(self, frame: Frame) -> StreamItem | None: ...


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe. Durations are seconds from the monotonic clock;
    None where the probe never got that far or did not measure it.

    `finish_reason` is the bounded label of the stream's finish reason, set whenever
    the stream ended (at its terminator or at EOF), successful or not; None when it
    never ended (a timeout, a broken connection, an error payload). `burst` marks a
    successful probe whose decode window was below burst_bound(): its TPOT, gaps and
    decode rate are None, because they were not measured."""

    success: bool
    reason: FailureReason | None = None
    detail: str = ""
    started_at: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    http_status: int | None = None
    time_to_first_byte: float | None = None
    time_to_first_chunk: float | None = None
    time_to_first_token: float | None = None
    time_to_first_output_token: float | None = None
    duration: float | None = None
    inter_chunk_gaps: GapHistogram | None = None
    time_per_output_token: float | None = None
    output_tokens: int | None = None
    # Output tokens produced between the first and the last token chunk: the TPOT and
    # decode-rate numerator. Reasoning the server counted but did not stream (hidden
    # thinking) was produced before the first token and is not among them.
    decode_tokens: int | None = None
    usage_source: UsageSource | None = None
    usage_rejected: str | None = None
    input_tokens: int | None = None
    reasoning_tokens: int | None = None
    token_chunks: int = 0
    # The output token limit the request carried (max_tokens, or a larger one from
    # extra_body); None where unknown. Bounds what a probe is charged (budget.py).
    max_tokens: int | None = None
    # Chunks that streamed reasoning text: where there are some, TTFOT differs from TTFT
    # (the `auto` TTFOT histogram turns on). Reasoning counted in usage but not streamed
    # (hidden) leaves TTFOT equal to TTFT.
    reasoning_chunks: int = 0
    bytes_received: int = 0
    elapsed: float = 0.0
    answer_excerpt: str = ""
    finish_reason: FinishReasonLabel | None = None
    burst: bool = False
    # Set by the executor: why the timings may include the exporter's own delay
    # (metrics.SUSPECT_CAUSES: loop_lag, throttled); empty when they are clean.
    suspect: tuple[str, ...] = ()
    # A cold probe's (scenario "cold"): how long the target had been idle, as far as
    # the exporter knows, when it was sent; set by the scheduler, not the probe.
    idle_before: float | None = None
    # The server's own timings of this request, where its protocol reports them and
    # they fit inside the client's elapsed time; None otherwise (and on failures).
    server_timings: ServerTimings | None = None
    # Set by the executor when tracing is on (None otherwise): the W3C trace id
    # (128-bit) and span id (64-bit) of this probe, both nonzero. The OTel sink makes
    # the probe's span with them; the Prometheus sink attaches them as exemplars.
    trace_id: int | None = None
    span_id: int | None = None

    @property
    def output_token_limit(self) -> int | None:
        """The most output tokens this probe's request can plausibly have produced
        (output_token_bound of its max_tokens); None where max_tokens is unknown."""
        return None if self.max_tokens is None else output_token_bound(self.max_tokens)

    @property
    def decode_seconds(self) -> float | None:
        """Time from the first to the last token chunk; None for a burst (not measured)."""
        if self.burst or self.duration is None or self.time_to_first_token is None:
            return None
        return self.duration - self.time_to_first_token

    @property
    def prefill_overhead(self) -> float | None:
        """Client TTFT minus the server's load + prefill: what the client waited on
        beyond the model (network, TLS, queueing, HTTP and framing). None unless both
        are known. Not clamped: below 0, the server's figures do not fit the client's."""
        server = self.server_timings.time_to_first_token if self.server_timings else None
        if server is None or self.time_to_first_token is None:
            return None
        return self.time_to_first_token - server

    @property
    def output_tokens_per_second(self) -> float | None:
        """Decode rate, decode tokens / (e2e - TTFT) = 1 / TPOT."""
        if self.time_per_output_token is None or self.time_per_output_token <= 0:
            return None
        return 1.0 / self.time_per_output_token


class StreamTimeline:
    """Accumulates arrival times of decoded items; pure, so tests drive it with fake
    nanosecond stamps. `start_ns` is the moment the request was issued; `gap_bounds`
    the bucket boundaries gaps are counted into; `max_tokens` what the request asked
    for (bounds plausible usage). Memory is fixed whatever the number of chunks."""

    __slots__ = (
        "_answer",
        "_answer_chars",
        "_last_token_ns",
        "done",
        "finish_reason",
        "first_chunk_ns",
        "first_output_ns",
        "first_token_ns",
        "gaps",
        "max_tokens",
        "reasoning_chunks",
        "server_timings",
        "start_ns",
        "token_chunks",
        "usage",
    )

    # `expect` is matched against this much of the answer; max_tokens bounds it anyway.
    _EXCERPT = 65536

    def __init__(
        self,
        start_ns: int,
        *,
        gap_bounds: Sequence[float] = DEFAULT_INTER_TOKEN_BUCKETS,
        max_tokens: int | None = None,
    ) -> None:
        self.start_ns = start_ns
        self.max_tokens = max_tokens
        self.first_chunk_ns: int | None = None
        self.first_token_ns: int | None = None
        self.first_output_ns: int | None = None
        self._last_token_ns: int | None = None
        self.gaps = GapHistogram(gap_bounds)
        self.token_chunks = 0
        self.reasoning_chunks = 0
        self.usage: Usage | None = None
        self.server_timings: ServerTimings | None = None
        self.done = False
        self.finish_reason: str | None = None
        self._answer: list[str] = []
        self._answer_chars = 0

    def on_event(self, t_ns: int) -> None:
        """Any data event arrived (role-only and usage chunks included)."""
        if self.first_chunk_ns is None:
            self.first_chunk_ns = t_ns

    def on_item(self, t_ns: int, item: StreamItem) -> None:
        """A decoded item arrived at `t_ns` (stamped when its bytes arrived)."""
        if item.usage is not None:
            # Merged, not replaced: a later report may carry only some of the counts.
            self.usage = item.usage if self.usage is None else self.usage.merge(item.usage)
        if item.server_timings is not None:
            # Merged like usage: a later report updates the durations it gives.
            timings = self.server_timings
            self.server_timings = (
                item.server_timings if timings is None else timings.merge(item.server_timings)
            )
        if item.done:
            self.done = True
        if item.finish_reason and self.finish_reason is None:
            # The first one wins: the usage chunk after it (`choices: []`) carries none.
            self.finish_reason = item.finish_reason
        if not (item.text or item.reasoning):
            # Role-only, empty, finish and usage chunks carry no generated text: they
            # never count as a token and never move the end of generation.
            return
        if self._last_token_ns is None:
            self.first_token_ns = t_ns
        else:
            self.gaps.observe((t_ns - self._last_token_ns) * _NS)
        if item.reasoning:
            self.reasoning_chunks += 1
        if item.text:
            if self.first_output_ns is None:
                self.first_output_ns = t_ns
            if self._answer_chars < self._EXCERPT:
                self._answer.append(item.text)
                self._answer_chars += len(item.text)
        self._last_token_ns = t_ns
        self.token_chunks += 1

    def truncation(self, *, terminated: bool, eof: bool) -> str | None:
        """Why the stream that just ended is truncated, or None if it is complete.

        `terminated` says the protocol ends its streams with a terminator (OpenAI's
        `[DONE]`), `eof` that the stream ended at EOF rather than at a terminator. A
        stream is complete only with a finish reason and, where the protocol has one,
        its terminator: llama-cpp-python sends `[DONE]` without any finish reason when
        another request interrupts a generation, after only part of the tokens.
        """
        chunks = f"after {self.token_chunks} token chunks"
        if terminated and eof:
            return f"the stream ended (EOF) before its terminator {chunks}"
        if self.finish_reason is None:
            return f"the stream ended without a finish reason {chunks}"
        return None

    @property
    def answer(self) -> str:
        """The first characters of the answer (non-reasoning) text."""
        return "".join(self._answer)[: self._EXCERPT]

    def result(
        self,
        *,
        phases: dict[str, float],
        http_status: int | None,
        headers_ns: int | None,
        started_at: float,
        end_ns: int,
        bytes_received: int | None = None,
    ) -> ProbeResult:
        """The successful result. Raises ProbeFailure(NO_TOKENS) if no token came.
        Implausible usage (check_usage) is dropped for chunk counting, and said so."""
        if self.first_token_ns is None or self._last_token_ns is None:
            raise ProbeFailure(FailureReason.NO_TOKENS, "the stream ended without generated text")
        ttft = (self.first_token_ns - self.start_ns) * _NS
        e2e = (self._last_token_ns - self.start_ns) * _NS
        usage = self.usage
        rejected = None
        if usage is not None:
            rejected = check_usage(usage, max_tokens=self.max_tokens, bytes_received=bytes_received)
            if rejected is not None:
                usage = None
        tokens, source = _output_tokens(usage, self.token_chunks)
        hidden = 0
        if usage is not None and self.reasoning_chunks == 0:
            hidden = _whole(usage.reasoning_tokens) or 0
        # The first streamed token opens the window; the rest were decoded inside it.
        decode_tokens = max(tokens - hidden, 1) - 1
        # A burst (decode window below the resolution bound) measured no decode figure.
        window = (self._last_token_ns - self.first_token_ns) * _NS
        burst = decode_tokens > 0 and window < burst_bound(decode_tokens)
        tpot = (e2e - ttft) / decode_tokens if decode_tokens > 0 and not burst else None
        elapsed = (end_ns - self.start_ns) * _NS
        # A server duration longer than the whole request as the client timed it did
        # not happen inside this request: dropped, as not reported.
        server = self.server_timings.within(elapsed) if self.server_timings else None
        return ProbeResult(
            success=True,
            started_at=started_at,
            phases=phases,
            http_status=http_status,
            time_to_first_byte=_secs(headers_ns, self.start_ns),
            time_to_first_chunk=_secs(self.first_chunk_ns, self.start_ns),
            time_to_first_token=ttft,
            time_to_first_output_token=_secs(self.first_output_ns, self.start_ns),
            duration=e2e,
            inter_chunk_gaps=None if burst else self.gaps,
            time_per_output_token=tpot,
            output_tokens=tokens,
            decode_tokens=decode_tokens,
            usage_source=source,
            usage_rejected=rejected,
            input_tokens=_whole(usage.input_tokens) if usage else None,
            reasoning_tokens=_whole(usage.reasoning_tokens) if usage else None,
            token_chunks=self.token_chunks,
            max_tokens=self.max_tokens,
            reasoning_chunks=self.reasoning_chunks,
            bytes_received=bytes_received or 0,
            elapsed=elapsed,
            answer_excerpt=self.answer[:200],
            finish_reason=finish_reason_label(self.finish_reason),
            burst=burst,
            server_timings=server,
        )


def _output_tokens(usage: Usage | None, token_chunks: int) -> tuple[int, UsageSource]:
    if usage is not None and usage.output_tokens:
        return int(usage.output_tokens), "usage"
    # NOTE: without (plausible) server usage we assume one token per text chunk;
    # servers that coalesce tokens make this an undercount, hence the usage_source label.
    return token_chunks, "chunks"


def _whole(value: float | None) -> int | None:
    # Only called on usage check_usage accepted: whole, finite, non-negative.
    return None if value is None else int(value)


def _secs(t_ns: int | None, start_ns: int) -> float | None:
    return None if t_ns is None else (t_ns - start_ns) * _NS


class PreparedProbe(Protocol):
    """A probe ready to run once: `run()` measures, `failure()` turns what `run()` (or
    its deadline) raised into a failed result with the facts gathered so far."""

    log: list[str]

    async def run(self) -> ProbeResult: ...

    def failure(self, exc: BaseException, timeout: float) -> ProbeResult: ...


class Prober(Protocol):
    """What the registry maps a protocol name to (blackbox's ProbeFn). `gap_bounds` are
    the inter-token bucket boundaries of the store the result will be recorded into
    (so the per-probe gap histogram merges exactly); the defaults when omitted."""

    def __call__(
        self,
        target: TargetBase,
        session: aiohttp.ClientSession,
        clock: Clock,
        /,
        *,
        gap_bounds: Sequence[float] | None = None,
    ) -> PreparedProbe: ...


_Target = TypeVar("_Target", bound="TargetBase")


@dataclass(frozen=True, slots=True)
class ProtocolSpec(Generic[_Target]):
    """One protocol, as its module declares it and the registry lists it: its name
    (the `protocol` value in the config), its config model, how it builds the request
    of one probe (with the cache-busting nonce, or None), and the factories of the
    framer and the decoder of one stream. `terminated`: the protocol ends its streams
    with a terminator (OpenAI's `[DONE]`), so EOF before it is a truncation."""

    name: str
    model: type[_Target]
    build_request: Callable[[_Target, str | None], HTTPRequest]
    new_decoder: Callable[[], StreamDecoder]
    new_framer: Callable[[], Framer]
    terminated: bool = True
    # OpenTelemetry GenAI semconv v1.41.0: `gen_ai.provider.name` (a well-known value
    # where one fits, a custom one such as `ollama` otherwise; a target's
    # `otel_provider` overrides it) and `gen_ai.operation.name` of this protocol.
    otel_provider: str = "openai"
    otel_operation: str = "chat"
