"""OpenAI-compatible streaming: the config models, request bodies and pure chunk
decoders of Chat Completions and legacy Completions (llm-streaming.md §A.1), and their
registry entries. Auth: `Authorization: Bearer <key>` (the TargetBase default).

llama.cpp's server adds a `timings` object to the last chunk of these streams (§B.4):
the decoders hand it on as the server's timings (probes/server_timings.py)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, field_validator

from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.base import (
    HTTPRequest,
    ProtocolSpec,
    ServerTimings,
    StreamItem,
    Usage,
)
from ttft_exporter.probes.event_json import number, parse_object, server_text, text
from ttft_exporter.probes.framing import Frame, SSEFramer
from ttft_exporter.probes.server_timings import from_llamacpp
from ttft_exporter.targets import ChatMessage, TargetBase, prompt_or_messages

__all__ = [
    "CHAT",
    "COMPLETIONS",
    "ChatDecoder",
    "CompletionsDecoder",
    "OpenAIChatTarget",
    "OpenAICompletionsTarget",
    "build_chat_request",
    "build_completions_request",
]


class _OpenAITarget(TargetBase):
    """The knobs of both OpenAI protocols: `stream_options`, which only OpenAI-style
    servers know (others reject the unknown field, or ignore it)."""

    include_usage: bool = Field(
        True, description="Ask for the usage chunk (stream_options.include_usage)."
    )
    continuous_usage_stats: bool = Field(
        False,
        description="Also ask for usage on every chunk (vLLM's continuous_usage_stats).",
    )


class OpenAIChatTarget(_OpenAITarget):
    """A streaming OpenAI Chat Completions endpoint (`POST {url}/chat/completions`)."""

    protocol: Literal["openai-chat"]
    prompt: str | None = Field(None, description="User prompt; or give `messages`.")
    messages: list[ChatMessage] | None = Field(
        None, validate_default=True, description="Full message list; or give `prompt`."
    )

    _prompt_or_messages = field_validator("messages")(prompt_or_messages)


class OpenAICompletionsTarget(_OpenAITarget):
    """A streaming legacy Completions endpoint (`POST {url}/completions`)."""

    protocol: Literal["openai-completions"]
    prompt: str = Field(min_length=1, description="Prompt text.")


def _headers(target: _OpenAITarget) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    headers.update(target.request_headers())
    headers.update(target.auth_headers())
    return headers


def _stream_options(target: _OpenAITarget) -> dict[str, Any]:
    if not target.include_usage:
        return {}
    options: dict[str, Any] = {"include_usage": True}
    if target.continuous_usage_stats:
        options["continuous_usage_stats"] = True
    return {"stream_options": options}


def _endpoint(base: str, suffix: str) -> str:
    return base if base.endswith(suffix) else f"{base}{suffix}"


def build_chat_request(target: OpenAIChatTarget, nonce: str | None) -> HTTPRequest:
    """The streaming Chat Completions request for one probe."""
    if target.messages is not None:
        messages = [m.model_dump() for m in target.messages]
    else:
        messages = [{"role": "user", "content": target.prompt or ""}]
    if nonce:
        # At the very start, so no prefix of the prompt is ever cached.
        messages[0] = {**messages[0], "content": f"{nonce} {messages[0]['content']}"}
    body = {
        "model": target.model,
        "messages": messages,
        "stream": True,
        "max_tokens": target.max_tokens,
        **_stream_options(target),
        **target.extra_body,
    }
    return HTTPRequest(
        url=_endpoint(target.url, "/chat/completions"),
        headers=_headers(target),
        body=json.dumps(body).encode(),
    )


def build_completions_request(target: OpenAICompletionsTarget, nonce: str | None) -> HTTPRequest:
    """The streaming legacy Completions request for one probe."""
    prompt = f"{nonce} {target.prompt}" if nonce else target.prompt
    body = {
        "model": target.model,
        "prompt": prompt,
        "stream": True,
        "max_tokens": target.max_tokens,
        **_stream_options(target),
        **target.extra_body,
    }
    return HTTPRequest(
        url=_endpoint(target.url, "/completions"),
        headers=_headers(target),
        body=json.dumps(body).encode(),
    )


def _parse(event: Frame) -> dict[str, Any] | None:
    """The JSON object of a data event, or None for the [DONE] sentinel."""
    data = event.data
    if data == "[DONE]":
        return None
    obj = parse_object(data)
    error = obj.get("error")
    if error:
        raise ProbeFailure(FailureReason.STREAM_ERROR, _error_text(error))
    return obj


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message") or error.get("type") or "error"
        code = error.get("code") or error.get("http_status_code")
        # Not cut here: the engine redacts secrets first, then bounds the detail.
        return f"error in stream: {server_text(message)}" + (
            f" (code {server_text(code)})" if code else ""
        )
    return f"error in stream: {server_text(error)}"


def _usage(obj: dict[str, Any]) -> Usage | None:
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return Usage(
        input_tokens=number(usage.get("prompt_tokens")),
        output_tokens=number(usage.get("completion_tokens")),
        reasoning_tokens=number(reasoning),
    )


def _timings(obj: dict[str, Any]) -> ServerTimings | None:
    timings = obj.get("timings")
    # Only llama.cpp sends it: every other server's chunk costs one dict lookup.
    return None if timings is None else from_llamacpp(timings)


def _choice(obj: dict[str, Any]) -> dict[str, Any] | None:
    choices = obj.get("choices")
    if choices is None or choices == []:
        # The usage-only chunk has `choices: []`: never index into it.
        return None
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise ProbeFailure(FailureReason.PROTOCOL, "`choices` is not a list of objects")
    first: dict[str, Any] = choices[0]
    return first


def _finish(value: Any) -> str | None:
    """A choice's finish reason: None while generating (`null`; some servers send
    ""), the server's string otherwise; a value of another JSON type is kept as its
    type name, which no known reason matches, so it counts as `other`."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else f"<{type(value).__name__}>"


class ChatDecoder:
    """Chat Completions chunks. Answer text is `delta.content` (and `delta.refusal`);
    reasoning is `delta.reasoning` or `delta.reasoning_content`, whichever the server
    uses; the `obfuscation` padding field is never content."""

    __slots__ = ()

    def decode(self, event: Frame) -> StreamItem | None:
        # Once per stream event: the helpers' rules written inline (issue #14), the
        # common chunk (a text delta, `usage` and `timings` absent or null) costs a few
        # dict lookups and one StreamItem.
        obj = _parse(event)
        if obj is None:
            return StreamItem(done=True)
        get = obj.get
        usage = None if get("usage") is None else _usage(obj)
        timings = None if get("timings") is None else _timings(obj)
        answer = reasoning = ""
        finish = None
        choice = _choice(obj)
        if choice is not None:
            delta = choice.get("delta")
            if isinstance(delta, dict):
                # `text(a) or text(b)`: the first field that is a non-empty string.
                content = delta.get("content")
                if content and isinstance(content, str):
                    answer = content
                else:
                    answer = text(delta.get("refusal"))
                thought = delta.get("reasoning")
                if thought and isinstance(thought, str):
                    reasoning = thought
                else:
                    reasoning = text(delta.get("reasoning_content"))
            finish = choice.get("finish_reason")
            if finish is not None:
                finish = _finish(finish)
        return StreamItem(answer, reasoning, usage, finish, False, timings)


class CompletionsDecoder:
    """Legacy Completions chunks: text in `choices[0].text`."""

    __slots__ = ()

    def decode(self, event: Frame) -> StreamItem | None:
        obj = _parse(event)
        if obj is None:
            return StreamItem(done=True)
        get = obj.get
        usage = None if get("usage") is None else _usage(obj)
        timings = None if get("timings") is None else _timings(obj)
        choice = _choice(obj)
        if choice is None:
            return StreamItem(usage=usage, server_timings=timings)
        finish = choice.get("finish_reason")
        return StreamItem(
            text=text(choice.get("text")),
            usage=usage,
            finish_reason=None if finish is None else _finish(finish),
            server_timings=timings,
        )


CHAT = ProtocolSpec(
    name="openai-chat",
    model=OpenAIChatTarget,
    build_request=build_chat_request,
    new_decoder=ChatDecoder,
    new_framer=SSEFramer,
    otel_provider="openai",
    otel_operation="chat",
)
"""Streaming Chat Completions: `POST {url}/chat/completions`, SSE ending in `[DONE]`."""

COMPLETIONS = ProtocolSpec(
    name="openai-completions",
    model=OpenAICompletionsTarget,
    build_request=build_completions_request,
    new_decoder=CompletionsDecoder,
    new_framer=SSEFramer,
    otel_provider="openai",
    otel_operation="text_completion",
)
"""Streaming legacy Completions: `POST {url}/completions`, SSE ending in `[DONE]`."""
