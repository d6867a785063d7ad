"""Pure decoding of Flux WebSocket frames (flux-api.md §2.2): text in, typed records
out. Unknown types and malformed frames are reported, never raised past the caller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

__all__ = [
    "EntityDeleted",
    "MalformedFrameError",
    "MetricsUpdate",
    "StateUpdate",
    "UnknownMessage",
    "decode_frame",
    "parse_timestamp",
]


class MalformedFrameError(ValueError):
    """A frame that is not a JSON object of a known shape."""


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
    """One changed property of one entity."""

    entity_id: str
    property: str
    value: Any
    timestamp: str


@dataclass(frozen=True, slots=True)
class EntityDeleted:
    """An entity was removed."""

    entity_id: str


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """A JSON object with a `type` this client does not know (forward compatibility)."""

    type: str


def _int(obj: Any, key: str) -> int | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _metrics(obj: dict[str, Any]) -> MetricsUpdate:
    events = obj.get("events")
    rate = events.get("rate_per_second") if isinstance(events, dict) else None
    rate_value = (
        float(rate) if isinstance(rate, int | float) and not isinstance(rate, bool) else None
    )
    update = MetricsUpdate(
        entities=_int(obj.get("entities"), "total"),
        events_total=_int(events, "total"),
        rate_per_second=rate_value,
        websocket_connections=_int(obj.get("websocket"), "connections"),
        publishers_active=_int(obj.get("publishers"), "active"),
        complete=True,
    )
    if None in (
        update.entities,
        update.events_total,
        update.rate_per_second,
        update.websocket_connections,
        update.publishers_active,
    ):
        return MetricsUpdate(
            update.entities,
            update.events_total,
            update.rate_per_second,
            update.websocket_connections,
            update.publishers_active,
            False,
        )
    return update


def decode_frame(
    frame: str | bytes,
) -> MetricsUpdate | StateUpdate | EntityDeleted | UnknownMessage:
    """Decode one text frame. Raises MalformedFrameError."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise MalformedFrameError("not JSON") from None
    if not isinstance(obj, dict):
        raise MalformedFrameError("not a JSON object")
    kind = obj.get("type")
    if kind == "state_update":
        entity, prop, ts = obj.get("entity_id"), obj.get("property"), obj.get("timestamp")
        if not isinstance(entity, str) or not isinstance(prop, str) or not isinstance(ts, str):
            raise MalformedFrameError("state_update without entity_id, property or timestamp")
        return StateUpdate(entity, prop, obj.get("value"), ts)
    if kind == "metrics_update":
        return _metrics(obj)
    if kind == "entity_deleted":
        entity = obj.get("entity_id")
        if not isinstance(entity, str):
            raise MalformedFrameError("entity_deleted without entity_id")
        return EntityDeleted(entity)
    if isinstance(kind, str):
        return UnknownMessage(kind)
    raise MalformedFrameError("no type")


def parse_timestamp(text: str) -> float | None:
    """Unix seconds of Flux's RFC 3339 timestamps (`…Z` or `+00:00`, up to 9
    fractional digits); None if unparsable."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
