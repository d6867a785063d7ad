"""Hugging Face Text Generation Inference's native streaming API: the config model,
request body and pure event decoder of `POST {url}/generate_stream` (llm-streaming.md
§A.5), and its registry entry. SSE written as `data:{json}` (no space), one event per
token, no `[DONE]`: the stream ends with the event carrying `generated_text` (and, as
requested, `details`). Auth: `Authorization: Bearer <key>` (the TargetBase default;
Hugging Face Inference Endpoints and TGI's `--api-key`).

The stream carries no server timings: `details` holds counts and the finish reason
only, and TGI's `x-*-time` headers are set on the non-streaming `/generate` route."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, field_validator

from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.base import HTTPRequest, ProtocolSpec, StreamItem, Usage
from ttft_exporter.probes.event_json import number, parse_object, server_text
from ttft_exporter.probes.framing import Frame, SSEFramer
from ttft_exporter.targets import TargetBase

__all__ = ["FINAL_WITHOUT_DETAILS", "TGI", "TGIDecoder", "TGITarget", "build_request"]

FINAL_WITHOUT_DETAILS = "<final event without details>"
"""The finish reason of a final event without `details` (`parameters.details` turned
off, or a proxy that drops it). The stream is complete, so it is not a truncation; the
reason is unknown, so it is counted as `other` (no known reason matches this text)."""


class TGITarget(TargetBase):
    """A streaming TGI endpoint (`POST {url}/generate_stream`). TGI serves one model:
    `model` names it for the `model` label and is not sent."""

    protocol: Literal["tgi"]
    prompt: str = Field(min_length=1, description="The `inputs` text.")

    @field_validator("extra_body")
    @classmethod
    def _no_max_new_tokens(cls, value: dict[str, Any]) -> dict[str, Any]:
        # max_tokens is sent as parameters.max_new_tokens and bounds the plausible usage
        # (check_usage); a second limit in extra_body would silently override it.
        parameters = value.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise ValueError("parameters must be a mapping (TGI's generation parameters)")
        if isinstance(parameters, dict) and "max_new_tokens" in parameters:
            raise ValueError(
                "parameters.max_new_tokens: set max_tokens instead (sent as max_new_tokens)"
            )
        return value


def build_request(target: TGITarget, nonce: str | None) -> HTTPRequest:
    """The `/generate_stream` request for one probe."""
    extra = dict(target.extra_body)
    # details: the final event then carries finish_reason and generated_tokens.
    # Merged, not replaced: extra_body may set other parameters (temperature, ...).
    parameters = {"max_new_tokens": target.max_tokens, "details": True}
    parameters.update(extra.pop("parameters", {}))
    body = {
        "inputs": f"{nonce} {target.prompt}" if nonce else target.prompt,
        "parameters": parameters,
        **extra,
    }
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    headers.update(target.request_headers())
    headers.update(target.auth_headers())
    url = target.url
    return HTTPRequest(
        url=url if url.endswith("/generate_stream") else f"{url}/generate_stream",
        headers=headers,
        body=json.dumps(body).encode(),
    )


class TGIDecoder:
    """`/generate_stream` events: text in `token.text`, except special tokens (`<s>`,
    `</s>`, template tokens: `token.special: true`), which are not generated text. The
    event with `generated_text` (or `details`) is the last: its `details` give the
    finish reason and the token counts. An `error` field is a stream error."""

    __slots__ = ()

    def decode(self, frame: Frame) -> StreamItem:
        obj = parse_object(frame.data)
        error = obj.get("error")
        if error:
            kind = obj.get("error_type")
            suffix = f" ({kind})" if isinstance(kind, str) and kind else ""
            raise ProbeFailure(
                FailureReason.STREAM_ERROR, f"error in stream: {server_text(error)}{suffix}"
            )
        item = StreamItem()
        token = obj.get("token")
        if isinstance(token, dict) and token.get("special") is not True:
            text = token.get("text")
            item.text = text if isinstance(text, str) else ""
        details = obj.get("details")
        if obj.get("generated_text") is None and details is None:
            return item
        item.done = True
        if not isinstance(details, dict):
            item.finish_reason = FINAL_WITHOUT_DETAILS
            return item
        reason = details.get("finish_reason")
        if isinstance(reason, str) and reason:
            item.finish_reason = reason
        else:
            # A value of another JSON type is kept as its type name: counted as `other`.
            item.finish_reason = f"<{type(reason).__name__}>"
        generated = number(details.get("generated_tokens"))
        prompt = number(details.get("input_length"))
        if generated is not None or prompt is not None:
            item.usage = Usage(input_tokens=prompt, output_tokens=generated)
        return item


TGI = ProtocolSpec(
    name="tgi",
    model=TGITarget,
    build_request=build_request,
    new_decoder=TGIDecoder,
    new_framer=SSEFramer,
    otel_provider="tgi",
    otel_operation="text_completion",
)
"""TGI: `POST {url}/generate_stream`, SSE ending with the `generated_text` event."""
