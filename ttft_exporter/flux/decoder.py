"""Pure decoding of Flux WebSocket frames (flux-api.md §2.2): text in, typed records
out. Every input decodes to a value, never to an exception: a frame that is not a JSON
object of a known shape, or that carries a value no Flux sends (a negative or non-integer
counter, an absurd or over-long timestamp, a wrong type), is a `Malformed` record."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ttft_exporter.errors import FluxValueError

__all__ = [
    "EntityDeleted",
    "Malformed",
    "MetricsUpdate",
    "StateUpdate",
    "UnknownMessage",
    "decode_frame",
    "parse_timestamp",
]

# Flux's counters are u64, our counters float64: above 2^53 increments stop being
# exact, and no real instance gets there (285 years at a million events per second).
MAX_COUNT = 2**53
# chrono writes at most 35 characters ("2026-02-14T10:30:45.123456789+00:00"); anything
# much longer is not a Flux timestamp, and bounding it bounds the parse.
_MAX_TIMESTAMP_CHARS = 40
# Timestamps outside 2000..2100 are absurd for a live server; observing them would put
# decades into the lag histogram's sum for good.
_MIN_TIMESTAMP = 946_684_800.0
_MAX_TIMESTAMP = 4_102_444_800.0
# The UTC forms Flux writes, with at most 9 fractional digits (nanoseconds). ASCII
# only: str.isdigit() and \d would accept other scripts' digits.
_UTC = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(?:Z|\+00:00)", re.ASCII)
# Any other numeric offset: valid RFC 3339, though not what Flux writes.
_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?[+-]\d{2}:\d{2}", re.ASCII)
_CACHE_LIMIT = 64


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame this client cannot use; `why` is a fixed text for debug logs."""

    why: str


@dataclass(frozen=True, slots=True)
class MetricsUpdate:
    """Flux's periodic metrics. A field Flux did not send is None; `complete` says
    whether every documented field was there."""

    entities: int | None
    events_total: int | None
    rate_per_second: float | None
    websocket_connections: int | None
    publishers_active: int | None
    complete: bool


@dataclass(frozen=True, slots=True)
class StateUpdate:
    """One changed property of one entity; `sent` is Flux's apply time (Unix seconds)."""

    entity_id: str
    property: str
    value: Any
    sent: float


@dataclass(frozen=True, slots=True)
class EntityDeleted:
    """An entity was removed."""

    entity_id: str


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """A JSON object with a `type` this client does not know (forward compatibility)."""

    type: str


Message = MetricsUpdate | StateUpdate | EntityDeleted | UnknownMessage | Malformed


def _count(obj: dict[str, Any], group: str, key: str) -> int | None:
    """`obj[group][key]` as a count: None if absent, FluxValueError if not a count."""
    nested = obj.get(group)
    if nested is None:
        return None
    if not isinstance(nested, dict):
        raise FluxValueError
    value = nested.get(key)
    if value is None:
        return None
    # bool is an int in Python; a float (even 5.0) is not what Flux's u64 serializes to.
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        raise FluxValueError
    return value


def _rate(obj: dict[str, Any]) -> float | None:
    events = obj.get("events")
    value = events.get("rate_per_second") if isinstance(events, dict) else None
    if value is None:
        return None
    if type(value) not in (int, float):
        raise FluxValueError
    rate = float(value)
    if not math.isfinite(rate) or not 0.0 <= rate <= MAX_COUNT:
        raise FluxValueError
    return rate


def _metrics(obj: dict[str, Any]) -> MetricsUpdate | Malformed:
    try:
        fields = (
            _count(obj, "entities", "total"),
            _count(obj, "events", "total"),
            _rate(obj),
            _count(obj, "websocket", "connections"),
            _count(obj, "publishers", "active"),
        )
    except FluxValueError:
        # One lying field makes the whole frame suspect: applying the others (or the
        # events.total baseline) from it would spread the damage.
        return Malformed("metrics_update with a value that is not a count")
    entities, total, rate, connections, publishers = fields
    return MetricsUpdate(
        entities, total, rate, connections, publishers, complete=None not in fields
    )


def decode_frame(frame: str | bytes) -> Message:
    """Decode one text frame; never raises."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return Malformed("not JSON")
    if not isinstance(obj, dict):
        return Malformed("not a JSON object")
    kind = obj.get("type")
    if kind == "state_update":
        entity, prop, ts = obj.get("entity_id"), obj.get("property"), obj.get("timestamp")
        if not isinstance(entity, str) or not isinstance(prop, str) or not isinstance(ts, str):
            return Malformed("state_update without entity_id, property or timestamp")
        sent = parse_timestamp(ts)
        if sent is None:
            return Malformed("state_update with an invalid timestamp")
        return StateUpdate(entity, prop, obj.get("value"), sent)
    if kind == "metrics_update":
        return _metrics(obj)
    if kind == "entity_deleted":
        entity = obj.get("entity_id")
        if not isinstance(entity, str):
            return Malformed("entity_deleted without entity_id")
        return EntityDeleted(entity)
    if isinstance(kind, str):
        return UnknownMessage(kind)
    return Malformed("no type")


_SECOND_CACHE: dict[str, float] = {}


def parse_timestamp(text: str) -> float | None:
    """Unix seconds of a Flux RFC 3339 timestamp (`…Z` or `+00:00`, up to 9 fractional
    digits), or None if it is over-long, unparsable, without an offset, or outside
    2000..2100. At high rates thousands of updates share one second, so the parse of
    the whole-second part is cached."""
    if len(text) > _MAX_TIMESTAMP_CHARS:
        return None
    match = _UTC.fullmatch(text)
    if match is None:
        return _parse_other(text)
    head, digits = match.group(1), match.group(2)
    base = _SECOND_CACHE.get(head)
    if base is None:
        try:
            base = datetime.fromisoformat(head + "+00:00").timestamp()
        except ValueError:
            return None
        if len(_SECOND_CACHE) >= _CACHE_LIMIT:
            _SECOND_CACHE.clear()
        _SECOND_CACHE[head] = base
    value = base + (int(digits) / 10 ** len(digits) if digits else 0.0)
    return value if _MIN_TIMESTAMP <= value <= _MAX_TIMESTAMP else None


def _parse_other(text: str) -> float | None:
    """Other RFC 3339 offsets (not what Flux writes, but not wrong); bounded input.
    A time without an offset is a local time of an unknown zone: rejected."""
    if _OFFSET.fullmatch(text) is None:
        return None
    try:
        value = datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError):
        return None
    return value if _MIN_TIMESTAMP <= value <= _MAX_TIMESTAMP else None
