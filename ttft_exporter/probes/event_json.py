"""Reading a stream event's JSON, shared by the protocol decoders: one event's data as
a JSON object (anything else is a `protocol` failure; an event with more containers
than MAX_EVENT_CONTAINERS is refused before it is parsed), the lenient field readers (a
field of the wrong type reads as absent, never as a crash), a server's JSON value as
text for a failure detail (`server_text`, never recursing), and the named-event
helpers of the SSE protocols whose data repeats the event name in `type` (Anthropic,
OpenAI Responses)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.framing import Frame

__all__ = [
    "MAX_EVENT_CONTAINERS",
    "as_object",
    "error_text",
    "load_event",
    "named_event",
    "number",
    "parse_object",
    "server_text",
    "text",
]

MAX_EVENT_CONTAINERS = 10_000
"""Most JSON objects and arrays one stream event may hold. An LLM event holds tens (a
chunk with top logprobs, a final event with usage details); a hostile one of 1 MiB holds
350,000 (`[[],[],...]`), and building that many containers runs the garbage collector
over the whole heap again and again: measured 0.4-0.8 s of a blocked event loop per
event in a running exporter, against 20 ms for the same bytes without containers."""


def load_event(data: str) -> Any:
    """The JSON value of one stream event. Raises orjson.JSONDecodeError when it is not
    JSON, and ProbeFailure(PROTOCOL) when it holds more than MAX_EVENT_CONTAINERS
    objects and arrays, before building any of them."""
    # Counted only where there can be that many (each takes 2 characters at least):
    # the hot path of a small event is one comparison. An over-count from brackets
    # inside strings needs 10,000 of them in one event, which no answer streams.
    if len(data) > 2 * MAX_EVENT_CONTAINERS and (
        data.count("{") + data.count("[") > MAX_EVENT_CONTAINERS
    ):
        raise ProbeFailure(
            FailureReason.PROTOCOL,
            f"stream event with more than {MAX_EVENT_CONTAINERS} JSON objects and arrays",
        )
    # orjson parses an event about 3x faster than json; it is on the hot path of every token.
    return orjson.loads(data)


def server_text(value: Any) -> str:
    """A JSON value a server sent (an error message, code or object), as text for a
    failure detail: a string as it is, anything else as compact JSON, or its type name
    when too deep for that. Never str() or repr(): a server's object may nest as deep
    as the JSON parser allows (1024 levels), and Python's repr of that raises
    RecursionError, which would pass for a bug of the exporter (`internal`).
    Not cut here: the engine redacts secrets first, then bounds the detail."""
    if isinstance(value, str):
        return value
    try:
        # orjson: C, linear, and it refuses (rather than recurses) past its depth limit.
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return f"<{type(value).__name__}>"


def parse_object(data: str, *, unit: str = "stream event") -> dict[str, Any]:
    """The JSON object in `data`; malformed JSON, another JSON type or too many
    containers (load_event) is a `protocol` failure. `unit` names what the data is in
    the message ("stream line" for NDJSON)."""
    try:
        obj = load_event(data)
    except orjson.JSONDecodeError:
        # The data may hold an echoed secret: the engine redacts, then cuts, the excerpt.
        raise ProbeFailure(
            FailureReason.PROTOCOL, "malformed JSON in stream", excerpt=data
        ) from None
    if not isinstance(obj, dict):
        raise ProbeFailure(FailureReason.PROTOCOL, f"{unit} is not a JSON object", excerpt=data)
    return obj


def number(value: Any) -> int | float | None:
    """A token count as reported, negative or fractional included: check_usage judges
    it, so an absurd count is rejected and counted rather than silently dropped."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def error_text(error: Any, detail: Callable[[dict[str, Any]], str]) -> str:
    """`error in stream: <message> (<detail>)` for an error object (`detail(error)`
    names its type or code; nothing when empty), the value itself otherwise. Not cut
    here: the engine redacts secrets first, then bounds the detail."""
    if isinstance(error, dict):
        message = text(error.get("message")) or "error"
        extra = detail(error)
        return f"error in stream: {message}" + (f" ({extra})" if extra else "")
    return f"error in stream: {server_text(error)}" if error else "error event in stream"


def named_event(
    frame: Frame, describe_error: Callable[[dict[str, Any]], str]
) -> tuple[Any, dict[str, Any]]:
    """The event's type and object. The type is the SSE event name, or the data's
    `type` when a proxy dropped the `event:` lines; an `error` event (by either) is a
    `stream_error` failure described by `describe_error(obj)`."""
    obj = parse_object(frame.data)
    kind = frame.event or obj.get("type")
    if kind == "error" or obj.get("type") == "error":
        raise ProbeFailure(FailureReason.STREAM_ERROR, describe_error(obj))
    return kind, obj
