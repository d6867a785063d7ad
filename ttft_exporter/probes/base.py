"""The probe model: what a protocol decodes from a stream, what a probe returns, and the
pure timeline that turns arrival times into TTFT, gaps, TPOT and token counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.sse import SSEEvent

if TYPE_CHECKING:
    import aiohttp

    from ttft_exporter.clock import Clock
    from ttft_exporter.config import TargetConfig

__all__ = [
    "PHASES",
    "HTTPRequest",
    "ProbeResult",
    "StreamDecoder",
    "StreamItem",
    "StreamTimeline",
    "Usage",
    "UsageSource",
]

PHASES = ("dns", "connect", "tls", "headers")
UsageSource = Literal["usage", "chunks"]
_NS = 1e-9


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as reported by the server."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(slots=True)
class StreamItem:
    """What one stream event means, independent of the protocol that carried it."""

    text: str = ""
    reasoning: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    done: bool = False


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """A request a protocol wants sent: the engine only moves bytes and stamps times."""

    url: str
    headers: dict[str, str]
    body: bytes


class StreamDecoder(Protocol):
    """Turns one SSE event into a StreamItem, or None for events without meaning
    (pings). Raises ProbeFailure(STREAM_ERROR) for an error payload and
    ProbeFailure(PROTOCOL) for malformed data. One decoder per stream."""

    def decode(self, event: SSEEvent) -> StreamItem | None: ...


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe. Durations are seconds from the monotonic clock;
    None where the probe never got that far."""

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
    inter_chunk_gaps: tuple[float, ...] = ()
    time_per_output_token: float | None = None
    output_tokens: int | None = None
    usage_source: UsageSource | None = None
    input_tokens: int | None = None
    reasoning_tokens: int | None = None
    token_chunks: int = 0
    elapsed: float = 0.0
    answer_excerpt: str = ""

    @property
    def decode_seconds(self) -> float | None:
        """Time from the first to the last token chunk."""
        if self.duration is None or self.time_to_first_token is None:
            return None
        return self.duration - self.time_to_first_token

    @property
    def output_tokens_per_second(self) -> float | None:
        """Decode rate, (tokens - 1) / (e2e - TTFT) = 1 / TPOT."""
        if self.time_per_output_token is None or self.time_per_output_token <= 0:
            return None
        return 1.0 / self.time_per_output_token


class StreamTimeline:
    """Accumulates arrival times of decoded items; pure, so tests drive it with fake
    nanosecond stamps. `start_ns` is the moment the request was issued."""

    __slots__ = (
        "_answer",
        "_answer_chars",
        "_last_token_ns",
        "done",
        "first_chunk_ns",
        "first_output_ns",
        "first_token_ns",
        "gaps_ns",
        "start_ns",
        "token_chunks",
        "usage",
    )

    # `expect` is matched against this much of the answer; max_tokens bounds it anyway.
    _EXCERPT = 65536

    def __init__(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self.first_chunk_ns: int | None = None
        self.first_token_ns: int | None = None
        self.first_output_ns: int | None = None
        self._last_token_ns: int | None = None
        self.gaps_ns: list[int] = []
        self.token_chunks = 0
        self.usage: Usage | None = None
        self.done = False
        self._answer: list[str] = []
        self._answer_chars = 0

    def on_event(self, t_ns: int) -> None:
        """Any data event arrived (role-only and usage chunks included)."""
        if self.first_chunk_ns is None:
            self.first_chunk_ns = t_ns

    def on_item(self, t_ns: int, item: StreamItem) -> None:
        """A decoded item arrived at `t_ns` (stamped when its bytes arrived)."""
        if item.usage is not None:
            self.usage = item.usage
        if item.done:
            self.done = True
        if not (item.text or item.reasoning):
            # Role-only, empty, finish and usage chunks carry no generated text: they
            # never count as a token and never move the end of generation.
            return
        if self._last_token_ns is None:
            self.first_token_ns = t_ns
        else:
            self.gaps_ns.append(t_ns - self._last_token_ns)
        if item.text:
            if self.first_output_ns is None:
                self.first_output_ns = t_ns
            if self._answer_chars < self._EXCERPT:
                self._answer.append(item.text)
                self._answer_chars += len(item.text)
        self._last_token_ns = t_ns
        self.token_chunks += 1

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
    ) -> ProbeResult:
        """The successful result. Raises ProbeFailure(NO_TOKENS) if no token came."""
        if self.first_token_ns is None or self._last_token_ns is None:
            raise ProbeFailure(FailureReason.NO_TOKENS, "the stream ended without generated text")
        ttft = (self.first_token_ns - self.start_ns) * _NS
        e2e = (self._last_token_ns - self.start_ns) * _NS
        tokens, source = self._output_tokens()
        tpot = (e2e - ttft) / (tokens - 1) if tokens > 1 else None
        usage = self.usage
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
            inter_chunk_gaps=tuple(g * _NS for g in self.gaps_ns),
            time_per_output_token=tpot,
            output_tokens=tokens,
            usage_source=source,
            input_tokens=usage.input_tokens if usage else None,
            reasoning_tokens=usage.reasoning_tokens if usage else None,
            token_chunks=self.token_chunks,
            elapsed=(end_ns - self.start_ns) * _NS,
            answer_excerpt=self.answer[:200],
        )

    def _output_tokens(self) -> tuple[int, UsageSource]:
        if self.usage is not None and self.usage.output_tokens:
            return self.usage.output_tokens, "usage"
        # NOTE: without server usage we assume one token per text chunk; servers that
        # coalesce tokens make this an undercount, hence the usage_source label.
        return self.token_chunks, "chunks"


def _secs(t_ns: int | None, start_ns: int) -> float | None:
    return None if t_ns is None else (t_ns - start_ns) * _NS


class PreparedProbe(Protocol):
    """A probe ready to run once: `run()` measures, `failure()` turns what `run()` (or
    its deadline) raised into a failed result with the facts gathered so far."""

    log: list[str]

    async def run(self) -> ProbeResult: ...

    def failure(self, exc: BaseException, timeout: float) -> ProbeResult: ...


# What the registry maps a protocol name to (blackbox's ProbeFn).
Prober = Callable[["TargetConfig", "aiohttp.ClientSession", "Clock"], PreparedProbe]
