"""The writing loop the protocol modes share: a planned stream of events, written on
time through a writer (SSE or NDJSON), with the burst, stall, hold and drop faults of
the OpenAI mode (sim/llm.py) and the same request-log stamps."""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web

from ttft_exporter.sim.llm import (
    LLMSimState,
    ModelBehaviour,
    RecordedRequest,
    SimEvent,
    SSEFramer,
    _abort,
    _Burst,
    _first_text_written,
    _hold,
    _sleep_until,
    _write_event,
)

__all__ = ["write_stream"]


async def write_stream(
    request: web.Request,
    response: web.StreamResponse,
    *,
    state: LLMSimState,
    record: RecordedRequest,
    behaviour: ModelBehaviour,
    events: Iterator[SimEvent],
    writer: SSEFramer,
    arrival: float,
) -> web.StreamResponse:
    """Send the headers once `headers_delay` passed, then every event at its time."""
    await _sleep_until(arrival + behaviour.headers_delay)
    burst = _Burst(response, state, record)
    try:
        await response.prepare(request)
        for event in events:
            if state.closing.is_set():
                # Shutting down: a stall with keep-alives would otherwise ping forever.
                _abort(request)
                return response
            if behaviour.burst and event.kind in ("data", "comment") and (burst or event.text):
                burst.hold(writer, event, arrival + event.at)
                continue
            await burst.flush()
            if event.kind == "drop":
                await _sleep_until(arrival + event.at)
                _abort(request)
                return response
            if event.kind in ("stall", "hold"):
                await _hold(request, state)
                return response
            await _write_event(response, writer, event, arrival + event.at)
            if event.text:
                _first_text_written(state, record)
        await burst.flush()
        await response.write_eof()
    except ConnectionResetError:
        # The client went away mid-stream; that is its business, not a server error.
        pass
    return response
