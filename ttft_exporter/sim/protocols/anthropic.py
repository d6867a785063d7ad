"""Simulator mode: Anthropic Messages streaming (`POST /v1/messages`, llm-streaming.md
§A.3), on the same models, timing plan, fault knobs and request log as the OpenAI mode.

The wire format as Anthropic writes it: named SSE events (`event:` then `data:` whose
`type` repeats the name); `message_start` with the input tokens (and a placeholder
output count of 1); a `thinking` block when the model reasons, then a `text` block;
`ping` right after the first block starts and as the keep-alive; `message_delta` with
the stop reason and the cumulative output tokens; `message_stop`. Faults: `error_after`
sends `event: error` (overloaded_error) inside the 200 stream, `malformed_after` a cut
JSON event, `stall_after`/`drop_after`/`truncate_after` as in the OpenAI mode,
`omit_done` leaves out `message_stop`, `finish_reason: null` sends a stop reason of
null. Auth: `x-api-key`, and `anthropic-version` is required, as the API does.
"""

from __future__ import annotations

import random
import secrets
import uuid
from collections.abc import Iterator

from aiohttp import web

from ttft_exporter.sim.llm import (
    GenerationPlan,
    SimRequest,
    _dumps,
    _request_behaviour,
    _RequestError,
    _with_keepalives,
    plan_generation,
    receive,
)
from ttft_exporter.sim.llm_state import LLMSimState, ModelBehaviour, SimEvent
from ttft_exporter.sim.protocols.mode import fault_ending
from ttft_exporter.sim.protocols.named_sse import NamedEvent, new_framer
from ttft_exporter.sim.stream_writer import write_stream

__all__ = ["PATH", "add_routes", "iter_anthropic_events"]

PATH = "/v1/messages"
_PING = '{"type":"ping"}'
_MALFORMED = '{"type":"content_block_delta","index":0,"delta":{'
# The API's spellings of the plan's generic endings.
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _event(at: float, name: str, payload: dict[str, object], *, text: bool = False) -> NamedEvent:
    return NamedEvent(at, "data", _dumps({"type": name, **payload}), text=text, name=name)


def _malformed(at: float) -> NamedEvent:
    return NamedEvent(at, "data", _MALFORMED, name="content_block_delta")


def _stream_error(at: float, _emitted: int) -> NamedEvent:
    return _event(at, "error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})


def _error_body(status: int, message: str) -> web.Response:
    error_type = _ERROR_TYPES.get(status, "api_error")
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return web.json_response(body, status=status, dumps=_dumps)


def _parse(body: object) -> SimRequest:
    """Validate a Messages body as the API does: model, messages and max_tokens."""
    if not isinstance(body, dict):
        raise _RequestError(400, "The request body must be a JSON object.", None)
    model = body.get("model")
    if not isinstance(model, str):
        raise _RequestError(400, "model: Field required", None)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _RequestError(400, "messages: Field required", None)
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _RequestError(400, "max_tokens: Field required (a positive integer)", None)
    stream = body.get("stream", False)
    if stream is not True:
        raise _RequestError(400, "this simulator mode serves streams only", None)
    words = sum(
        len(message["content"].split())
        for message in messages
        if isinstance(message, dict) and isinstance(message.get("content"), str)
    )
    # api="chat": the plan then generates reasoning tokens (a thinking block) too.
    return SimRequest(api="chat", model=model, max_tokens=max_tokens, prompt_words=words)


def _check_auth(request: web.Request, state: LLMSimState) -> None:
    if "anthropic-version" not in request.headers:
        raise _RequestError(400, "anthropic-version: header is required", None)
    key = state.config.api_key
    if key is None:
        return
    given = request.headers.get("x-api-key", "")
    if not secrets.compare_digest(given.encode(), key.encode()):
        raise _RequestError(401, "invalid x-api-key", None)


def iter_anthropic_events(
    behaviour: ModelBehaviour, request: SimRequest, *, message_id: str, rng: random.Random
) -> Iterator[SimEvent]:
    """The stream's events in time order, keep-alive pings included. Pure apart from
    `rng`; never ends when the stream stalls with keep-alives on."""
    plan = plan_generation(behaviour, request, rng)
    events = _render(behaviour, request, plan, message_id)
    return _with_keepalives(events, behaviour.headers_delay, behaviour.keepalive_interval)


def _render(
    behaviour: ModelBehaviour, request: SimRequest, plan: GenerationPlan, message_id: str
) -> Iterator[SimEvent]:
    usage = behaviour.usage != "never"
    start = behaviour.headers_delay
    message: dict[str, object] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if usage:
        message["usage"] = {
            "input_tokens": plan.prompt_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
        }
    yield _event(start, "message_start", {"message": message})
    block = -1
    block_type = ""
    emitted = 0
    for chunk in plan.chunks:
        wanted = "thinking" if chunk.field == "reasoning" else "text"
        if wanted != block_type:
            if block_type:
                yield from _close_block(chunk.at, block, block_type)
            block += 1
            block_type = wanted
            opening = {"type": wanted, wanted: ""}
            at = start if block == 0 else chunk.at
            yield _event(at, "content_block_start", {"index": block, "content_block": opening})
            if block == 0:
                # Anthropic sends a ping right after the first block starts.
                yield _event(at, "ping", {})
        if plan.malformed_after == emitted:
            yield _malformed(chunk.at)
        emitted += chunk.tokens
        text = (behaviour.token_text + " ") * chunk.tokens
        delta = (
            {"type": "thinking_delta", "thinking": text}
            if wanted == "thinking"
            else {"type": "text_delta", "text": text}
        )
        yield _event(chunk.at, "content_block_delta", {"index": block, "delta": delta}, text=True)
    yield from fault_ending(plan, emitted, malformed=_malformed, error=_stream_error)
    if plan.fault is not None:
        return
    if block_type:
        yield from _close_block(plan.end_at, block, block_type)
    finish = plan.finish_reason
    payload: dict[str, object] = {
        "delta": {
            "stop_reason": None if finish is None else _STOP_REASONS.get(finish, finish),
            "stop_sequence": None,
        }
    }
    if usage:
        payload["usage"] = {"output_tokens": emitted}
    yield _event(plan.end_at, "message_delta", payload)
    if behaviour.omit_done:
        return
    yield _event(plan.end_at, "message_stop", {})
    if behaviour.keep_open_after_done:
        yield SimEvent(plan.end_at, "hold")


def _close_block(at: float, index: int, block_type: str) -> Iterator[SimEvent]:
    if block_type == "thinking":
        delta = {"type": "signature_delta", "signature": "c2ltdWxhdGVk"}
        yield _event(at, "content_block_delta", {"index": index, "delta": delta})
    yield _event(at, "content_block_stop", {"index": index})


async def _handle_messages(request: web.Request) -> web.StreamResponse:
    got = await receive(request)
    state, body = got.state, got.body
    try:
        _check_auth(request, state)
        if body is None:
            raise _RequestError(400, "The request body is not valid JSON.", None)
        sim_request = _parse(body)
        base = state.config.models.get(sim_request.model)
        if base is None:
            raise _RequestError(404, f"model: {sim_request.model}", None)
        behaviour = _request_behaviour(base, request.headers)
    except _RequestError as exc:
        return _error_body(exc.status, exc.message)
    if behaviour.status != 200:
        await got.headers_delay(behaviour)
        return _error_body(behaviour.status, f"Simulated error (HTTP {behaviour.status}).")
    events = iter_anthropic_events(
        behaviour,
        sim_request,
        message_id=f"msg_{uuid.uuid4().hex[:24]}",
        rng=random.Random(behaviour.seed),
    )
    ctx = got.stream_context(behaviour)
    return await write_stream(ctx, events, new_framer(behaviour, _PING))


def add_routes(app: web.Application) -> None:
    """Serve the Messages API on the simulator app."""
    app.router.add_post(PATH, _handle_messages)
