"""Google Gemini streaming (llm-streaming.md §A.6): the config model, request body and
pure event decoder of `:streamGenerateContent?alt=sse`, for both URL forms.

- Gemini API: `url: https://generativelanguage.googleapis.com/v1beta`, the API key in
  `x-goog-api-key` (`api_key_env` / `api_key_file`).
- Vertex AI: `url: https://{l}-aiplatform.googleapis.com/v1/projects/{p}/locations/{l}/publishers/google`,
  an OAuth access token sent as `Authorization: Bearer`, read from `access_token_file`
  before every probe (tokens live an hour; whatever refreshes the file, the next probe
  uses the new one).

The request is `POST {url}/models/{model}:streamGenerateContent?alt=sse`. Without
`alt=sse` the server streams one JSON array instead of SSE: the engine fails that with
`protocol` at its first byte, and this model refuses at load a URL that would carry
a query of its own.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, PrivateAttr, SecretStr, ValidationInfo, field_validator, model_validator
from yarl import URL

from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.base import HTTPRequest, ProtocolSpec, StreamItem, Usage
from ttft_exporter.probes.event_json import number, parse_object, server_text
from ttft_exporter.probes.framing import Frame, SSEFramer
from ttft_exporter.redact import Redactor
from ttft_exporter.targets import TargetBase, forbidden_in_header
from ttft_exporter.validation import (
    SECRET_FILE_LIMIT,
    ConfigPath,
    field_rule,
    read_bounded,
    read_file_secret,
)

__all__ = [
    "GEMINI",
    "GeminiDecoder",
    "GeminiTarget",
    "TokenFile",
    "build_request",
]

log = logging.getLogger("ttft_exporter.probe")

# A model id as both APIs spell it (`gemini-2.5-flash`, `gemini-2.0-flash-001`,
# Vertex's `model@version`): it becomes a path segment, so nothing that could bend the
# URL (`/`, `?`, `#`, `:`, `%`) is allowed.
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_ACTION = ":streamGenerateContent"


def _bad_header_value(value: str) -> bool:
    # A header value with a control character would be refused by the client at send
    # time (a ValueError on every probe, reported as `internal`).
    return forbidden_in_header(value)


class TokenFile:
    """The Vertex access token, read from its file before every probe.

    A mutable holder, so the loaded (frozen) config is never mutated. The redactor
    covers the target's other secrets, the current token and the one before it (a
    probe started with it may still be reporting). A file that cannot be read keeps
    the last token and logs why: a refresher that replaces the file non-atomically
    leaves it missing or empty for an instant, and an expired token fails the probe
    with the server's 401 anyway (`http_status`).
    """

    __slots__ = ("_base", "_path", "_previous", "_token", "redactor")

    def __init__(self, path: Path, token: str, base: tuple[str, ...]) -> None:
        self._path = path
        self._base = base
        self._token = token
        self._previous: str | None = None
        self.redactor = Redactor([*base, token])

    def current(self) -> str:
        """The token in the file now (bounded read: a regular file of at most 64 KiB,
        opened non-blocking, so a FIFO or /dev/zero cannot stall the loop)."""
        try:
            token = read_bounded(self._path, SECRET_FILE_LIMIT).decode("utf-8").strip()
            problem = None if token else "file is empty"
            if _bad_header_value(token):
                problem = "token contains CR, LF, NUL or another control character"
        except OSError as exc:
            token, problem = "", f"cannot read: {exc.strerror}"
        except UnicodeDecodeError:
            token, problem = "", "not UTF-8 text"
        except ValueError as exc:  # read_bounded's own message: names no content
            token, problem = "", str(exc)
        if problem is not None:
            log.warning(
                "access_token_file %s: %s; the last token read is sent", self._path, problem
            )
            return self._token
        if token != self._token:
            self._previous, self._token = self._token, token
            self.redactor = Redactor([*self._base, token, self._previous])
        return token


class GeminiTarget(TargetBase):
    """A Gemini API or Vertex AI streaming endpoint
    (`POST {url}/models/{model}:streamGenerateContent?alt=sse`)."""

    auth_header: ClassVar[str] = "x-goog-api-key"
    auth_scheme: ClassVar[str] = ""  # the key alone

    protocol: Literal["gemini"]
    prompt: str = Field(min_length=1, description="User prompt.")
    system_instruction: str | None = Field(
        None, min_length=1, description="Optional systemInstruction text."
    )
    include_thoughts: bool = Field(
        False,
        description=(
            "Ask thinking models to stream thought summaries (thinkingConfig."
            "includeThoughts): TTFT then counts the first thought, TTFOT the first "
            "answer text. Off: thinking is hidden and TTFT is the first answer text."
        ),
    )
    access_token_file: ConfigPath | None = Field(
        None,
        validate_default=True,
        description=(
            "Vertex AI: file holding an OAuth access token, sent as `Authorization: "
            "Bearer`; re-read before every probe. Instead of api_key_env/api_key_file."
        ),
    )

    _token_file: TokenFile | None = PrivateAttr(None)

    @field_validator("url")
    @classmethod
    def _gemini_url(cls, value: str) -> str:
        url = URL(value)  # an absolute http(s) URL: TargetBase's validator ran first
        if url.raw_query_string or url.raw_fragment:
            raise ValueError(
                "must not carry a query or fragment: the probe requests "
                "{url}/models/{model}:streamGenerateContent?alt=sse, and without "
                "alt=sse (alt=json, say) the server answers with a JSON array, not a stream"
            )
        if ":" in url.raw_path.rsplit("/", 1)[-1] or url.raw_path.rstrip("/").endswith("/models"):
            raise ValueError(
                "give the base URL (https://generativelanguage.googleapis.com/v1beta, or "
                "https://LOCATION-aiplatform.googleapis.com/v1/projects/P/locations/L/"
                "publishers/google): the probe appends /models/{model}:streamGenerateContent"
            )
        return value

    @field_validator("model")
    @classmethod
    def _gemini_model(cls, value: str) -> str:
        if not _MODEL.fullmatch(value.removeprefix("models/")):
            raise ValueError(
                "must be a model id such as gemini-2.5-flash (letters, digits, . _ @ -)"
            )
        return value

    @field_validator("extra_body")
    @classmethod
    def _no_max_output_tokens(cls, value: dict[str, Any]) -> dict[str, Any]:
        config = value.get("generationConfig")
        if isinstance(config, dict) and "maxOutputTokens" in config:
            # The usage plausibility check is judged against max_tokens.
            raise ValueError("set max_tokens, not generationConfig.maxOutputTokens")
        return value

    @field_validator("access_token_file")
    @classmethod
    def _token_source(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        if info.data.get("api_key_env") or info.data.get("api_key_file"):
            raise field_rule(
                "access_token_file",
                "set access_token_file (Vertex AI) or api_key_env/api_key_file "
                "(Gemini API), not both",
            )
        if any(h.lower() == "authorization" for h in info.data.get("headers", {})):
            raise field_rule(
                "headers",
                "Authorization is set by access_token_file; do not set both",
                sibling=True,
            )
        # Read now as well: a missing or empty file is a config error, not a failing probe.
        token = read_file_secret("access_token_file", value, info)
        if token is not None and _bad_header_value(token.get_secret_value()):
            raise field_rule(
                "access_token_file", "token contains CR, LF, NUL or another control character"
            )
        return value

    @model_validator(mode="after")
    def _resolve_token(self, info: ValidationInfo) -> Self:
        if self.access_token_file is None:
            return self
        token: SecretStr | None = read_file_secret(
            "access_token_file", self.access_token_file, info
        )
        if token is not None:
            self._token_file = TokenFile(
                Path(self.access_token_file),
                token.get_secret_value(),
                tuple(super().redactor.secrets),
            )
        return self

    @property
    def redactor(self) -> Redactor:
        """The target's secrets, the current Vertex access token included."""
        if self._token_file is not None:
            return self._token_file.redactor
        return super().redactor

    def secrets(self) -> list[str]:
        return list(self.redactor.secrets)

    def auth_headers(self) -> dict[str, str]:
        """`x-goog-api-key` (Gemini API) or `Authorization: Bearer` with the token
        read from access_token_file now (Vertex AI). Never log them."""
        if self._token_file is not None:
            return {"Authorization": f"Bearer {self._token_file.current()}"}
        return super().auth_headers()


def _model_id(model: str) -> str:
    return model.removeprefix("models/")


def build_request(target: GeminiTarget, nonce: str | None) -> HTTPRequest:
    """The streaming generateContent request for one probe."""
    prompt = f"{nonce} {target.prompt}" if nonce else target.prompt
    generation: dict[str, Any] = {"maxOutputTokens": target.max_tokens}
    if target.include_thoughts:
        generation["thinkingConfig"] = {"includeThoughts": True}
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": generation,
    }
    if target.system_instruction is not None:
        body["systemInstruction"] = {"parts": [{"text": target.system_instruction}]}
    for key, value in target.extra_body.items():
        # One level deep for objects we fill in (generationConfig: temperature, ...),
        # so extra_body adds to them rather than dropping maxOutputTokens.
        mine = body.get(key)
        body[key] = (
            {**mine, **value} if isinstance(mine, dict) and isinstance(value, dict) else value
        )
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    headers.update(target.request_headers())
    headers.update(target.auth_headers())
    return HTTPRequest(
        url=f"{target.url}/models/{_model_id(target.model)}{_ACTION}?alt=sse",
        headers=headers,
        body=json.dumps(body).encode(),
    )


# Gemini's finish reasons (UPPERCASE, types.py FinishReason) as the core's spellings;
# anything else (LANGUAGE, OTHER, MALFORMED_FUNCTION_CALL, FINISH_REASON_UNSPECIFIED,
# a future value) stays raw and counts as `other`.
_FINISH: dict[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        # As text before any comparison: equality of two deep objects recurses too.
        message = server_text(error.get("message") or error.get("status") or "error")
        extra = ", ".join(
            text
            for text in (server_text(v) for v in (error.get("code"), error.get("status")) if v)
            if text != message
        )
        # Not cut here: the engine redacts secrets first, then bounds the detail.
        return f"error in stream: {message}" + (f" ({extra})" if extra else "")
    return f"error in stream: {server_text(error)}"


class GeminiDecoder:
    """`GenerateContentResponse` events. Text is `candidates[0].content.parts[].text`;
    parts with `thought: true` are reasoning; parts with only a `thoughtSignature` or
    an empty text carry nothing. There is no terminator: a stream is complete with a
    `finishReason` (or a blocked prompt's `promptFeedback.blockReason`), and ends at EOF
    or at its final event (below).

    The end: Gemini's last event carries the `finishReason` and the final
    `usageMetadata` together (llm-streaming.md §A.6). That event, after text, ends the
    stream as `[DONE]` does OpenAI's: a server holding the connection open after it is
    not read to the deadline. After a `finishReason` without usage in its event, the
    next event with usage ends it (usage in an event of its own; the budget and the
    token counters want the server's count), else EOF does, as before. A
    `finishReason` before any text (a translating proxy marks empty chunks so) ends
    nothing: the text may still follow.

    Usage: `candidatesTokenCount` excludes thinking, while the core's output tokens
    include reasoning (as OpenAI's completion_tokens do), so output is candidates +
    thoughts. Counts are kept across events: a later report that gives only one of
    them must not drop the other from the sum."""

    __slots__ = ("_candidates", "_finished", "_text_seen", "_thoughts")

    def __init__(self) -> None:
        self._candidates: int | float | None = None
        self._thoughts: int | float | None = None
        self._text_seen = False
        self._finished = False  # a finishReason came after text

    def decode(self, frame: Frame) -> StreamItem | None:
        obj = _parse(frame.data)
        item = StreamItem(usage=self._usage(obj.get("usageMetadata")))
        feedback = obj.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            item.finish_reason = "content_filter"
        candidates = obj.get("candidates")
        if candidates is None or candidates == []:
            return self._end(item)
        if not isinstance(candidates, list) or not isinstance(candidates[0], dict):
            raise ProbeFailure(FailureReason.PROTOCOL, "`candidates` is not a list of objects")
        candidate: dict[str, Any] = candidates[0]
        self._parts(candidate.get("content"), item)
        self._text_seen = self._text_seen or bool(item.text or item.reasoning)
        finish = candidate.get("finishReason")
        if isinstance(finish, str) and finish:
            item.finish_reason = _FINISH.get(finish, finish)
        elif finish is not None and finish != "":
            # Another JSON type: no known reason matches its type name, so `other`.
            item.finish_reason = f"<{type(finish).__name__}>"
        return self._end(item)

    def _end(self, item: StreamItem) -> StreamItem:
        """`item`, marked done when the answer is over and its final usage is in."""
        if item.finish_reason is not None and self._text_seen:
            self._finished = True
        item.done = self._finished and item.usage is not None
        return item

    @staticmethod
    def _parts(content: Any, item: StreamItem) -> None:
        if not isinstance(content, dict):
            return
        parts = content.get("parts")
        if not isinstance(parts, list):
            return
        text: list[str] = []
        thought: list[str] = []
        for part in parts:
            if not isinstance(part, dict):
                continue
            value = part.get("text")
            if not isinstance(value, str) or not value:
                continue  # thoughtSignature-only, functionCall, inlineData, empty
            (thought if part.get("thought") is True else text).append(value)
        item.text = "".join(text)
        item.reasoning = "".join(thought)

    def _usage(self, meta: Any) -> Usage | None:
        if not isinstance(meta, dict):
            return None
        candidates = number(meta.get("candidatesTokenCount"))
        thoughts = number(meta.get("thoughtsTokenCount"))
        if candidates is not None:
            self._candidates = candidates
        if thoughts is not None:
            self._thoughts = thoughts
        output = None
        if candidates is not None or thoughts is not None:
            output = (self._candidates or 0) + (self._thoughts or 0)
        return Usage(
            input_tokens=number(meta.get("promptTokenCount")),
            output_tokens=output,
            reasoning_tokens=thoughts,
        )


def _parse(data: str) -> dict[str, Any]:
    obj = parse_object(data)
    error = obj.get("error")
    if error:
        raise ProbeFailure(FailureReason.STREAM_ERROR, _error_text(error))
    return obj


GEMINI = ProtocolSpec(
    name="gemini",
    model=GeminiTarget,
    build_request=build_request,
    new_decoder=GeminiDecoder,
    new_framer=SSEFramer,
    terminated=False,  # no [DONE]: complete with a finishReason, ended by EOF
    otel_provider="gcp.gemini",
    otel_operation="generate_content",
)
"""Gemini API and Vertex AI `:streamGenerateContent?alt=sse`."""
