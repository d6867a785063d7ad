"""OpenAI-compatible streaming LLM simulator with timing knobs and fault injection.

Serves Chat Completions and legacy Completions over SSE (llm-streaming.md §A.1) for the
``demo`` command, the exporter's tests and the benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import secrets
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from pydantic import ValidationError

# The data every mode shares and the one stream-writing loop, re-exported here (in
# __all__) for the callers that know the simulator as this module.
from ttft_exporter.sim.llm_state import (
    DEFAULT_MODEL,
    LLM_SIM_STATE,
    EventKind,
    LLMSimConfig,
    LLMSimState,
    ModelBehaviour,
    RecordedRequest,
    SimEvent,
)
from ttft_exporter.sim.stream_writer import (
    SSEFramer,
    StreamContext,
    abort,
    hold,
    sleep_until,
    write_stream,
)

__all__ = [
    "DEFAULT_MODEL",
    "LLM_SIM_STATE",
    "EventKind",
    "GenerationPlan",
    "LLMSimConfig",
    "LLMSimState",
    "ModelBehaviour",
    "Received",
    "RecordedRequest",
    "SSEFramer",
    "SimEvent",
    "SimRequest",
    "create_llm_app",
    "iter_events",
    "parse_request",
    "plan_generation",
    "receive",
    "run_llm_sim",
]

API = Literal["chat", "completions"]
Fault = Literal["error", "stall", "drop", "truncate"]
TokenField = Literal["reasoning", "content"]

_DONE = "[DONE]"
_MALFORMED = '{"choices": ['
_KEEPALIVE = "keep-alive"
_OWNER = "ttft-exporter-sim"
_BACKLOG = 1024
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


@dataclass(frozen=True, slots=True)
class SimRequest:
    """The parts of a generation request that shape the simulated answer."""

    api: API
    model: str
    stream: bool = True
    max_tokens: int | None = None
    include_usage: bool = False
    continuous_usage_stats: bool = False
    prompt_words: int = 0
    ignore_eos: bool = False
    min_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class _TokenChunk:
    at: float
    field: TokenField
    tokens: int


@dataclass(frozen=True, slots=True)
class GenerationPlan:
    """When each token chunk is due and how the generation ends."""

    chunks: tuple[_TokenChunk, ...]
    end_at: float
    fault: Fault | None
    malformed_after: int | None
    finish_reason: str | None
    reasoning_tokens: int
    answer_tokens: int
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        """Reasoning plus answer tokens the request generates when nothing fails."""
        return self.reasoning_tokens + self.answer_tokens


class _RequestError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | int | None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param

    def response(self) -> web.Response:
        return _error_response(
            self.status,
            self.message,
            self.code,
            self.param,
            error_type="invalid_request_error",
        )


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _error_response(
    status: int,
    message: str,
    code: str | int | None,
    param: str | None = None,
    *,
    error_type: str | None = None,
) -> web.Response:
    """Return an OpenAI-style error body; the type follows the status unless given."""
    if error_type is None:
        default = "server_error" if status >= 500 else "api_error"
        error_type = _ERROR_TYPES.get(status, default)
    error = {"message": message, "type": error_type, "param": param, "code": code}
    return web.json_response({"error": error}, status=status, dumps=_dumps)


# Request parsing


def parse_request(api: API, body: object) -> SimRequest:
    """Validate a Chat Completions or Completions body; raise a 400 error if invalid."""
    if not isinstance(body, dict):
        raise _RequestError(400, "The request body must be a JSON object.", None)
    model = body.get("model")
    if not isinstance(model, str):
        raise _RequestError(400, "You must provide a model parameter.", None, "model")
    if api == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list):
            msg = "'messages' is a required property and must be an array."
            raise _RequestError(400, msg, None, "messages")
        words = sum(_count_words(_message_text(message)) for message in messages)
        max_tokens = _opt_int(body, "max_completion_tokens")
        if max_tokens is None:
            max_tokens = _opt_int(body, "max_tokens")
    else:
        words = _count_prompt(body.get("prompt"))
        max_tokens = _opt_int(body, "max_tokens")
    options = body.get("stream_options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise _RequestError(400, "stream_options must be an object.", None, "stream_options")
    return SimRequest(
        api=api,
        model=model,
        stream=_opt_bool(body, "stream"),
        max_tokens=max_tokens,
        include_usage=_opt_bool(options, "include_usage"),
        continuous_usage_stats=_opt_bool(options, "continuous_usage_stats"),
        prompt_words=words,
        ignore_eos=_opt_bool(body, "ignore_eos"),
        min_tokens=_opt_int(body, "min_tokens"),
    )


def _opt_int(body: Mapping[str, object], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _RequestError(400, f"{key} must be a positive integer.", None, key)
    return value


def _opt_bool(body: Mapping[str, object], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _RequestError(400, f"{key} must be a boolean.", None, key)
    return value


def _count_words(text: str) -> int:
    return len(text.split())


def _message_text(message: object) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _count_prompt(prompt: object) -> int:
    if isinstance(prompt, str):
        return _count_words(prompt)
    if isinstance(prompt, list):
        # A prompt may also be a token array or a batch of strings/token arrays.
        return sum(_count_prompt(item) if not isinstance(item, int) else 1 for item in prompt)
    return 0


def _header_overrides(headers: Mapping[str, str]) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for name, raw in headers.items():
        if not name.lower().startswith("x-sim-"):
            continue
        knob = name[len("x-sim-") :].lower().replace("-", "_")
        try:
            value: object = json.loads(raw)
        except ValueError:
            # Lets string knobs be written bare: X-Sim-Usage: always
            value = raw
        overrides[knob] = value
    return overrides


def _request_behaviour(base: ModelBehaviour, headers: Mapping[str, str]) -> ModelBehaviour:
    overrides = _header_overrides(headers)
    if not overrides:
        return base
    try:
        return ModelBehaviour.model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        msg = f"Invalid X-Sim-* override: {exc}"
        raise _RequestError(400, msg, "invalid_sim_override") from exc


# Pure stream generation


def plan_generation(
    behaviour: ModelBehaviour, request: SimRequest, rng: random.Random
) -> GenerationPlan:
    """Decide the token chunks, their deadlines and the ending of one generation."""
    reasoning = behaviour.reasoning_tokens if request.api == "chat" else 0
    answer = behaviour.tokens
    if request.ignore_eos and request.max_tokens is not None:
        answer = request.max_tokens
    elif request.min_tokens is not None:
        answer = max(answer, request.min_tokens)
    finish_reason: str | None = "stop"
    cap = request.max_tokens
    if cap is not None and reasoning + answer > cap:
        finish_reason = "length"
        reasoning = min(reasoning, cap)
        answer = cap - reasoning
    total = reasoning + answer
    fault, fault_after = _first_fault(behaviour, total)
    malformed = behaviour.malformed_after
    if malformed is not None and malformed > (total if fault_after is None else fault_after):
        malformed = None
    sizes = _chunk_sizes(reasoning, answer, behaviour.tokens_per_chunk, (fault_after, malformed))
    times = _chunk_times(behaviour, len(sizes) + 1, rng)
    chunks: list[_TokenChunk] = []
    emitted = 0
    for index, (field, count) in enumerate(sizes):
        if fault_after is not None and emitted >= fault_after:
            break
        chunks.append(_TokenChunk(times[index], field, count))
        emitted += count
    # Finishing goes right after the last chunk; a fault takes the next chunk's slot.
    end_at = chunks[-1].at if chunks and fault is None else times[len(chunks)]
    return GenerationPlan(
        chunks=tuple(chunks),
        end_at=end_at,
        fault=fault,
        malformed_after=malformed,
        finish_reason=finish_reason
        if behaviour.finish_reason == "auto"
        else behaviour.finish_reason,
        reasoning_tokens=reasoning,
        answer_tokens=answer,
        prompt_tokens=(
            request.prompt_words if behaviour.prompt_tokens is None else behaviour.prompt_tokens
        ),
    )


def _first_fault(behaviour: ModelBehaviour, total: int) -> tuple[Fault | None, int | None]:
    knobs: tuple[tuple[int | None, Fault], ...] = (
        (behaviour.error_after, "error"),
        (behaviour.stall_after, "stall"),
        (behaviour.drop_after, "drop"),
        (behaviour.truncate_after, "truncate"),
    )
    candidates = [(after, fault) for after, fault in knobs if after is not None and after <= total]
    if not candidates:
        return None, None
    # min() keeps the first of equal counts: error beats stall beats drop beats truncate.
    after, fault = min(candidates, key=lambda candidate: candidate[0])
    return fault, after


def _chunk_sizes(
    reasoning: int, answer: int, per_chunk: int, cuts: tuple[int | None, ...]
) -> list[tuple[TokenField, int]]:
    """Group tokens into chunks; no chunk straddles a fault's token count."""
    sizes: list[tuple[TokenField, int]] = []
    emitted = 0
    phases: tuple[tuple[TokenField, int], ...] = (
        ("reasoning", reasoning),
        ("content", answer),
    )
    for field, count in phases:
        left = count
        while left:
            size = min(per_chunk, left)
            for cut in cuts:
                if cut is not None and emitted < cut < emitted + size:
                    size = cut - emitted
            sizes.append((field, size))
            emitted += size
            left -= size
    return sizes


def _chunk_times(behaviour: ModelBehaviour, count: int, rng: random.Random) -> list[float]:
    """Offsets from arrival: ttft, then one itl per chunk, each gap jittered."""
    times: list[float] = []
    at = 0.0
    for index in range(count):
        gap = behaviour.ttft if index == 0 else behaviour.itl
        if behaviour.jitter:
            gap = max(0.0, gap + rng.uniform(-behaviour.jitter, behaviour.jitter))
        at += gap
        times.append(max(at, behaviour.headers_delay))
    return times


class _ChunkEncoder:
    """Builds the JSON payloads of one stream in the OpenAI chunk shapes."""

    def __init__(
        self,
        request: SimRequest,
        plan: GenerationPlan,
        *,
        completion_id: str,
        created: int,
        usage: bool,
        continuous: bool,
        reasoning_field: str,
    ) -> None:
        self._request = request
        self._plan = plan
        self._usage = usage
        self._continuous = continuous
        self._reasoning_field = reasoning_field
        self._object = "chat.completion.chunk" if request.api == "chat" else "text_completion"
        self._head = {"id": completion_id, "object": self._object, "created": created}

    def role(self) -> str:
        return self._chunk({"role": "assistant", "content": ""}, None, 0, 0)

    def token(self, field: TokenField, text: str, reasoning: int, emitted: int) -> str:
        if self._request.api == "completions":
            return self._chunk(text, None, reasoning, emitted)
        name = self._reasoning_field if field == "reasoning" else "content"
        return self._chunk({name: text}, None, reasoning, emitted)

    def finish(self, reasoning: int, emitted: int, timings: dict[str, object] | None = None) -> str:
        delta: dict[str, str] | str = {} if self._request.api == "chat" else ""
        return self._chunk(delta, self._plan.finish_reason, reasoning, emitted, timings)

    def usage(self, timings: dict[str, object] | None = None) -> str:
        plan = self._plan
        chunk: dict[str, object] = {
            **self._head,
            "model": self._request.model,
            "choices": [],
            "usage": _usage(plan.prompt_tokens, plan.completion_tokens, plan.reasoning_tokens),
        }
        if timings is not None:
            chunk["timings"] = timings
        return _dumps(chunk)

    def _chunk(
        self,
        delta: dict[str, str] | str,
        finish: str | None,
        reasoning: int,
        emitted: int,
        timings: dict[str, object] | None = None,
    ) -> str:
        choice: dict[str, object] = {"index": 0}
        if isinstance(delta, str):
            choice["text"] = delta
        else:
            choice["delta"] = delta
        choice["logprobs"] = None
        choice["finish_reason"] = finish
        chunk: dict[str, object] = {
            **self._head,
            "model": self._request.model,
            "choices": [choice],
        }
        if self._usage:
            chunk["usage"] = (
                _usage(self._plan.prompt_tokens, emitted, reasoning) if self._continuous else None
            )
        if timings is not None:
            chunk["timings"] = timings
        return _dumps(chunk)


def _usage(prompt: int, completion: int, reasoning: int) -> dict[str, object]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def _llamacpp_timings(behaviour: ModelBehaviour, plan: GenerationPlan) -> dict[str, object]:
    """llama.cpp's `timings` of a generation that went to its end, from the plan."""
    first_at = plan.chunks[0].at if plan.chunks else plan.end_at
    prompt_ms = max(0.0, first_at - behaviour.headers_delay) * 1000
    predicted_ms = max(0.0, plan.end_at - first_at) * 1000
    prompt_n, predicted_n = plan.prompt_tokens, plan.completion_tokens
    return {
        "prompt_n": prompt_n,
        "prompt_ms": prompt_ms,
        "prompt_per_token_ms": prompt_ms / prompt_n if prompt_n else 0.0,
        "prompt_per_second": prompt_n / prompt_ms * 1000 if prompt_ms else 0.0,
        "predicted_n": predicted_n,
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": predicted_ms / predicted_n if predicted_n else 0.0,
        "predicted_per_second": predicted_n / predicted_ms * 1000 if predicted_ms else 0.0,
    }


def _usage_enabled(behaviour: ModelBehaviour, request: SimRequest) -> bool:
    return behaviour.usage == "always" or (behaviour.usage == "auto" and request.include_usage)


def iter_events(
    behaviour: ModelBehaviour,
    request: SimRequest,
    *,
    completion_id: str,
    created: int,
    rng: random.Random,
) -> Iterator[SimEvent]:
    """Yield the stream's events in time order, keep-alive comments included.

    Pure apart from ``rng``; the iterator never ends when the stream stalls with
    keep-alives on (the HTTP layer keeps pinging while the engine is stuck).
    """
    plan = plan_generation(behaviour, request, rng)
    usage = _usage_enabled(behaviour, request)
    encoder = _ChunkEncoder(
        request,
        plan,
        completion_id=completion_id,
        created=created,
        usage=usage,
        continuous=usage and behaviour.continuous_usage and request.continuous_usage_stats,
        reasoning_field=behaviour.reasoning_field,
    )
    events = _render(behaviour, request, plan, encoder)
    return _with_keepalives(events, behaviour.headers_delay, behaviour.keepalive_interval)


def _render(
    behaviour: ModelBehaviour,
    request: SimRequest,
    plan: GenerationPlan,
    encoder: _ChunkEncoder,
) -> Iterator[SimEvent]:
    if request.api == "chat" and behaviour.role_chunk:
        yield SimEvent(behaviour.headers_delay, "data", encoder.role())
    emitted = reasoning = 0
    for chunk in plan.chunks:
        if plan.malformed_after == emitted:
            yield SimEvent(chunk.at, "data", _MALFORMED)
        emitted += chunk.tokens
        if chunk.field == "reasoning":
            reasoning += chunk.tokens
        text = (behaviour.token_text + " ") * chunk.tokens
        yield SimEvent(
            chunk.at,
            "data",
            encoder.token(chunk.field, text, reasoning, emitted),
            text=True,
        )
    if plan.malformed_after == emitted:
        yield SimEvent(plan.end_at, "data", _MALFORMED)
    if plan.fault in ("stall", "drop"):
        yield SimEvent(plan.end_at, plan.fault)
        return
    if plan.fault == "truncate":
        # A clean end of the response (the last HTTP chunk), mid-generation.
        return
    if plan.fault == "error":
        message = f"Simulated server error after {emitted} tokens."
        error = {"error": {"message": message, "type": "server_error", "code": 500}}
        yield SimEvent(plan.end_at, "data", _dumps(error))
    else:
        usage = _usage_enabled(behaviour, request)
        # llama.cpp puts `timings` on the last chunk: the usage chunk when there is one.
        timings = _llamacpp_timings(behaviour, plan) if behaviour.llamacpp_timings else None
        if plan.finish_reason is not None:
            last = None if usage else timings
            yield SimEvent(plan.end_at, "data", encoder.finish(reasoning, emitted, last))
        if usage:
            # After the finish chunk, with `choices: []`, as OpenAI and vLLM send it.
            yield SimEvent(plan.end_at, "data", encoder.usage(timings))
    if behaviour.omit_done:
        return
    yield SimEvent(plan.end_at, "data", _DONE)
    if behaviour.keep_open_after_done:
        yield SimEvent(plan.end_at, "hold")


def _with_keepalives(
    events: Iterator[SimEvent], start: float, interval: float | None
) -> Iterator[SimEvent]:
    """Insert a keep-alive comment whenever ``interval`` passes without an event."""
    last = start
    for event in events:
        if interval is not None:
            while event.at > last + interval:
                last += interval
                yield SimEvent(last, "comment", _KEEPALIVE)
            if event.kind == "stall":
                while True:
                    last += interval
                    yield SimEvent(last, "comment", _KEEPALIVE)
        yield event
        last = max(last, event.at)
        if event.data == _DONE:
            interval = None


# HTTP handlers


@dataclass(frozen=True, slots=True)
class Received:
    """A generation request as every mode starts answering it: logged in the request
    log (`record`), its body parsed if it is JSON (None otherwise), and its arrival
    (loop time), from which every deadline of the answer counts."""

    request: web.Request
    state: LLMSimState
    record: RecordedRequest
    body: object
    arrival: float

    async def headers_delay(self, behaviour: ModelBehaviour) -> None:
        """Wait until the model's `headers_delay` passed since the arrival."""
        await sleep_until(self.arrival + behaviour.headers_delay)

    def stream_context(self, behaviour: ModelBehaviour) -> StreamContext:
        """What the stream writer needs to answer this request with `behaviour`."""
        return StreamContext(self.request, self.state, self.record, behaviour, self.arrival)


async def receive(request: web.Request) -> Received:
    """Stamp the arrival of a generation request, log it and parse its body."""
    arrival = asyncio.get_running_loop().time()
    state = request.app[LLM_SIM_STATE]
    record, body = await _record(request, state)
    return Received(request, state, record, body, arrival)


async def _record(request: web.Request, state: LLMSimState) -> tuple[RecordedRequest, object]:
    arrival = time.perf_counter()
    raw = await request.read() if request.can_read_body else b""
    body: object = None
    if raw:
        with contextlib.suppress(ValueError):
            body = json.loads(raw)
    record = RecordedRequest(request.method, request.path, dict(request.headers), body, arrival)
    state.requests.append(record)
    return record, body


def _check_auth(request: web.Request, state: LLMSimState) -> None:
    key = state.config.api_key
    if key is None:
        return
    given = request.headers.get("Authorization")
    if given is None:
        msg = "You didn't provide an API key. Use 'Authorization: Bearer YOUR_KEY'."
        raise _RequestError(401, msg, "invalid_api_key")
    if not secrets.compare_digest(given.encode(), f"Bearer {key}".encode()):
        raise _RequestError(401, "Incorrect API key provided.", "invalid_api_key")


async def _handle_chat(request: web.Request) -> web.StreamResponse:
    return await _handle_generation(request, "chat")


async def _handle_completions(request: web.Request) -> web.StreamResponse:
    return await _handle_generation(request, "completions")


async def _handle_generation(request: web.Request, api: API) -> web.StreamResponse:
    got = await receive(request)
    state, body = got.state, got.body
    try:
        _check_auth(request, state)
        if body is None:
            raise _RequestError(400, "We could not parse the JSON body of your request.", None)
        sim_request = parse_request(api, body)
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
    async with state.capacity(sim_request.model, behaviour):
        # Generation starts once a slot is free: the wait in line adds to every delay.
        got = dataclasses.replace(got, arrival=asyncio.get_running_loop().time())
        if not sim_request.stream:
            return await _respond_whole(request, state, behaviour, sim_request, got.arrival)
        return await _stream(got.stream_context(behaviour), sim_request)


async def _stream(ctx: StreamContext, sim_request: SimRequest) -> web.StreamResponse:
    behaviour = ctx.behaviour
    prefix = "chatcmpl" if sim_request.api == "chat" else "cmpl"
    events = iter_events(
        behaviour,
        sim_request,
        completion_id=f"{prefix}-{uuid.uuid4().hex}",
        created=int(time.time()),
        rng=random.Random(behaviour.seed),
    )
    return await write_stream(ctx, events, SSEFramer.for_model(behaviour))


async def _respond_whole(
    request: web.Request,
    state: LLMSimState,
    behaviour: ModelBehaviour,
    sim_request: SimRequest,
    arrival: float,
) -> web.StreamResponse:
    plan = plan_generation(behaviour, sim_request, random.Random(behaviour.seed))
    await sleep_until(arrival + max(plan.end_at, behaviour.headers_delay))
    if plan.fault == "stall":
        await hold(request, state)
        return web.Response(status=504)
    if plan.fault == "drop":
        abort(request)
        return web.Response(status=502)
    if plan.fault == "error":
        msg = f"Simulated server error after {sum(c.tokens for c in plan.chunks)} tokens."
        return _error_response(500, msg, 500)
    return web.json_response(_whole_body(behaviour, sim_request, plan), dumps=_dumps)


def _whole_body(
    behaviour: ModelBehaviour, request: SimRequest, plan: GenerationPlan
) -> dict[str, object]:
    answer = (behaviour.token_text + " ") * plan.answer_tokens
    choice: dict[str, object] = {"index": 0}
    if request.api == "chat":
        message: dict[str, object] = {"role": "assistant", "content": answer}
        if plan.reasoning_tokens:
            message[behaviour.reasoning_field] = (
                behaviour.token_text + " "
            ) * plan.reasoning_tokens
        choice["message"] = message
    else:
        choice["text"] = answer
    choice["logprobs"] = None
    choice["finish_reason"] = plan.finish_reason
    body: dict[str, object] = {
        "id": f"{'chatcmpl' if request.api == 'chat' else 'cmpl'}-{uuid.uuid4().hex}",
        "object": "chat.completion" if request.api == "chat" else "text_completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [choice],
    }
    if behaviour.usage != "never":
        body["usage"] = _usage(plan.prompt_tokens, plan.completion_tokens, plan.reasoning_tokens)
    return body


async def _handle_models(request: web.Request) -> web.Response:
    state = request.app[LLM_SIM_STATE]
    await _record(request, state)
    try:
        _check_auth(request, state)
    except _RequestError as exc:
        return exc.response()
    created = int(time.time())
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": _OWNER}
        for name in state.config.models
    ]
    return web.json_response({"object": "list", "data": data}, dumps=_dumps)


async def _handle_sim_models(request: web.Request) -> web.Response:
    models = request.app[LLM_SIM_STATE].config.models
    body = {"models": {name: behaviour.model_dump() for name, behaviour in models.items()}}
    return web.json_response(body, dumps=_dumps)


async def _handle_patch_model(request: web.Request) -> web.Response:
    state = request.app[LLM_SIM_STATE]
    name = request.match_info["name"]
    try:
        patch = await request.json()
    except ValueError:
        return _error_response(400, "The body must be a JSON object of knobs.", None)
    if not isinstance(patch, dict):
        return _error_response(400, "The body must be a JSON object of knobs.", None)
    base = state.config.models.get(name, ModelBehaviour())
    try:
        behaviour = ModelBehaviour.model_validate({**base.model_dump(), **patch})
    except ValidationError as exc:
        return _error_response(400, str(exc), "invalid_knob")
    state.set_model(name, behaviour)
    return web.json_response(behaviour.model_dump(), dumps=_dumps)


async def _handle_sim_requests(request: web.Request) -> web.Response:
    recorded = list(request.app[LLM_SIM_STATE].requests)
    raw_limit = request.query.get("limit")
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = -1
        if limit < 0:
            return _error_response(400, "limit must be a non-negative integer.", None, "limit")
        # max(0, …): a limit above what is held returns everything held (a negative
        # start would slice from the end and silently return fewer records).
        recorded = recorded[max(0, len(recorded) - limit) :] if limit else []
    return web.json_response({"requests": [record.to_json() for record in recorded]}, dumps=_dumps)


async def _on_shutdown(app: web.Application) -> None:
    app[LLM_SIM_STATE].closing.set()


def create_llm_app(config: LLMSimConfig | None = None) -> web.Application:
    """Build the simulator app; it works on a copy of ``config``."""
    app = web.Application()
    config = LLMSimConfig() if config is None else config.model_copy(deep=True)
    app[LLM_SIM_STATE] = LLMSimState(config)
    app.router.add_post("/v1/chat/completions", _handle_chat)
    app.router.add_post("/v1/completions", _handle_completions)
    app.router.add_get("/v1/models", _handle_models)
    app.router.add_get("/sim/models", _handle_sim_models)
    app.router.add_patch("/sim/models/{name}", _handle_patch_model)
    app.router.add_get("/sim/requests", _handle_sim_requests)
    # Imported here: the protocol modes build on this module's plan and request parsing.
    from ttft_exporter.sim.protocols import ROUTES

    for add_routes in ROUTES:
        add_routes(app)
    app.on_shutdown.append(_on_shutdown)
    return app


async def run_llm_sim(
    config: LLMSimConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    """Serve the simulator on ``host:port`` (0 picks a free port).

    Returns the started runner (``await runner.cleanup()`` stops it) and the port.
    """
    runner = web.AppRunner(create_llm_app(config), handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    try:
        # aiohttp's default backlog of 128 drops SYNs when benchmarks open 200 streams
        # at once, and the 1 s SYN retry would then pollute the measured TTFT.
        site = web.TCPSite(runner, host, port, backlog=_BACKLOG)
        await site.start()
        bound: int = runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise
    return runner, bound
