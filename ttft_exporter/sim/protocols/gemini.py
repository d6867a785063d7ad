"""Simulator mode: Gemini API and Vertex AI `:streamGenerateContent` (llm-streaming.md
§A.6), with the OpenAI mode's models, timing and fault knobs and request log.

Routes: `POST /v1beta/models/{model}:streamGenerateContent` (Gemini API, key in
`x-goog-api-key`) and `POST /v1/projects/{p}/locations/{l}/publishers/google/models/
{model}:streamGenerateContent` (Vertex AI, `Authorization: Bearer <key>`).

Wire quirks reproduced: `alt=sse` selects SSE, anything else streams one JSON array
(Content-Type application/json) as Google does; no `[DONE]`, the stream ends when the
connection closes; the first event (`role_chunk`) and the finish event carry an empty
text part; thinking is streamed as parts with `thought: true` only when the request
asks for `thinkingConfig.includeThoughts` (hidden otherwise, its time still passing);
`thoughtsTokenCount` is left out when zero; errors are `{"error": {code, message,
status}}`, as a response body and inside a 200 stream.

How the shared knobs read here: `usage: auto` puts usageMetadata on the finish event,
`always` sends it as an event of its own after it, `never` omits it;
`continuous_usage` adds running usageMetadata to every token event; `finish_reason`
`stop`/`length` are sent as `STOP`/`MAX_TOKENS`, any other string as is, None sends
no finishReason. `burst` is not supported in this mode.
"""

from __future__ import annotations

import json
import random
import secrets
import uuid
from collections.abc import Iterator, Mapping

from aiohttp import web

# The OpenAI mode's machinery: the plan, keep-alives, the SSE writer, the request log
# and the fault helpers are shared by every mode, so a knob means the same everywhere.
from ttft_exporter.sim.llm import (
    GenerationPlan,
    SimRequest,
    _request_behaviour,
    _RequestError,
    _with_keepalives,
    plan_generation,
    receive,
)
from ttft_exporter.sim.llm_state import LLMSimState, ModelBehaviour, SimEvent
from ttft_exporter.sim.protocols.mode import fault_ending
from ttft_exporter.sim.stream_writer import SSEFramer, sleep_until, write_stream

__all__ = ["add_routes", "gemini_events", "parse_gemini_request"]

_ACTION = ":streamGenerateContent"
_MALFORMED = '{"candidates": ['
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS"}


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _error_body(status: int, message: str) -> dict[str, object]:
    return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}


def _error(status: int, message: str) -> web.Response:
    return web.json_response(_error_body(status, message), status=status, dumps=_dumps)


def parse_gemini_request(model: str, body: object) -> tuple[SimRequest, bool]:
    """The request as the shared plan reads it, and whether thoughts are to be streamed."""
    if not isinstance(body, dict):
        raise _RequestError(400, "Invalid JSON payload received.", None)
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _RequestError(
            400, "* GenerateContentRequest.contents: contents is not specified", None
        )
    words = 0
    for content in contents:
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                words += len(part["text"].split())
    config = body.get("generationConfig") or {}
    if not isinstance(config, dict):
        raise _RequestError(400, "generationConfig must be an object.", None)
    max_tokens = config.get("maxOutputTokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise _RequestError(400, "maxOutputTokens must be a positive integer.", None)
    thinking = config.get("thinkingConfig")
    thoughts = isinstance(thinking, dict) and thinking.get("includeThoughts") is True
    # api="chat": the shared plan generates reasoning tokens only for chat requests.
    request = SimRequest(api="chat", model=model, max_tokens=max_tokens, prompt_words=words)
    return request, thoughts


def _usage(plan: GenerationPlan, answer: int, thoughts: int) -> dict[str, int]:
    meta = {
        "promptTokenCount": plan.prompt_tokens,
        "candidatesTokenCount": answer,
        "totalTokenCount": plan.prompt_tokens + answer + thoughts,
    }
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    return meta


def gemini_events(
    behaviour: ModelBehaviour,
    request: SimRequest,
    *,
    include_thoughts: bool,
    response_id: str,
    rng: random.Random,
) -> Iterator[SimEvent]:
    """The stream's events in time order, keep-alive comments included; pure apart
    from `rng`."""
    plan = plan_generation(behaviour, request, rng)
    events = _render(behaviour, request, plan, include_thoughts, response_id)
    return _with_keepalives(events, behaviour.headers_delay, behaviour.keepalive_interval)


def _malformed(at: float) -> SimEvent:
    return SimEvent(at, "data", _MALFORMED)


def _stream_error(at: float, emitted: int) -> SimEvent:
    message = f"Simulated server error after {emitted} tokens."
    return SimEvent(at, "data", _dumps(_error_body(500, message)))


def _render(
    behaviour: ModelBehaviour,
    request: SimRequest,
    plan: GenerationPlan,
    include_thoughts: bool,
    response_id: str,
) -> Iterator[SimEvent]:
    head = {"modelVersion": request.model, "responseId": response_id}

    def event(parts: list[dict[str, object]], **candidate: object) -> dict[str, object]:
        content = {"role": "model", "parts": parts}
        return {"candidates": [{"content": content, **candidate, "index": 0}], **head}

    if behaviour.role_chunk:
        yield SimEvent(behaviour.headers_delay, "data", _dumps(event([{"text": ""}])))
    emitted = answer = thoughts = 0
    for chunk in plan.chunks:
        if plan.malformed_after == emitted:
            yield _malformed(chunk.at)
        emitted += chunk.tokens
        text = (behaviour.token_text + " ") * chunk.tokens
        if chunk.field == "reasoning":
            thoughts += chunk.tokens
            if not include_thoughts:
                continue  # thinking hidden: the time passes, nothing is sent
            obj = event([{"text": text, "thought": True}])
        else:
            answer += chunk.tokens
            obj = event([{"text": text}])
        if behaviour.continuous_usage:
            obj["usageMetadata"] = _usage(plan, answer, thoughts)
        yield SimEvent(chunk.at, "data", _dumps(obj), text=True)
    yield from fault_ending(plan, emitted, malformed=_malformed, error=_stream_error)
    if plan.fault is not None:
        return
    usage = _usage(plan, plan.answer_tokens, plan.reasoning_tokens)
    if plan.finish_reason is not None:
        finish = _FINISH.get(plan.finish_reason, plan.finish_reason)
        obj = event([{"text": ""}], finishReason=finish)
        if behaviour.usage == "auto":
            obj["usageMetadata"] = usage
        yield SimEvent(plan.end_at, "data", _dumps(obj))
    if behaviour.usage == "always" or (behaviour.usage == "auto" and plan.finish_reason is None):
        yield SimEvent(plan.end_at, "data", _dumps({"usageMetadata": usage, **head}))
    if behaviour.keep_open_after_done:
        yield SimEvent(plan.end_at, "hold")


def _check_auth(headers: Mapping[str, str], state: LLMSimState, *, vertex: bool) -> None:
    key = state.config.api_key
    if key is None:
        return
    if vertex:
        given, expected = headers.get("Authorization"), f"Bearer {key}"
        missing = (401, "Request is missing required authentication credential.")
        wrong = (401, "Request had invalid authentication credentials.")
    else:
        given, expected = headers.get("x-goog-api-key"), key
        missing = (403, "Method doesn't allow unregistered callers.")
        wrong = (400, "API key not valid. Please pass a valid API key.")
    if given is None:
        raise _RequestError(*missing, None)
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise _RequestError(*wrong, None)


async def _handle_gemini(request: web.Request) -> web.StreamResponse:
    return await _handle(request, vertex=False)


async def _handle_vertex(request: web.Request) -> web.StreamResponse:
    return await _handle(request, vertex=True)


async def _handle(request: web.Request, *, vertex: bool) -> web.StreamResponse:
    got = await receive(request)
    state, body = got.state, got.body
    model, _, action = request.match_info["action"].partition(":")
    if f":{action}" != _ACTION:
        return _error(404, f"Method {action!r} not found (this simulator streams only).")
    try:
        _check_auth(request.headers, state, vertex=vertex)
        sim_request, include_thoughts = parse_gemini_request(model, body)
        base = state.config.models.get(model)
        if base is None:
            raise _RequestError(404, f"models/{model} is not found.", None)
        behaviour = _request_behaviour(base, request.headers)
    except _RequestError as exc:
        return _error(exc.status, exc.message)
    if behaviour.status != 200:
        await got.headers_delay(behaviour)
        return _error(behaviour.status, f"Simulated error (HTTP {behaviour.status}).")
    events = gemini_events(
        behaviour,
        sim_request,
        include_thoughts=include_thoughts,
        response_id=uuid.uuid4().hex[:22],
        rng=random.Random(behaviour.seed),
    )
    if request.query.get("alt") == "sse":
        ctx = got.stream_context(behaviour)
        writer = SSEFramer.for_model(behaviour)
        # `burst` is not supported in this mode (see above).
        return await write_stream(ctx, events, writer, honour_burst=False)
    response = web.StreamResponse(
        headers={"Content-Type": "application/json", "Cache-Control": "no-cache"}
    )
    await got.headers_delay(behaviour)
    try:
        await response.prepare(request)
        await _write_array(response, events, got.arrival)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away mid-stream: its business, not a server error
    return response


async def _write_array(
    response: web.StreamResponse, events: Iterator[SimEvent], arrival: float
) -> None:
    """Without alt=sse: one JSON array, an element per event, streamed as generated."""
    separator = b"["
    for event in events:
        if event.kind != "data":
            break
        await sleep_until(arrival + event.at)
        await response.write(separator + event.data.encode())
        separator = b",\r\n"
    await response.write(b"]" if separator != b"[" else b"[]")


def add_routes(app: web.Application) -> None:
    """The Gemini API and Vertex AI routes."""
    app.router.add_post("/v1beta/models/{action}", _handle_gemini)
    app.router.add_post(
        "/v1/projects/{project}/locations/{location}/publishers/google/models/{action}",
        _handle_vertex,
    )
