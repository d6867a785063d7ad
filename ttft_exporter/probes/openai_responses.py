"""OpenAI Responses API streaming (llm-streaming.md §A.2): the config model, the request
body and the event decoder, and the registry entry.

Auth: `Authorization: Bearer <key>` (the TargetBase default). The stream is SSE with
named events whose data repeats `type`: `response.output_text.delta` is answer text,
`response.reasoning_summary_text.delta` and `response.reasoning_text.delta` reasoning;
the usage comes in the terminal event. Terminal events: `response.completed`,
`response.incomplete` (e.g. max_output_tokens), `response.failed`, and `error`; there is
no `[DONE]`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.base import HTTPRequest, ProtocolSpec, StreamItem, Usage
from ttft_exporter.probes.event_json import (
    as_object,
    error_text,
    named_event,
    number,
    server_text,
    text,
)
from ttft_exporter.probes.framing import Frame, SSEFramer
from ttft_exporter.targets import TargetBase

__all__ = [
    "RESPONSES",
    "OpenAIResponsesTarget",
    "ResponsesDecoder",
    "build_request",
    "responses_url",
]


class OpenAIResponsesTarget(TargetBase):
    """A streaming OpenAI Responses endpoint (`POST {url}/responses`)."""

    protocol: Literal["openai-responses"]
    prompt: str = Field(min_length=1, description="The input text (one user message).")
    instructions: str | None = Field(
        None, min_length=1, description="Optional instructions (the system prompt)."
    )


_TEXT_EVENTS = frozenset({"response.output_text.delta", "response.refusal.delta"})
_REASONING_EVENTS = frozenset(
    {"response.reasoning_summary_text.delta", "response.reasoning_text.delta"}
)
# `incomplete_details.reason` spelled as the bounded finish-reason values.
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def responses_url(base: str) -> str:
    """`{url}/responses`, unless the URL already ends with it."""
    base = base.rstrip("/")
    return base if base.endswith("/responses") else f"{base}/responses"


def build_request(target: OpenAIResponsesTarget, nonce: str | None) -> HTTPRequest:
    """The streaming Responses request for one probe."""
    # At the very start, so no prefix of the input is ever cached.
    prompt = f"{nonce} {target.prompt}" if nonce else target.prompt
    body: dict[str, Any] = {
        "model": target.model,
        "input": prompt,
        "stream": True,
        "max_output_tokens": target.max_tokens,
    }
    if target.instructions is not None:
        body["instructions"] = target.instructions
    body.update(target.extra_body)
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    headers.update(target.request_headers())
    headers.update(target.auth_headers())
    return HTTPRequest(
        url=responses_url(target.url), headers=headers, body=json.dumps(body).encode()
    )


def _usage(response: dict[str, Any]) -> Usage | None:
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return None
    details = as_object(usage.get("output_tokens_details"))
    return Usage(
        input_tokens=number(usage.get("input_tokens")),
        output_tokens=number(usage.get("output_tokens")),
        reasoning_tokens=number(details.get("reasoning_tokens")),
    )


def _error_text(error: Any) -> str:
    return error_text(error, _code)


def _code(error: dict[str, Any]) -> str:
    code = error.get("code")
    return f"code {server_text(code)}" if code else ""


def _incomplete_reason(response: dict[str, Any]) -> str | None:
    """`incomplete_details.reason` as a finish reason; None when it gives none, so the
    stream counts as truncated."""
    reason = as_object(response.get("incomplete_details")).get("reason")
    if not isinstance(reason, str) or not reason:
        return None
    return _INCOMPLETE.get(reason, reason)


class ResponsesDecoder:
    """Responses stream events. The event type is the SSE event name, or the data's
    `type` when a proxy dropped the `event:` lines. Structure events (created,
    output_item, content_part, *.done) are data without text; unknown types too (the
    API adds them; an old exporter must not fail on them)."""

    __slots__ = ()

    def decode(self, frame: Frame) -> StreamItem | None:
        # The error event carries code and message at the top level.
        kind, obj = named_event(frame, lambda obj: _error_text(obj.get("error", obj)))
        if kind in _TEXT_EVENTS:
            return StreamItem(text=text(obj.get("delta")))
        if kind in _REASONING_EVENTS:
            return StreamItem(reasoning=text(obj.get("delta")))
        if kind == "response.completed":
            response = as_object(obj.get("response"))
            # `completed` is a natural end; tool calls show as output items, not here.
            return StreamItem(usage=_usage(response), finish_reason="stop", done=True)
        if kind == "response.incomplete":
            response = as_object(obj.get("response"))
            return StreamItem(
                usage=_usage(response), finish_reason=_incomplete_reason(response), done=True
            )
        if kind == "response.failed":
            response = as_object(obj.get("response"))
            raise ProbeFailure(
                FailureReason.STREAM_ERROR,
                _error_text(response.get("error") or "response.failed"),
            )
        return StreamItem()


RESPONSES = ProtocolSpec(
    name="openai-responses",
    model=OpenAIResponsesTarget,
    build_request=build_request,
    new_decoder=ResponsesDecoder,
    new_framer=SSEFramer,
    # A terminal event (completed, incomplete) ends the stream: EOF before it is a
    # truncation.
    terminated=True,
    otel_provider="openai",
    otel_operation="chat",
)
"""Streaming OpenAI Responses: `POST {url}/responses`, SSE ending in a terminal event."""
