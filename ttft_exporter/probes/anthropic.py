"""Anthropic Messages streaming (llm-streaming.md §A.3): the config model, the request
body and the stateful event decoder, and the registry entry.

Auth: `x-api-key: <key>` (no scheme) plus the `anthropic-version` header. The stream is
SSE with named events: `message_start` (input tokens), content blocks whose
`content_block_delta` carries `text_delta` (answer) or `thinking_delta` (reasoning),
`message_delta` (stop reason and the cumulative output tokens), then `message_stop`,
the terminator. `ping` may come anywhere; `event: error` may come after a 200.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import Field

from ttft_exporter.probes.base import HTTPRequest, ProtocolSpec, StreamItem, Usage
from ttft_exporter.probes.event_json import as_object, error_text, named_event, number, text
from ttft_exporter.probes.framing import Frame, SSEFramer
from ttft_exporter.targets import TargetBase

__all__ = [
    "ANTHROPIC",
    "DEFAULT_ANTHROPIC_VERSION",
    "AnthropicTarget",
    "MessagesDecoder",
    "build_request",
    "messages_url",
]

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"


class AnthropicTarget(TargetBase):
    """A streaming Anthropic Messages endpoint (`POST {url}/v1/messages`)."""

    auth_header: ClassVar[str] = "x-api-key"
    auth_scheme: ClassVar[str] = ""  # the key alone, no "Bearer "

    protocol: Literal["anthropic"]
    prompt: str = Field(min_length=1, description="User prompt.")
    system: str | None = Field(None, min_length=1, description="Optional system prompt.")
    anthropic_version: str = Field(
        DEFAULT_ANTHROPIC_VERSION,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="The anthropic-version header.",
    )


def messages_url(base: str) -> str:
    """`{url}/v1/messages`; a base that already ends in `/v1` or `/v1/messages` (as
    OpenAI-style base URLs do) is not doubled."""
    base = base.rstrip("/")
    if base.endswith("/v1/messages"):
        return base
    if base.endswith("/v1"):
        return f"{base}/messages"
    return f"{base}/v1/messages"


def build_request(target: AnthropicTarget, nonce: str | None) -> HTTPRequest:
    """The streaming Messages request for one probe."""
    # At the very start, so no prefix of the prompt is ever cached.
    prompt = f"{nonce} {target.prompt}" if nonce else target.prompt
    body: dict[str, Any] = {
        "model": target.model,
        "max_tokens": target.max_tokens,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
    }
    if target.system is not None:
        body["system"] = target.system
    body.update(target.extra_body)
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "anthropic-version": target.anthropic_version,
    }
    headers.update(target.request_headers())
    headers.update(target.auth_headers())
    return HTTPRequest(
        url=messages_url(target.url), headers=headers, body=json.dumps(body).encode()
    )


# Anthropic's `input_tokens` counts only the tokens after the last cache breakpoint;
# tokens written to or read from the prompt cache are reported beside it, and all of
# them were the prompt.
_INPUT_PARTS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def _error_text(obj: dict[str, Any]) -> str:
    return error_text(obj.get("error"), lambda error: text(error.get("type")))


def _stop_reason(value: Any) -> str | None:
    """The server's stop reason: None while generating (`null`), the string otherwise;
    a value of another JSON type is kept as its type name, so it counts as `other`."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else f"<{type(value).__name__}>"


class MessagesDecoder:
    """Messages stream events. The event type is the SSE event name, or the data's
    `type` when a proxy dropped the `event:` lines. Unknown event and delta types are
    data but no text (the API adds types; an old exporter must not fail on them)."""

    __slots__ = ("_input",)

    def __init__(self) -> None:
        # The prompt's parts as last reported, each on its own: `message_delta` may
        # repeat only some of them (the docs make each optional there), and a part it
        # omits keeps its `message_start` value rather than dropping out of the sum.
        self._input: dict[str, int | float] = {}

    def _input_tokens(self, usage: dict[str, Any]) -> int | float | None:
        """The prompt tokens, every part with its latest value, when this event
        reported any part (None when it reported none: the earlier count stands)."""
        given = False
        for key in _INPUT_PARTS:
            value = number(usage.get(key))
            if value is not None:
                self._input[key] = value
                given = True
        return sum(self._input.values()) if given else None

    def decode(self, frame: Frame) -> StreamItem | None:
        kind, obj = named_event(frame, _error_text)
        if kind == "ping":
            # A keep-alive: not a chunk, never a token.
            return None
        if kind == "content_block_delta":
            delta = as_object(obj.get("delta"))
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                return StreamItem(text=text(delta.get("text")))
            if delta_type == "thinking_delta":
                return StreamItem(reasoning=text(delta.get("thinking")))
            # signature_delta, input_json_delta (tool arguments), citations_delta.
            return StreamItem()
        if kind == "content_block_start":
            # Blocks start empty in practice; text given here is generated all the same.
            block = as_object(obj.get("content_block"))
            if block.get("type") == "thinking":
                return StreamItem(reasoning=text(block.get("thinking")))
            if block.get("type") == "text":
                return StreamItem(text=text(block.get("text")))
            return StreamItem()
        if kind == "message_start":
            usage = as_object(as_object(obj.get("message")).get("usage"))
            # Only the input count: `output_tokens` here is a placeholder (1), and the
            # real count comes in message_delta. A stream without one falls back to
            # counting chunks rather than reporting one token.
            return StreamItem(usage=Usage(input_tokens=self._input_tokens(usage)))
        if kind == "message_delta":
            usage = as_object(obj.get("usage"))
            return StreamItem(
                finish_reason=_stop_reason(as_object(obj.get("delta")).get("stop_reason")),
                # Cumulative counts: the timeline keeps the last one, never a sum.
                usage=Usage(
                    input_tokens=self._input_tokens(usage),
                    output_tokens=number(usage.get("output_tokens")),
                )
                if usage
                else None,
            )
        if kind == "message_stop":
            return StreamItem(done=True)
        return StreamItem()


ANTHROPIC = ProtocolSpec(
    name="anthropic",
    model=AnthropicTarget,
    build_request=build_request,
    new_decoder=MessagesDecoder,
    new_framer=SSEFramer,
    # `message_stop` is the terminator: EOF before it is a truncation.
    terminated=True,
    otel_provider="anthropic",
    otel_operation="chat",
)
"""Streaming Anthropic Messages: `POST {url}/v1/messages`, SSE ending in `message_stop`."""
