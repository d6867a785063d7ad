"""Simulator mode: Azure OpenAI Chat Completions at
`POST /openai/deployments/{deployment}/chat/completions?api-version=...`, key in the
`api-key` header. The deployment name picks the simulated model (the body's `model` is
ignored, as Azure ignores it).

The stream is the OpenAI mode's, with Azure's content-filter quirks: a first chunk with
`choices: []` and `prompt_filter_results`, `content_filter_results` on every choice, and
one filter-annotation chunk after the finish chunk (a choice without `delta`, as the
asynchronous filter sends it). A missing `api-version` is a 404, as Azure answers
**[unverified: exact body]**.
"""

from __future__ import annotations

import json
import random
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from ttft_exporter.sim.llm import (
    _error_response,
    _request_behaviour,
    _RequestError,
    iter_events,
    parse_request,
    receive,
)
from ttft_exporter.sim.llm_state import LLMSimState, SimEvent
from ttft_exporter.sim.stream_writer import SSEFramer, write_stream

__all__ = ["add_routes", "azure_events"]

_SAFE = {"filtered": False, "severity": "safe"}
_FILTERS = dict.fromkeys(("hate", "self_harm", "sexual", "violence"), _SAFE)
_PROMPT_FILTER = {"prompt_index": 0, "content_filter_results": _FILTERS}


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def azure_events(events: Iterator[SimEvent], start: float) -> Iterator[SimEvent]:
    """The OpenAI mode's events with Azure's content-filter annotations added."""
    head = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
    yield SimEvent(start, "data", _dumps({**head, "prompt_filter_results": [_PROMPT_FILTER]}))
    for event in events:
        chunk: Any = None
        try:
            chunk = json.loads(event.data) if event.kind == "data" else None
        except ValueError:
            chunk = None  # [DONE], the malformed-event fault
        if not isinstance(chunk, dict):
            yield event
            continue
        choices = chunk.get("choices")
        if not choices:
            yield event  # the usage chunk, an error payload
            continue
        choices[0]["content_filter_results"] = _FILTERS
        yield SimEvent(event.at, "data", _dumps(chunk), text=event.text)
        if choices[0].get("finish_reason") is not None:
            annotation: dict[str, object] = {
                "index": 0,
                "finish_reason": None,
                "content_filter_results": _FILTERS,
                "content_filter_offsets": {"check_offset": 0, "start_offset": 0, "end_offset": 1},
            }
            yield SimEvent(event.at, "data", _dumps({**chunk, "choices": [annotation]}))


def _check_key(request: web.Request, state: LLMSimState) -> None:
    key = state.config.api_key
    if key is None:
        return
    given = request.headers.get("api-key", "")
    if not secrets.compare_digest(given.encode(), key.encode()):
        raise _RequestError(
            401,
            "Access denied due to invalid subscription key or wrong API endpoint.",
            "401",
        )


async def _handle(request: web.Request) -> web.StreamResponse:
    got = await receive(request)
    state, body = got.state, got.body
    deployment = request.match_info["deployment"]
    try:
        if not request.query.get("api-version"):
            raise _RequestError(404, "Resource not found", "404")
        _check_key(request, state)
        if not isinstance(body, dict):
            raise _RequestError(400, "We could not parse the JSON body of your request.", None)
        # The deployment is the model; the body's `model` is ignored.
        sim_request = parse_request("chat", {**body, "model": deployment})
        base = state.config.models.get(deployment)
        if base is None:
            msg = "The API deployment for this resource does not exist."
            raise _RequestError(404, msg, "DeploymentNotFound")
        behaviour = _request_behaviour(base, request.headers)
    except _RequestError as exc:
        return _error_response(exc.status, exc.message, exc.code)
    if behaviour.status != 200:
        await got.headers_delay(behaviour)
        msg = f"Simulated error (HTTP {behaviour.status})."
        return _error_response(behaviour.status, msg, behaviour.status)
    if not sim_request.stream:
        return _error_response(400, "This simulator mode streams only.", None)
    events = iter_events(
        behaviour,
        sim_request,
        completion_id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        rng=random.Random(behaviour.seed),
    )
    ctx = got.stream_context(behaviour)
    writer = SSEFramer.for_model(behaviour)
    # As before the shared loop, this mode does not read the `burst` knob.
    return await write_stream(
        ctx, azure_events(events, behaviour.headers_delay), writer, honour_burst=False
    )


def add_routes(app: web.Application) -> None:
    """The Azure OpenAI deployment route."""
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", _handle)
