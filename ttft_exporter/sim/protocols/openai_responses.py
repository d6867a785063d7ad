"""Simulator mode: OpenAI Responses streaming (`POST /v1/responses`, llm-streaming.md
§A.2), on the same models, timing plan, fault knobs and request log as the Chat mode.

The wire format as OpenAI writes it: named SSE events whose data repeats `type` and
carries a `sequence_number`; `response.created` and `response.in_progress` first; a
reasoning output item whose summary streams as `response.reasoning_summary_text.delta`
when the model reasons; a message item whose text streams as
`response.output_text.delta`; then the terminal event with the usage:
`response.completed`, or `response.incomplete` with `incomplete_details.reason`
`max_output_tokens` when `max_output_tokens` cut the answer (a `finish_reason` knob
other than `auto` gives that reason; null gives `incomplete_details: null`). Faults:
`error_after` sends the `error` event inside the 200 stream, `malformed_after` a cut
JSON event, `stall_after`/`drop_after`/`truncate_after` as in the Chat mode, `omit_done`
leaves out the terminal event. Keep-alives are SSE comments. Auth: Bearer.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from ttft_exporter.sim.llm import (
    GenerationPlan,
    SimRequest,
    _check_auth,
    _dumps,
    _error_response,
    _request_behaviour,
    _RequestError,
    _with_keepalives,
    plan_generation,
    receive,
)
from ttft_exporter.sim.llm_state import ModelBehaviour, SimEvent
from ttft_exporter.sim.protocols.mode import fault_ending
from ttft_exporter.sim.protocols.named_sse import NamedEvent, new_framer
from ttft_exporter.sim.stream_writer import write_stream

__all__ = ["PATH", "add_routes", "iter_responses_events"]

PATH = "/v1/responses"
_MALFORMED = '{"type":"response.output_text.delta","delta":'


class _Sequence:
    """Numbers the events of one stream, as the API's `sequence_number` does."""

    def __init__(self) -> None:
        self.next = 0

    def event(
        self, at: float, name: str, payload: dict[str, Any], *, text: bool = False
    ) -> NamedEvent:
        data = _dumps({"type": name, "sequence_number": self.next, **payload})
        self.next += 1
        return NamedEvent(at, "data", data, text=text, name=name)

    def error(self, at: float, emitted: int) -> NamedEvent:
        """The `error` event inside the 200 stream (the error_after fault)."""
        message = f"Simulated server error after {emitted} tokens."
        return self.event(at, "error", {"code": "server_error", "message": message, "param": None})


def _malformed(at: float) -> NamedEvent:
    return NamedEvent(at, "data", _MALFORMED, name="response.output_text.delta")


def _parse(body: object) -> SimRequest:
    """Validate a Responses body: model, input, and optional max_output_tokens."""
    if not isinstance(body, dict):
        raise _RequestError(400, "The request body must be a JSON object.", None)
    model = body.get("model")
    if not isinstance(model, str):
        raise _RequestError(400, "Missing required parameter: 'model'.", None, "model")
    given = body.get("input")
    if isinstance(given, str):
        words = len(given.split())
    elif isinstance(given, list):
        words = sum(
            len(item["content"].split())
            for item in given
            if isinstance(item, dict) and isinstance(item.get("content"), str)
        )
    else:
        raise _RequestError(400, "Missing required parameter: 'input'.", None, "input")
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise _RequestError(400, "max_output_tokens must be a positive integer.", None)
    if body.get("stream") is not True:
        raise _RequestError(400, "this simulator mode serves streams only", None, "stream")
    # api="chat": the plan then generates reasoning tokens (a reasoning item) too.
    return SimRequest(api="chat", model=model, max_tokens=max_tokens, prompt_words=words)


def iter_responses_events(
    behaviour: ModelBehaviour, request: SimRequest, *, response_id: str, rng: random.Random
) -> Iterator[SimEvent]:
    """The stream's events in time order, keep-alive comments included. Pure apart
    from `rng`; never ends when the stream stalls with keep-alives on."""
    plan = plan_generation(behaviour, request, rng)
    events = _render(behaviour, request, plan, response_id)
    return _with_keepalives(events, behaviour.headers_delay, behaviour.keepalive_interval)


def _render(
    behaviour: ModelBehaviour, request: SimRequest, plan: GenerationPlan, response_id: str
) -> Iterator[SimEvent]:
    seq = _Sequence()
    start = behaviour.headers_delay
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "status": "in_progress",
        "model": request.model,
        "output": [],
        "usage": None,
    }
    yield seq.event(start, "response.created", {"response": response})
    yield seq.event(start, "response.in_progress", {"response": response})
    item = -1
    item_type = ""
    emitted = 0
    for chunk in plan.chunks:
        wanted = "reasoning" if chunk.field == "reasoning" else "message"
        if wanted != item_type:
            if item_type:
                yield from _close_item(seq, chunk.at, item, item_type)
            item += 1
            item_type = wanted
            yield from _open_item(seq, chunk.at, item, item_type)
        if plan.malformed_after == emitted:
            yield _malformed(chunk.at)
        emitted += chunk.tokens
        text = (behaviour.token_text + " ") * chunk.tokens
        if wanted == "reasoning":
            payload = {"item_id": f"rs_{item}", "output_index": item, "summary_index": 0}
            name = "response.reasoning_summary_text.delta"
        else:
            payload = {"item_id": f"msg_{item}", "output_index": item, "content_index": 0}
            name = "response.output_text.delta"
        yield seq.event(chunk.at, name, {**payload, "delta": text}, text=True)
    yield from fault_ending(plan, emitted, malformed=_malformed, error=seq.error)
    if plan.fault is not None:
        return
    if item_type:
        yield from _close_item(seq, plan.end_at, item, item_type)
    if behaviour.omit_done:
        return
    usage = None
    if behaviour.usage != "never":
        usage = {
            "input_tokens": plan.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": emitted,
            "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
            "total_tokens": plan.prompt_tokens + emitted,
        }
    finish = plan.finish_reason
    if finish == "stop":
        final = {**response, "status": "completed", "usage": usage}
        yield seq.event(plan.end_at, "response.completed", {"response": final})
    else:
        reason = "max_output_tokens" if finish == "length" else finish
        details = None if reason is None else {"reason": reason}
        final = {**response, "status": "incomplete", "incomplete_details": details, "usage": usage}
        yield seq.event(plan.end_at, "response.incomplete", {"response": final})
    if behaviour.keep_open_after_done:
        yield SimEvent(plan.end_at, "hold")


def _open_item(seq: _Sequence, at: float, index: int, item_type: str) -> Iterator[SimEvent]:
    if item_type == "reasoning":
        item = {"id": f"rs_{index}", "type": "reasoning", "summary": []}
        yield seq.event(at, "response.output_item.added", {"output_index": index, "item": item})
        part = {"type": "summary_text", "text": ""}
        yield seq.event(
            at,
            "response.reasoning_summary_part.added",
            {"item_id": f"rs_{index}", "output_index": index, "summary_index": 0, "part": part},
        )
        return
    message: dict[str, Any] = {
        "id": f"msg_{index}",
        "type": "message",
        "role": "assistant",
        "content": [],
    }
    yield seq.event(at, "response.output_item.added", {"output_index": index, "item": message})
    text_part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": []}
    yield seq.event(
        at,
        "response.content_part.added",
        {"item_id": f"msg_{index}", "output_index": index, "content_index": 0, "part": text_part},
    )


def _close_item(seq: _Sequence, at: float, index: int, item_type: str) -> Iterator[SimEvent]:
    if item_type == "reasoning":
        ids = {"item_id": f"rs_{index}", "output_index": index, "summary_index": 0}
        yield seq.event(at, "response.reasoning_summary_text.done", {**ids, "text": ""})
    else:
        ids = {"item_id": f"msg_{index}", "output_index": index, "content_index": 0}
        yield seq.event(at, "response.output_text.done", {**ids, "text": ""})
        yield seq.event(at, "response.content_part.done", ids)
    item = {"id": ids["item_id"], "type": item_type}
    yield seq.event(at, "response.output_item.done", {"output_index": index, "item": item})


async def _handle_responses(request: web.Request) -> web.StreamResponse:
    got = await receive(request)
    state, body = got.state, got.body
    try:
        _check_auth(request, state)
        if body is None:
            raise _RequestError(400, "We could not parse the JSON body of your request.", None)
        sim_request = _parse(body)
        base = state.config.models.get(sim_request.model)
        if base is None:
            msg = f"The model `{sim_request.model}` does not exist."
            raise _RequestError(404, msg, "model_not_found", "model")
        behaviour = _request_behaviour(base, request.headers)
    except _RequestError as exc:
        return exc.response()
    if behaviour.status != 200:
        await got.headers_delay(behaviour)
        msg = f"Simulated error (HTTP {behaviour.status})."
        return _error_response(behaviour.status, msg, behaviour.status)
    events = iter_responses_events(
        behaviour,
        sim_request,
        response_id=f"resp_{uuid.uuid4().hex}",
        rng=random.Random(behaviour.seed),
    )
    ctx = got.stream_context(behaviour)
    return await write_stream(ctx, events, new_framer(behaviour, None))


def add_routes(app: web.Application) -> None:
    """Serve the Responses API on the simulator app."""
    app.router.add_post(PATH, _handle_responses)
