"""Reading a stream event's JSON, shared by the protocol decoders: one event's data as
a JSON object (anything else is a `protocol` failure), the lenient field readers (a
field of the wrong type reads as absent, never as a crash), and the named-event
helpers of the SSE protocols whose data repeats the event name in `type` (Anthropic,
OpenAI Responses)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.framing import Frame

__all__ = [
    "as_object",
    "error_text",
    "named_event",
    "number",
    "parse_object",
    "text",
]

# orjson parses an event about 3x faster than json; it is on the hot path of every token.
_loads: Callable[[str | bytes], Any] = orjson.loads


def parse_object(data: str, *, unit: str = "stream event") -> dict[str, Any]:
    """The JSON object in `data`; malformed JSON or another JSON type is a `protocol`
    failure. `unit` names what the data is in the message ("stream line" for NDJSON)."""
    try:
        obj = _loads(data)
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
    return f"error in stream: {error}" if error else "error event in stream"


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
