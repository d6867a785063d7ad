"""The one stream-writing loop of the simulator: every mode (OpenAI, and each
protocol in sim/protocols/) writes its planned events through `write_stream`, with the
same framing knobs (data spacing, CRLF, split writes), faults (stall, hold, drop),
burst and first-text stamps in the request log. A mode changes the bytes of an event
by its writer (an `SSEFramer` subclass), never the loop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Self

from aiohttp import web

from ttft_exporter.sim.llm_state import LLMSimState, ModelBehaviour, RecordedRequest, SimEvent

__all__ = [
    "SSE_HEADERS",
    "SSEFramer",
    "StreamContext",
    "abort",
    "hold",
    "sleep_until",
    "write_stream",
]

# Spacing of the pieces of a split event; the last piece lands on the event's deadline.
_SPLIT_GAP = 0.002
# Fallback for servers without handler_cancellation: how often a held stream checks
# whether the client is still there.
_DISCONNECT_POLL = 0.1
SSE_HEADERS: Mapping[str, str] = MappingProxyType(
    {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
)


class SSEFramer:
    """Turns events into bytes: ``data:`` spacing, line ends and split writes."""

    def __init__(
        self,
        *,
        data_space: bool = True,
        crlf: bool = False,
        split_writes: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self._prefix = "data: " if data_space else "data:"
        self._end = "\r\n\r\n" if crlf else "\n\n"
        self._split = split_writes
        self._rng = rng or random.Random()

    @classmethod
    def for_model(cls, behaviour: ModelBehaviour, *, data_space: bool | None = None) -> Self:
        """The writer with the model's framing knobs; `data_space` overrides the knob
        for a server that always (or never) writes the space."""
        return cls(
            data_space=behaviour.data_space if data_space is None else data_space,
            crlf=behaviour.crlf,
            split_writes=behaviour.split_writes,
            rng=random.Random(behaviour.seed),
        )

    def frame(self, event: SimEvent) -> list[bytes]:
        """Return the pieces to write, in order (one piece unless split_writes)."""
        if event.kind == "comment":
            text = f": {event.data}{self._end}"
        else:
            text = f"{self._prefix}{event.data}{self._end}"
        raw = text.encode()
        return self._pieces(raw) if self._split else [raw]

    def _pieces(self, raw: bytes) -> list[bytes]:
        """Cut at 1-2 random offsets, one inside a multibyte character if any."""
        continuation = [i for i, byte in enumerate(raw) if byte & 0xC0 == 0x80]
        offsets = {self._rng.choice(continuation)} if continuation else set()
        cuts = self._rng.choice((1, 2))
        while len(offsets) < cuts:
            offsets.add(self._rng.randrange(1, len(raw)))
        bounds = [0, *sorted(offsets), len(raw)]
        return [raw[lo:hi] for lo, hi in itertools.pairwise(bounds)]


def _client_gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def abort(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


async def sleep_until(deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


async def hold(request: web.BaseRequest, state: LLMSimState) -> None:
    """Wait without writing until the client leaves or the app shuts down."""
    while not (state.closing.is_set() or _client_gone(request)):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_DISCONNECT_POLL):
                await state.closing.wait()
    abort(request)


async def _write_event(
    response: web.StreamResponse, framer: SSEFramer, event: SimEvent, deadline: float
) -> None:
    pieces = framer.frame(event)
    last = len(pieces) - 1
    for index, piece in enumerate(pieces):
        await sleep_until(deadline - (last - index) * _SPLIT_GAP)
        await response.write(piece)


def _first_text_written(state: LLMSimState, record: RecordedRequest) -> None:
    if record.first_text_written is None:
        record.first_text_written = time.perf_counter()
        state.first_token_written.append(record.first_text_written)


class _Burst:
    """Events held back by the ``burst`` knob, written in one write when the last
    of them is due."""

    def __init__(
        self, response: web.StreamResponse, state: LLMSimState, record: RecordedRequest
    ) -> None:
        self._response = response
        self._state = state
        self._record = record
        self._pieces: list[bytes] = []
        self._due = 0.0
        self._text = False

    def __bool__(self) -> bool:
        return bool(self._pieces)

    def hold(self, framer: SSEFramer, event: SimEvent, deadline: float) -> None:
        self._pieces.extend(framer.frame(event))
        self._due = max(self._due, deadline)
        self._text = self._text or event.text

    async def flush(self) -> None:
        if not self._pieces:
            return
        await sleep_until(self._due)
        await self._response.write(b"".join(self._pieces))
        self._pieces.clear()
        if self._text:
            _first_text_written(self._state, self._record)


@dataclass(frozen=True, slots=True)
class StreamContext:
    """A request a mode answers with a stream, as the writer needs it."""

    request: web.Request
    state: LLMSimState
    record: RecordedRequest
    behaviour: ModelBehaviour
    # Loop time the request arrived; each event is due `event.at` seconds after it.
    arrival: float


async def write_stream(
    ctx: StreamContext,
    events: Iterator[SimEvent],
    writer: SSEFramer,
    *,
    headers: Mapping[str, str] = SSE_HEADERS,
    honour_burst: bool = True,
) -> web.StreamResponse:
    """Send `headers` once `headers_delay` passed, then every event at its time.
    `honour_burst=False` for the modes that do not support the `burst` knob (Gemini,
    Azure OpenAI): their events are written one by one."""
    request, state, arrival = ctx.request, ctx.state, ctx.arrival
    response = web.StreamResponse(headers=dict(headers))
    await sleep_until(arrival + ctx.behaviour.headers_delay)
    burst = _Burst(response, state, ctx.record)
    bursting = honour_burst and ctx.behaviour.burst
    try:
        await response.prepare(request)
        for event in events:
            if state.closing.is_set():
                # Shutting down: a stall with keep-alives would otherwise ping forever.
                abort(request)
                return response
            if bursting and event.kind in ("data", "comment") and (burst or event.text):
                burst.hold(writer, event, arrival + event.at)
                continue
            await burst.flush()
            if event.kind == "drop":
                await sleep_until(arrival + event.at)
                abort(request)
                return response
            if event.kind in ("stall", "hold"):
                await hold(request, state)
                return response
            await _write_event(response, writer, event, arrival + event.at)
            if event.text:
                _first_text_written(state, ctx.record)
        await burst.flush()
        await response.write_eof()
    except ConnectionResetError:
        # The client went away mid-stream; that is its business, not a server error.
        pass
    return response
