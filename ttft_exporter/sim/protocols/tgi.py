"""Simulator mode of Hugging Face TGI's native API (llm-streaming.md §A.5):
`POST /generate_stream`, SSE written as TGI's axum server writes it: `data:{json}` with
no space, one event per token, no `[DONE]` (the response just ends), keep-alive
comments, the last event carrying `generated_text` and, when the request asked for
`parameters.details`, `details` (`finish_reason` `length`/`eos_token`/`stop_sequence`,
`generated_tokens`, `input_length`, `seed`). A natural stop ends with the EOS token
as a special token (`"special": true`); an error mid-stream is
`data:{"error":"…","error_type":"generation"}`.

It reuses the OpenAI simulator's models, plan, fault knobs, request log and writers.
Knobs map as in the OpenAI mode; `role_chunk` sends a special `<s>` token first,
`usage: never` or `finish_reason: null` leave `details` out of the last event,
`omit_done` leaves out the last event (the stream ends after the last plain token).
Reasoning is not a TGI field: reasoning tokens are streamed as plain tokens.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

# NOTE: the private helpers of sim/llm.py are imported rather than copied, so that
# every protocol mode shares one request log, one set of knobs and one writer.
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
from ttft_exporter.sim.stream_writer import (
    SSE_HEADERS,
    SSEFramer,
    write_stream,
)

__all__ = ["TGIRequest", "add_routes", "iter_tgi_events", "parse_request"]

MALFORMED = '{"index":1,"token":{"id":'
EOS = {"id": 2, "text": "</s>", "logprob": -0.01, "special": True}
BOS = {"id": 1, "text": "<s>", "logprob": 0.0, "special": True}
# The sim's plan says `stop`; TGI's name for a natural stop is `eos_token`.
_FINISH = {"stop": "eos_token"}
_TOKEN_ID = 28723


@dataclass(frozen=True, slots=True)
class TGIRequest:
    """The parts of a `/generate_stream` request that shape the simulated answer."""

    max_new_tokens: int | None = None
    details: bool = False
    inputs_words: int = 0

    def sim_request(self, model: str) -> SimRequest:
        # api="chat": reasoning tokens (if a model has them) are planned, then streamed
        # as plain tokens, as TGI streams a reasoning model's thinking.
        return SimRequest(
            api="chat", model=model, max_tokens=self.max_new_tokens, prompt_words=self.inputs_words
        )


class _TGIError(ModeError):
    """An error answered before streaming: TGI's `{"error", "error_type"}` body."""

    def __init__(self, status: int, message: str, error_type: str = "validation") -> None:
        super().__init__(status, message, {"error": message, "error_type": error_type})


def parse_request(body: object) -> TGIRequest:
    """Validate a `/generate_stream` body; raise a 422 error (TGI's status) if invalid."""
    if not isinstance(body, dict):
        raise _TGIError(422, "Failed to deserialize the JSON body into the target type")
    inputs = body.get("inputs")
    if not isinstance(inputs, str):
        raise _TGIError(422, "Failed to deserialize the JSON body: missing field `inputs`")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _TGIError(422, "Failed to deserialize the JSON body: invalid `parameters`")
    max_new = parameters.get("max_new_tokens")
    if max_new is not None and (isinstance(max_new, bool) or not isinstance(max_new, int)):
        raise _TGIError(422, "Failed to deserialize the JSON body: invalid `max_new_tokens`")
    if max_new is not None and max_new < 1:
        raise _TGIError(422, "Input validation error: `max_new_tokens` must be strictly positive")
    return TGIRequest(
        max_new_tokens=max_new,
        details=parameters.get("details") is True,
        inputs_words=len(inputs.split()),
    )


def _token(text: str, index: int) -> dict[str, Any]:
    return {"id": _TOKEN_ID + index, "text": text, "logprob": -0.61, "special": False}


def _event(index: int, token: dict[str, Any], final: dict[str, Any] | None = None) -> str:
    event: dict[str, Any] = {"index": index, "token": token, "generated_text": None}
    event["details"] = None
    if final is not None:
        event.update(final)
    return _dumps(event)


def iter_tgi_events(
    behaviour: ModelBehaviour, request: TGIRequest, model: str, rng: random.Random
) -> Iterator[SimEvent]:
    """The stream's events in time order, keep-alive comments included. Pure apart
    from `rng`; never ends when the stream stalls with keep-alives on."""
    plan = plan_generation(behaviour, request.sim_request(model), rng)
    events = _render(behaviour, request, plan)
    return _with_keepalives(events, behaviour.headers_delay, behaviour.keepalive_interval)


def _final(
    behaviour: ModelBehaviour, request: TGIRequest, plan: GenerationPlan, generated: int
) -> dict[str, Any]:
    answer = (behaviour.token_text + " ") * (plan.completion_tokens)
    final: dict[str, Any] = {"generated_text": answer}
    if request.details and behaviour.usage != "never" and plan.finish_reason is not None:
        final["details"] = {
            "finish_reason": _FINISH.get(plan.finish_reason, plan.finish_reason),
            "generated_tokens": generated,
            "seed": None,
            "input_length": plan.prompt_tokens,
        }
    return final


def _malformed(at: float) -> SimEvent:
    return SimEvent(at, "data", MALFORMED)


def _stream_error(at: float, emitted: int) -> SimEvent:
    message = f"Request failed during generation: simulated after {emitted} tokens"
    return SimEvent(at, "data", _dumps({"error": message, "error_type": "generation"}))


def _render(
    behaviour: ModelBehaviour, request: TGIRequest, plan: GenerationPlan
) -> Iterator[SimEvent]:
    index = 0
    if behaviour.role_chunk:
        index += 1
        yield SimEvent(behaviour.headers_delay, "data", _event(index, BOS))
    emitted = 0
    chunks = plan.chunks
    # A generation cut at its limit ends on its last token: that event is the final one.
    last_is_final = (
        plan.fault is None and not behaviour.omit_done and plan.finish_reason == "length"
    )
    for number, chunk in enumerate(chunks):
        if plan.malformed_after == emitted:
            yield _malformed(chunk.at)
        emitted += chunk.tokens
        index += 1
        token = _token((behaviour.token_text + " ") * chunk.tokens, index)
        final = None
        if last_is_final and number == len(chunks) - 1:
            final = _final(behaviour, request, plan, emitted)
        yield SimEvent(chunk.at, "data", _event(index, token, final), text=True)
    yield from fault_ending(plan, emitted, malformed=_malformed, error=_stream_error)
    if plan.fault is not None:
        return
    if behaviour.omit_done:
        return
    if not last_is_final:
        # NOTE: the EOS token is generated, so generated_tokens counts it (one more than
        # the text tokens), as TGI reports a natural stop.
        final = _final(behaviour, request, plan, emitted + 1)
        yield SimEvent(plan.end_at, "data", _event(index + 1, EOS, final))
    if behaviour.keep_open_after_done:
        yield SimEvent(plan.end_at, "hold")


def _check_auth(request: web.Request, state: LLMSimState) -> None:
    # TGI's `--api-key`: a Bearer token; 401 without a body otherwise.
    if not bearer_matches(request.headers, state):
        raise _TGIError(401, "Unauthorized", "authentication")


async def _handle(request: web.Request) -> web.StreamResponse:
    got = await receive(request)
    state, body = got.state, got.body
    # TGI serves one model: the first configured one (X-Sim-Model picks another).
    model = request.headers.get("X-Sim-Model") or next(iter(state.config.models), "")
    try:
        _check_auth(request, state)
        if body is None:
            raise _TGIError(400, "Failed to parse the request body as JSON")
        parsed = parse_request(body)
        base = state.config.models.get(model)
        if base is None:
            raise _TGIError(404, f"model {model!r} is not served", "not_found")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "x-sim-model"}
        try:
            behaviour = _request_behaviour(base, headers)
        except _RequestError as exc:
            raise _TGIError(422, exc.message) from None
    except _TGIError as exc:
        return exc.response()
    if behaviour.status != 200:
        await got.headers_delay(behaviour)
        message = f"simulated error (HTTP {behaviour.status})"
        return _TGIError(behaviour.status, message, "generation").response()
    ctx = got.stream_context(behaviour)
    return await write_stream(
        ctx,
        iter_tgi_events(behaviour, parsed, model, random.Random(behaviour.seed)),
        # TGI's axum server never writes the space after `data:` (knob data_space unused).
        SSEFramer.for_model(behaviour, data_space=False),
        headers={**SSE_HEADERS, "X-Accel-Buffering": "no"},
    )


def add_routes(app: web.Application) -> None:
    """Serve TGI's `/generate_stream` on the simulator app."""
    app.router.add_post("/generate_stream", _handle)
