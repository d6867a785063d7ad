"""Writing a protocol mode's SSE events on the simulator's timeline: the OpenAI mode's
framer (data spacing, CRLF, split writes), faults (stall, hold, drop) and first-text
stamps, for the modes that build their own events."""

from __future__ import annotations

import random
from collections.abc import Iterator

from aiohttp import web

from ttft_exporter.sim.llm import (
    LLMSimState,
    ModelBehaviour,
    RecordedRequest,
    SimEvent,
    SSEFramer,
    _abort,
    _first_text_written,
    _hold,
    _sleep_until,
    _write_event,
)

__all__ = ["write_sse"]


async def write_sse(
    request: web.Request,
    response: web.StreamResponse,
    state: LLMSimState,
    record: RecordedRequest,
    behaviour: ModelBehaviour,
    events: Iterator[SimEvent],
    arrival: float,
) -> None:
    """Write `events`, each when it is due (seconds after `arrival`). `burst` is not
    supported here."""
    framer = SSEFramer(
        data_space=behaviour.data_space,
        crlf=behaviour.crlf,
        split_writes=behaviour.split_writes,
        rng=random.Random(behaviour.seed),
    )
    for event in events:
        if state.closing.is_set():
            _abort(request)  # shutting down: a stall with keep-alives would ping forever
            return
        if event.kind == "drop":
            await _sleep_until(arrival + event.at)
            _abort(request)
            return
        if event.kind in ("stall", "hold"):
            await _hold(request, state)
            return
        await _write_event(response, framer, event, arrival + event.at)
        if event.text:
            _first_text_written(state, record)
