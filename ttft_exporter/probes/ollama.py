"""Ollama's native streaming API: the config models, request bodies and pure line
decoders of `POST {url}/api/chat` and `POST {url}/api/generate` (llm-streaming.md
§A.4), and their registry entries. NDJSON, one JSON object per line; the stream ends
with the line carrying `done: true`. Ollama itself has no auth; a key, when set, is sent
as `Authorization: Bearer <key>` (the TargetBase default) for the proxies in front of it.

The final line also carries the server's timings (`load_duration`,
`prompt_eval_duration`, `eval_duration`, `total_duration`, in nanoseconds): the decoder
hands them on parsed and bounded (probes/server_timings.py)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, field_validator

from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.base import HTTPRequest, ProtocolSpec, StreamItem, Usage
from ttft_exporter.probes.event_json import number, parse_object, server_text, text
from ttft_exporter.probes.framing import Frame, NDJSONFramer
from ttft_exporter.probes.server_timings import from_ollama
from ttft_exporter.targets import ChatMessage, TargetBase, prompt_or_messages

__all__ = [
    "CHAT",
    "DONE_WITHOUT_REASON",
    "GENERATE",
    "OllamaChatDecoder",
    "OllamaChatTarget",
    "OllamaGenerateDecoder",
    "OllamaGenerateTarget",
    "build_chat_request",
    "build_generate_request",
]

DONE_WITHOUT_REASON = "<done without done_reason>"
"""The finish reason of a `done: true` line without `done_reason` (older Ollama
versions sent none). The stream is complete, so it is not a truncation; the reason is
unknown, so it is counted as `other` (no known reason matches this text)."""

ThinkLevel = Literal["low", "medium", "high"]


class _OllamaTarget(TargetBase):
    """What both Ollama endpoints share: `think`, and `max_tokens` sent as
    `options.num_predict`."""

    think: bool | ThinkLevel | None = Field(
        None,
        description=(
            "Ollama's `think`: true/false, or low/medium/high for models with levels; "
            "unset: not sent (the model's default)."
        ),
    )

    @field_validator("extra_body")
    @classmethod
    def _no_num_predict(cls, value: dict[str, Any]) -> dict[str, Any]:
        # max_tokens is sent as options.num_predict and bounds the plausible usage
        # (check_usage); a second limit in extra_body would silently override it.
        options = value.get("options")
        if isinstance(options, dict) and "num_predict" in options:
            raise ValueError("options.num_predict: set max_tokens instead (sent as num_predict)")
        if options is not None and not isinstance(options, dict):
            raise ValueError("options must be a mapping (Ollama's model options)")
        return value


class OllamaChatTarget(_OllamaTarget):
    """A streaming Ollama chat endpoint (`POST {url}/api/chat`)."""

    protocol: Literal["ollama-chat"]
    prompt: str | None = Field(None, description="User prompt; or give `messages`.")
    messages: list[ChatMessage] | None = Field(
        None, validate_default=True, description="Full message list; or give `prompt`."
    )

    _prompt_or_messages = field_validator("messages")(prompt_or_messages)


class OllamaGenerateTarget(_OllamaTarget):
    """A streaming Ollama generate endpoint (`POST {url}/api/generate`)."""

    protocol: Literal["ollama-generate"]
    prompt: str = Field(min_length=1, description="Prompt text.")
    system: str | None = Field(None, description="System prompt (Ollama's `system`).")


def _endpoint(base: str, suffix: str) -> str:
    return base if base.endswith(suffix) else f"{base}{suffix}"


def _headers(target: _OllamaTarget) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/x-ndjson"}
    headers.update(target.request_headers())
    headers.update(target.auth_headers())
    return headers


def _body(target: _OllamaTarget, fields: dict[str, Any]) -> bytes:
    extra = dict(target.extra_body)
    # Merged, not replaced: extra_body may set other model options (temperature, ...).
    options = {"num_predict": target.max_tokens, **extra.pop("options", {})}
    body: dict[str, Any] = {"model": target.model, **fields, "stream": True, "options": options}
    if target.think is not None:
        body["think"] = target.think
    body.update(extra)
    return json.dumps(body).encode()


def build_chat_request(target: OllamaChatTarget, nonce: str | None) -> HTTPRequest:
    """The streaming `/api/chat` request for one probe."""
    if target.messages is not None:
        messages = [m.model_dump() for m in target.messages]
    else:
        messages = [{"role": "user", "content": target.prompt or ""}]
    if nonce:
        # At the very start, so no prefix of the prompt is ever cached.
        messages[0] = {**messages[0], "content": f"{nonce} {messages[0]['content']}"}
    return HTTPRequest(
        url=_endpoint(target.url, "/api/chat"),
        headers=_headers(target),
        body=_body(target, {"messages": messages}),
    )


def build_generate_request(target: OllamaGenerateTarget, nonce: str | None) -> HTTPRequest:
    """The streaming `/api/generate` request for one probe."""
    fields: dict[str, Any] = {"prompt": f"{nonce} {target.prompt}" if nonce else target.prompt}
    if target.system is not None:
        fields["system"] = target.system
    return HTTPRequest(
        url=_endpoint(target.url, "/api/generate"),
        headers=_headers(target),
        body=_body(target, fields),
    )


def _parse(frame: Frame) -> dict[str, Any]:
    """The JSON object of one line; an `{"error": ...}` line is a stream error."""
    data = frame.data
    obj = parse_object(data, unit="stream line")
    error = obj.get("error")
    if error:
        # Ollama's shape is a string; the HTTP status stays 200 once streaming began.
        message = error.get("message", error) if isinstance(error, dict) else error
        raise ProbeFailure(FailureReason.STREAM_ERROR, f"error in stream: {server_text(message)}")
    return obj


def _end(obj: dict[str, Any], item: StreamItem) -> StreamItem:
    """Fills in the end of the stream when this line is the `done: true` one: its
    finish reason, its usage (prompt_eval_count is omitted when the prompt was all
    cached, so it may be absent) and the server's timings."""
    done = obj.get("done")
    if done is not True:
        if done not in (False, None):
            raise ProbeFailure(
                FailureReason.PROTOCOL, f"`done` is not a boolean: {server_text(done):.40}"
            )
        return item
    reason = obj.get("done_reason")
    if reason is None or reason == "":
        item.finish_reason = DONE_WITHOUT_REASON
    else:
        # A value of another JSON type is kept as its type name: counted as `other`.
        item.finish_reason = reason if isinstance(reason, str) else f"<{type(reason).__name__}>"
    prompt = number(obj.get("prompt_eval_count"))
    output = number(obj.get("eval_count"))
    if prompt is not None or output is not None:
        item.usage = Usage(input_tokens=prompt, output_tokens=output)
    item.server_timings = from_ollama(obj)
    item.done = True
    return item


class OllamaChatDecoder:
    """`/api/chat` lines: answer text in `message.content`, reasoning in
    `message.thinking`."""

    __slots__ = ()

    def decode(self, frame: Frame) -> StreamItem:
        obj = _parse(frame)
        item = StreamItem()
        message = obj.get("message")
        if isinstance(message, dict):
            item.text = text(message.get("content"))
            item.reasoning = text(message.get("thinking"))
        return _end(obj, item)


class OllamaGenerateDecoder:
    """`/api/generate` lines: answer text in `response`, reasoning in `thinking`."""

    __slots__ = ()

    def decode(self, frame: Frame) -> StreamItem:
        obj = _parse(frame)
        item = StreamItem(text=text(obj.get("response")), reasoning=text(obj.get("thinking")))
        return _end(obj, item)


CHAT = ProtocolSpec(
    name="ollama-chat",
    model=OllamaChatTarget,
    build_request=build_chat_request,
    new_decoder=OllamaChatDecoder,
    new_framer=NDJSONFramer,
    otel_provider="ollama",
    otel_operation="chat",
)
"""Ollama chat: `POST {url}/api/chat`, NDJSON ending with the `done: true` line."""

GENERATE = ProtocolSpec(
    name="ollama-generate",
    model=OllamaGenerateTarget,
    build_request=build_generate_request,
    new_decoder=OllamaGenerateDecoder,
    new_framer=NDJSONFramer,
    otel_provider="ollama",
    otel_operation="text_completion",
)
"""Ollama generate: `POST {url}/api/generate`, NDJSON ending with the `done: true` line."""
