"""Simulator mode of Ollama's native API (llm-streaming.md §A.4): `POST /api/chat` and
`POST /api/generate`, answering in NDJSON (one JSON object per line) and ending with
the `done: true` line that carries `done_reason`, the token counts and the server
timings in nanoseconds.

It reuses the OpenAI simulator's models, plan (token chunks, deadlines, faults), fault
knobs, request log and writers; only the wire format is Ollama's. Ollama's quirks: the
HTTP status stays 200 once streaming began, so a late error is an `{"error": "..."}`
line; `prompt_eval_count` is omitted when it is 0 (a cached prompt); `/api/generate`'s
last line carries a `context` array of token ids; older servers sent no `done_reason`
(knob `finish_reason: null`). Knobs map as in the OpenAI mode; `role_chunk` sends a
first line with empty content, a keep-alive (`keepalive_interval`) is a blank line,
`usage: never` leaves out the token counts, `omit_done` the final line.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

# NOTE: the private helpers of sim/llm.py are imported rather than copied, so that
# every protocol mode shares one request log, one set of knobs and one writer (made
# public once the protocol modes written side by side have landed).
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
from ttft_exporter.sim.protocols.mode import ModeError, bearer_matches, fault_ending
from ttft_exporter.sim.stream_writer import SSEFramer, sleep_until, write_stream

__all__ = ["NDJSONWriter", "OllamaRequest", "add_routes", "iter_ollama_events", "parse_request"]

Endpoint = Literal["chat", "generate"]

MALFORMED = '{"model":"m","message":{"role":"assistant","content":'
_NS = 1_000_000_000
# A real `context` holds one id per prompt and answer token; a few stand for them.
_CONTEXT_IDS = 8


@dataclass(frozen=True, slots=True)
class OllamaRequest:
    """The parts of an Ollama request that shape the simulated answer."""

    endpoint: Endpoint
    model: str
    stream: bool = True
    num_predict: int | None = None
    think: bool | str | None = None
    prompt_words: int = 0

    def sim_request(self) -> SimRequest:
        # api="chat": the plan gives reasoning tokens only to chat-shaped requests, and
        # both Ollama endpoints stream thinking.
        return SimRequest(
            api="chat",
            model=self.model,
            max_tokens=self.num_predict,
            prompt_words=self.prompt_words,
        )


class _OllamaError(ModeError):
    """An error answered before streaming: Ollama's `{"error": "..."}` body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message, {"error": message})


def parse_request(endpoint: Endpoint, body: object) -> OllamaRequest:
    """Validate an `/api/chat` or `/api/generate` body; raise a 400 error if invalid."""
    if not isinstance(body, dict):
        raise _OllamaError(400, "invalid request body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _OllamaError(400, "model is required")
    if endpoint == "chat":
        messages = body.get("messages")
        if messages is not None and not isinstance(messages, list):
            raise _OllamaError(400, "messages must be an array")
        words = sum(_words(m.get("content")) for m in messages or [] if isinstance(m, dict))
    else:
        words = _words(body.get("prompt")) + _words(body.get("system"))
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise _OllamaError(400, "stream must be a boolean")
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise _OllamaError(400, "options must be an object")
    num_predict = options.get("num_predict")
    if num_predict is not None and (
        isinstance(num_predict, bool) or not isinstance(num_predict, int)
    ):
        raise _OllamaError(400, "num_predict must be an integer")
    think = body.get("think")
    if think is not None and not isinstance(think, bool | str):
        raise _OllamaError(400, "think must be a boolean or a level")
    return OllamaRequest(
        endpoint,
        model,
        stream=stream,
        # A negative value (-1) means no limit in Ollama; 0 is taken the same way here.
        num_predict=num_predict if num_predict is None or num_predict > 0 else None,
        think=think,
        prompt_words=words,
    )


def _words(value: object) -> int:
    return len(value.split()) if isinstance(value, str) else 0


def _created_at() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


class _LineEncoder:
    """The JSON lines of one answer in Ollama's shapes."""

    def __init__(self, request: OllamaRequest, behaviour: ModelBehaviour) -> None:
        self._request = request
        self._behaviour = behaviour
        self._created = _created_at()

    def line(self, content: str, thinking: str = "") -> dict[str, Any]:
        head: dict[str, Any] = {"model": self._request.model, "created_at": self._created}
        if self._request.endpoint == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            head["message"] = message
        else:
            head["response"] = content
            if thinking:
                head["thinking"] = thinking
        head["done"] = False
        return head

    def token(self, field: str, text: str) -> str:
        if field == "reasoning":
            return _dumps(self.line("", text))
        return _dumps(self.line(text))

    def final(
        self, plan: GenerationPlan, emitted: int, content: str = "", thinking: str = ""
    ) -> dict[str, Any]:
        """The last line (or, with the whole answer in it, the `stream: false` body)."""
        behaviour = self._behaviour
        line = self.line(content, thinking)
        line["done"] = True
        if plan.finish_reason is not None:
            line["done_reason"] = plan.finish_reason
        first_at = plan.chunks[0].at if plan.chunks else plan.end_at
        load = behaviour.headers_delay
        line["total_duration"] = int(plan.end_at * _NS)
        line["load_duration"] = int(load * _NS)
        if behaviour.usage != "never":
            if plan.prompt_tokens:
                # omitempty in Ollama's Metrics: a fully cached prompt has no count.
                line["prompt_eval_count"] = plan.prompt_tokens
            line["eval_count"] = emitted
        line["prompt_eval_duration"] = int(max(0.0, first_at - load) * _NS)
        line["eval_duration"] = int(max(0.0, plan.end_at - first_at) * _NS)
        if self._request.endpoint == "generate":
            line["context"] = list(range(1, _CONTEXT_IDS + 1))
        return line


def iter_ollama_events(
    behaviour: ModelBehaviour, request: OllamaRequest, rng: random.Random
) -> Iterator[SimEvent]:
    """The stream's lines in time order, keep-alive blank lines included. Pure apart
    from `rng`; never ends when the stream stalls with keep-alives on."""
    if request.think is False and behaviour.reasoning_tokens:
        behaviour = behaviour.model_copy(update={"reasoning_tokens": 0})
    plan = plan_generation(behaviour, request.sim_request(), rng)
    events = _render(behaviour, plan, _LineEncoder(request, behaviour))
    return _with_keepalives(events, behaviour.headers_delay, behaviour.keepalive_interval)


def _malformed(at: float) -> SimEvent:
    return SimEvent(at, "data", MALFORMED)


def _stream_error(at: float, emitted: int) -> SimEvent:
    message = f"an error was encountered while running the model: simulated after {emitted} tokens"
    return SimEvent(at, "data", _dumps({"error": message}))


def _render(
    behaviour: ModelBehaviour, plan: GenerationPlan, encoder: _LineEncoder
) -> Iterator[SimEvent]:
    if behaviour.role_chunk:
        yield SimEvent(behaviour.headers_delay, "data", _dumps(encoder.line("")))
    emitted = 0
    for chunk in plan.chunks:
        if plan.malformed_after == emitted:
            yield _malformed(chunk.at)
        emitted += chunk.tokens
        text = (behaviour.token_text + " ") * chunk.tokens
        yield SimEvent(chunk.at, "data", encoder.token(chunk.field, text), text=True)
    yield from fault_ending(plan, emitted, malformed=_malformed, error=_stream_error)
    if plan.fault is not None:
        return
    if behaviour.omit_done:
        return
    yield SimEvent(plan.end_at, "data", _dumps(encoder.final(plan, emitted)))
    if behaviour.keep_open_after_done:
        yield SimEvent(plan.end_at, "hold")


class NDJSONWriter(SSEFramer):
    """Turns events into NDJSON bytes: one line per event, a keep-alive is a blank
    line; `crlf` and `split_writes` as in SSE."""

    def frame(self, event: SimEvent) -> list[bytes]:
        end = "\r\n" if self._end == "\r\n\r\n" else "\n"
        text = end if event.kind == "comment" else f"{event.data}{end}"
        raw = text.encode()
        return self._pieces(raw) if self._split and len(raw) > 1 else [raw]


def _check_auth(request: web.Request, state: LLMSimState) -> None:
    # Ollama has no auth; a key configured on the simulator plays the proxy in front.
    if not bearer_matches(request.headers, state):
        raise _OllamaError(401, "unauthorized")


async def _handle(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    got = await receive(request)
    state, body = got.state, got.body
    try:
        _check_auth(request, state)
        if body is None:
            raise _OllamaError(400, "invalid JSON body")
        parsed = parse_request(endpoint, body)
        base = state.config.models.get(parsed.model)
        if base is None:
            raise _OllamaError(404, f'model "{parsed.model}" not found, try pulling it first')
        try:
            behaviour = _request_behaviour(base, request.headers)
        except _RequestError as exc:
            raise _OllamaError(400, exc.message) from None
    except _OllamaError as exc:
        return exc.response()
    if behaviour.status != 200:
        await got.headers_delay(behaviour)
        return _OllamaError(
            behaviour.status, f"simulated error (HTTP {behaviour.status})"
        ).response()
    if not parsed.stream:
        return await _respond_whole(behaviour, parsed, got.arrival)
    ctx = got.stream_context(behaviour)
    return await write_stream(
        ctx,
        iter_ollama_events(behaviour, parsed, random.Random(behaviour.seed)),
        NDJSONWriter.for_model(behaviour),
        headers={"Content-Type": "application/x-ndjson"},
    )


async def _respond_whole(
    behaviour: ModelBehaviour, parsed: OllamaRequest, arrival: float
) -> web.Response:
    """`"stream": false`: one JSON object with the whole answer (faults not simulated)."""
    plan = plan_generation(behaviour, parsed.sim_request(), random.Random(behaviour.seed))
    await sleep_until(arrival + max(plan.end_at, behaviour.headers_delay))
    whole = _LineEncoder(parsed, behaviour).final(
        plan,
        plan.completion_tokens,
        content=(behaviour.token_text + " ") * plan.answer_tokens,
        thinking=(behaviour.token_text + " ") * plan.reasoning_tokens,
    )
    return web.json_response(whole, dumps=_dumps)


async def _handle_chat(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "chat")


async def _handle_generate(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "generate")


def add_routes(app: web.Application) -> None:
    """Serve Ollama's `/api/chat` and `/api/generate` on the simulator app."""
    app.router.add_post("/api/chat", _handle_chat)
    app.router.add_post("/api/generate", _handle_generate)
