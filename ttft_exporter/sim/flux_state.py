"""Pure core of the Flux simulator: envelope decoding and validation with Flux's exact
error texts, auth and rate-limit rules, the state engine and the wire renderings.
No I/O here; ``ttft_exporter.sim.flux`` wires it to aiohttp (flux-api.md §1-§4)."""

from __future__ import annotations

import functools
import json
import os
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NoReturn

__all__ = [
    "DELETION_SOURCE",
    "DELETION_STREAM",
    "RATE_WINDOW_MS",
    "AuthError",
    "DecodeError",
    "DeleteFilter",
    "DeletionAuthError",
    "Entity",
    "EntityDeleted",
    "EntityIdError",
    "FluxEvent",
    "JSONDataError",
    "MetricsSnapshot",
    "RateLimiter",
    "StateChange",
    "StateEngine",
    "StateUpdate",
    "TokenError",
    "ValidationError",
    "authorize_deletion",
    "authorize_event",
    "compact_json",
    "decode_batch",
    "decode_delete_filter",
    "decode_event",
    "extract_bearer_token",
    "format_rfc3339",
    "parse_client_message",
    "parse_entity_id",
    "rust_debug",
    "sort_json",
    "subject_for",
    "tombstone_event",
    "uuid7",
    "validate_and_prepare",
    "validate_namespace_name",
]

# NOTE: src/api/deletion.rs builds tombstones with stream "flux.deletions" (published on
# subject "flux.events.flux.deletions"); flux-api.md §1.5 writes "flux.events.deletions".
DELETION_STREAM = "flux.deletions"
DELETION_SOURCE = "api"
RATE_WINDOW_MS = 5000

_STREAM_RE = re.compile(r"[a-z0-9]+(?:\.[a-z0-9]+)*", re.ASCII)
_NAMESPACE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_WHITESPACE = " \t\n\r"
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1
_U64_MAX = 2**64 - 1
_RUST_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\0": "\\0",
}
_SYNTAX_MESSAGES = (
    ("Expecting value", "expected value"),
    ("Expecting ',' delimiter", "expected `,` or `}`"),
    ("Expecting ':' delimiter", "expected `:`"),
    ("Expecting property name", "key must be a string"),
    ("Invalid control character", "control character (\\u0000-\\u001F) found"),
    ("Invalid \\escape", "invalid escape"),
    ("Invalid \\u", "invalid escape"),
    ("Extra data", "trailing characters"),
)

JSONValue = Any
"""Any value ``json.loads`` can return."""


# --------------------------------------------------------------------------- helpers


def compact_json(value: JSONValue) -> str:
    """Serialise like serde_json: compact separators, non-ASCII kept as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def sort_json(value: JSONValue) -> JSONValue:
    """Sort object keys recursively, as serde_json's BTreeMap-backed ``Value`` does."""
    if isinstance(value, dict):
        return {key: sort_json(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sort_json(item) for item in value]
    return value


def rust_debug(text: str) -> str:
    """Quote ``text`` the way Rust's ``{:?}`` formats a ``&str``."""
    out = ['"']
    for char in text:
        escaped = _RUST_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif not char.isprintable():
            out.append(f"\\u{{{ord(char):x}}}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


@functools.lru_cache(maxsize=8)
def _second_prefix(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def format_rfc3339(ns: int, *, zulu: bool) -> str:
    """Render Unix nanoseconds as RFC3339 with 9 fractional digits.

    ``zulu`` selects the ``Z`` suffix (chrono's serde form, used in WS frames) over
    ``+00:00`` (``to_rfc3339()``, used by ``lastUpdated``).
    """
    seconds, fraction = divmod(ns, 1_000_000_000)
    suffix = "Z" if zulu else "+00:00"
    return f"{_second_prefix(seconds)}.{fraction:09d}{suffix}"


def uuid7() -> str:
    """A random UUIDv7 string (48-bit Unix ms timestamp, version 7, RFC 4122 variant)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & (2**48 - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & (2**62 - 1)
    return str(uuid.UUID(int=value))


def subject_for(stream: str) -> str:
    """The NATS subject Flux publishes an event of ``stream`` to."""
    return f"flux.events.{stream}"


# --------------------------------------------------------------------- event decoding


class DecodeError(ValueError):
    """A body serde_json would reject; the message follows serde_json's wording."""


class ValidationError(ValueError):
    """An envelope rejected by Flux's ``validate_and_prepare`` (exact texts)."""


class _ConstantError(ValueError):
    pass


def _reject_constant(name: str) -> NoReturn:
    raise _ConstantError(name)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _ryu(number: float) -> str:
    text = repr(number)
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}e{int(exponent)}"
    return text if "." in text or not text[-1].isdigit() else f"{text}.0"


def _unexpected(value: JSONValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{_ryu(value)}`"
    if isinstance(value, str):
        return f"string {rust_debug(value)}"
    return "sequence" if isinstance(value, list) else "map"


class _Reader:
    """A cursor over the body that reports positions the way serde_json does."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str | None:
        """Skip whitespace and return the next character, or None at the end."""
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in _WHITESPACE:
            pos += 1
        self.pos = pos
        return text[pos] if pos < len(text) else None

    def error(self, message: str, end: int | None = None) -> DecodeError:
        """``message at line L column C``; C counts UTF-8 bytes up to ``end``."""
        end = self.pos if end is None else min(end, len(self.text))
        line = self.text.count("\n", 0, end) + 1
        start = self.text.rfind("\n", 0, end) + 1
        column = len(self.text[start:end].encode())
        return DecodeError(f"{message} at line {line} column {column}")

    def unexpected_char(self, expected: str, eof: str) -> DecodeError:
        """The error for a wrong structural character (or the end of the body)."""
        if self.peek() is None:
            return self.error(eof)
        return self.error(expected, self.pos + 1)

    def value(self) -> JSONValue:
        """Decode one JSON value at the cursor and move past it."""
        try:
            value, end = _DECODER.raw_decode(self.text, self.pos)
        except json.JSONDecodeError as exc:
            raise self._syntax_error(exc) from None
        except _ConstantError:
            raise self.error("expected value", self.pos + 1) from None
        except RecursionError:
            raise self.error("recursion limit exceeded") from None
        self.pos = end
        return value

    def invalid_type(self, value: JSONValue, expected: str, start: int) -> DecodeError:
        """serde's ``invalid type`` error; maps and sequences are reported unread."""
        end = start if isinstance(value, dict | list) else self.pos
        return self.error(f"invalid type: {_unexpected(value)}, expected {expected}", end)

    def _syntax_error(self, exc: json.JSONDecodeError) -> DecodeError:
        if exc.msg.startswith("Unterminated string"):
            return self.error("EOF while parsing a string", len(self.text))
        if exc.pos >= len(self.text):
            return self.error("EOF while parsing a value", len(self.text))
        for prefix, message in _SYNTAX_MESSAGES:
            if exc.msg.startswith(prefix):
                return self.error(message, exc.pos + 1)
        return self.error("expected value", exc.pos + 1)


_FieldReader = Callable[[_Reader], JSONValue]


def _read_string(reader: _Reader) -> str:
    start = reader.pos
    value = reader.value()
    if isinstance(value, str):
        return value
    raise reader.invalid_type(value, "a string", start)


def _read_optional_string(reader: _Reader) -> str | None:
    start = reader.pos
    value = reader.value()
    if value is None or isinstance(value, str):
        return value
    raise reader.invalid_type(value, "a string", start)


def _read_i64(reader: _Reader) -> int:
    start = reader.pos
    value = reader.value()
    if isinstance(value, int) and not isinstance(value, bool):
        if _I64_MIN <= value <= _I64_MAX:
            return value
        if _I64_MAX < value <= _U64_MAX:
            raise reader.error(f"invalid value: integer `{value}`, expected i64")
        # serde_json reads integers beyond 64 bits as f64.
        raise reader.invalid_type(float(value), "i64", start)
    raise reader.invalid_type(value, "i64", start)


def _read_any(reader: _Reader) -> JSONValue:
    return reader.value()


def _read_struct(
    reader: _Reader,
    name: str,
    fields: Mapping[str, _FieldReader],
    required: Sequence[str],
) -> dict[str, JSONValue]:
    """Decode a derived serde struct: fields checked in document order, unknown fields
    skipped, duplicates and then missing required fields reported."""
    char = reader.peek()
    if char is None:
        raise reader.error("EOF while parsing a value")
    if char != "{":
        start = reader.pos
        value = reader.value()
        raise reader.invalid_type(value, f"struct {name}", start)
    reader.pos += 1
    out: dict[str, JSONValue] = {}
    if reader.peek() == "}":
        reader.pos += 1
    else:
        _read_members(reader, fields, out)
    for key in required:
        if key not in out:
            raise reader.error(f"missing field `{key}`")
    return out


def _read_members(
    reader: _Reader, fields: Mapping[str, _FieldReader], out: dict[str, JSONValue]
) -> None:
    while True:
        if reader.peek() != '"':
            raise reader.unexpected_char("key must be a string", "EOF while parsing an object")
        key = reader.value()
        field_reader = fields.get(key)
        if field_reader is not None and key in out:
            raise reader.error(f"duplicate field `{key}`")
        if reader.peek() != ":":
            raise reader.unexpected_char("expected `:`", "EOF while parsing an object")
        reader.pos += 1
        if reader.peek() is None:
            raise reader.error("EOF while parsing a value")
        value = reader.value() if field_reader is None else field_reader(reader)
        if field_reader is not None:
            out[key] = value
        if _end_of_container(reader, "}", "an object"):
            return


def _end_of_container(reader: _Reader, closer: str, what: str) -> bool:
    """Consume ``,`` (False: another item follows) or ``closer`` (True)."""
    char = reader.peek()
    if char == closer:
        reader.pos += 1
        return True
    if char == ",":
        reader.pos += 1
        if reader.peek() == closer:
            raise reader.error("trailing comma", reader.pos + 1)
        return False
    raise reader.unexpected_char(f"expected `,` or `{closer}`", f"EOF while parsing {what}")


@dataclass(slots=True)
class FluxEvent:
    """The Flux event envelope (``src/event/mod.rs``)."""

    stream: str
    source: str
    timestamp: int
    payload: JSONValue
    event_id: str | None = None
    key: str | None = None
    schema: str | None = None

    @classmethod
    def from_fields(cls, fields: Mapping[str, JSONValue]) -> FluxEvent:
        """Build from decoded fields (JSON names, required ones present)."""
        return cls(
            stream=fields["stream"],
            source=fields["source"],
            timestamp=fields["timestamp"],
            payload=fields["payload"],
            event_id=fields.get("eventId"),
            key=fields.get("key"),
            schema=fields.get("schema"),
        )

    def to_json(self) -> dict[str, JSONValue]:
        """The stored form served by ``GET /api/events`` (None fields skipped)."""
        out: dict[str, JSONValue] = {}
        if self.event_id is not None:
            out["eventId"] = self.event_id
        out.update(stream=self.stream, source=self.source, timestamp=self.timestamp)
        if self.key is not None:
            out["key"] = self.key
        if self.schema is not None:
            out["schema"] = self.schema
        out["payload"] = sort_json(self.payload)
        return out

    @property
    def entity_id(self) -> str | None:
        """``payload.entity_id`` when it is a string."""
        if isinstance(self.payload, dict):
            value = self.payload.get("entity_id")
            if isinstance(value, str):
                return value
        return None


_EVENT_FIELDS: dict[str, _FieldReader] = {
    "eventId": _read_optional_string,
    "stream": _read_string,
    "source": _read_string,
    "timestamp": _read_i64,
    "key": _read_optional_string,
    "schema": _read_optional_string,
    "payload": _read_any,
}
_EVENT_REQUIRED = ("stream", "source", "timestamp", "payload")


def _read_event(reader: _Reader) -> FluxEvent:
    fields = _read_struct(reader, "FluxEvent", _EVENT_FIELDS, _EVENT_REQUIRED)
    return FluxEvent.from_fields(fields)


def _read_events(reader: _Reader) -> list[FluxEvent]:
    if reader.peek() != "[":
        start = reader.pos
        value = reader.value()
        raise reader.invalid_type(value, "a sequence", start)
    reader.pos += 1
    events: list[FluxEvent] = []
    if reader.peek() == "]":
        reader.pos += 1
        return events
    while True:
        events.append(_read_event(reader))
        if _end_of_container(reader, "]", "a list"):
            return events


def _text_of(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = body[: exc.start + 1]
        line = prefix.count(b"\n") + 1
        column = len(prefix) - (prefix.rfind(b"\n") + 1)
        message = f"invalid unicode code point at line {line} column {column}"
        raise DecodeError(message) from None


def _finish(reader: _Reader) -> None:
    if reader.peek() is not None:
        raise reader.error("trailing characters", reader.pos + 1)


def decode_event(body: bytes) -> FluxEvent:
    """Decode a ``POST /api/events`` body like ``serde_json::from_slice::<FluxEvent>``."""
    reader = _Reader(_text_of(body))
    event = _read_event(reader)
    _finish(reader)
    return event


def decode_batch(body: bytes) -> list[FluxEvent]:
    """Decode a ``POST /api/events/batch`` body (``{"events": [FluxEvent, ...]}``)."""
    reader = _Reader(_text_of(body))
    fields = _read_struct(reader, "BatchRequest", {"events": _read_events}, ("events",))
    _finish(reader)
    events: list[FluxEvent] = fields["events"]
    return events


class JSONDataError(DecodeError):
    """Well-formed JSON of the wrong shape (axum's ``JsonDataError``, status 422)."""


@dataclass(frozen=True, slots=True)
class DeleteFilter:
    """The body of ``POST /api/state/entities/delete`` (an untagged enum in Flux)."""

    kind: Literal["namespace", "prefix", "entity_ids"]
    value: str | list[str]


def _delete_filter_of(value: JSONValue) -> DeleteFilter | None:
    # Variants are tried in declaration order, extra keys ignored (serde untagged).
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("namespace"), str):
        return DeleteFilter("namespace", value["namespace"])
    if isinstance(value.get("prefix"), str):
        return DeleteFilter("prefix", value["prefix"])
    ids = value.get("entity_ids")
    if isinstance(ids, list) and all(isinstance(item, str) for item in ids):
        return DeleteFilter("entity_ids", ids)
    return None


def decode_delete_filter(body: bytes) -> DeleteFilter:
    """Decode a batch-delete body; DecodeError (syntax) or JSONDataError (shape)."""
    reader = _Reader(_text_of(body))
    if reader.peek() is None:
        raise reader.error("EOF while parsing a value")
    start = reader.pos
    value = reader.value()
    _finish(reader)
    if not isinstance(value, dict):
        error = reader.invalid_type(value, "struct BatchDeleteRequest", start)
        raise JSONDataError(str(error))
    found = _delete_filter_of(value)
    if found is None:
        message = "data did not match any variant of untagged enum DeleteFilter"
        raise JSONDataError(str(reader.error(message)))
    return found


def validate_and_prepare(event: FluxEvent) -> None:
    """Apply ``src/event/validation.rs`` in its order; fill a missing ``eventId``."""
    if not event.stream:
        raise ValidationError("stream is required")
    if not event.source:
        raise ValidationError("source is required")
    if event.payload is None:
        raise ValidationError("payload is required")
    if not _STREAM_RE.fullmatch(event.stream):
        msg = f"invalid stream format '{event.stream}': must be lowercase with optional dots"
        raise ValidationError(msg)
    if event.timestamp <= 0:
        raise ValidationError(f"timestamp must be positive, got {event.timestamp}")
    if not isinstance(event.payload, dict):
        raise ValidationError("payload must be a JSON object")
    if not event.event_id:
        event.event_id = uuid7()


def tombstone_event(entity_id: str, now_ms: int) -> FluxEvent:
    """The tombstone ``DELETE /api/state/entities/:id`` publishes (prepared)."""
    payload = {
        "entity_id": entity_id,
        "properties": {"__deleted__": True, "__deleted_at__": now_ms},
    }
    return FluxEvent(
        stream=DELETION_STREAM,
        source=DELETION_SOURCE,
        timestamp=now_ms,
        payload=payload,
        event_id=uuid7(),
        key=entity_id,
    )


# ------------------------------------------------------------------------------ auth


class TokenError(ValueError):
    """The Authorization header of a publish request is unusable (exact texts)."""


class EntityIdError(ValueError):
    """An entity id ``parse_entity_id`` rejects; ``debug`` is Rust's ``{:?}`` of it."""

    def __init__(self, debug: str) -> None:
        super().__init__(debug)
        self.debug = debug


class AuthError(Exception):
    """A publish authorization failure: ``message`` is the HTTP ``error`` text."""

    def __init__(self, kind: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status

    @property
    def batch_text(self) -> str:
        """The per-item error of a batch result."""
        return f"authorization failed: {self.kind}: {self.message}"


class DeletionAuthError(Exception):
    """A deletion authorization failure with its own status and texts (§1.5)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _visible_ascii(text: str) -> bool:
    return all(char == "\t" or " " <= char <= "~" for char in text)


def extract_bearer_token(header: str | None) -> str:
    """``src/auth/mod.rs``: ``<scheme> <token>`` with a case-insensitive scheme."""
    if header is None:
        raise TokenError("Authorization token not provided")
    parts = header.split(" ", 1)
    if not _visible_ascii(header) or len(parts) != 2 or parts[0].lower() != "bearer":
        raise TokenError("Invalid authorization token format")
    token = parts[1].strip()
    if not token:
        raise TokenError("Authorization token is empty")
    return token


def validate_namespace_name(name: str) -> str | None:
    """None if valid, else the Rust ``{:?}`` of the namespace ``ValidationError``."""
    if len(name.encode()) < 3:
        return "TooShort"
    if len(name.encode()) > 32:
        return "TooLong"
    for char in name:
        if char not in _NAMESPACE_CHARS:
            text = f"Invalid character '{char}' (must be [a-z0-9-_])"
            return f"InvalidCharacters({rust_debug(text)})"
    return None


def parse_entity_id(entity_id: str) -> str | None:
    """Return the namespace of ``namespace/entity`` (None without one), as
    ``src/entity/mod.rs`` does; raise ``EntityIdError`` for malformed ids."""
    if not entity_id:
        raise EntityIdError("Empty")
    parts = entity_id.split("/")
    if len(parts) == 1:
        return None
    if len(parts) > 2:
        text = f"Entity ID '{entity_id}' contains multiple '/' separators (expected at most one)"
        raise EntityIdError(f"InvalidFormat({rust_debug(text)})")
    namespace, entity = parts
    if not namespace:
        raise EntityIdError(f"InvalidFormat({rust_debug('Namespace part cannot be empty')})")
    if not entity:
        raise EntityIdError(f"InvalidFormat({rust_debug('Entity part cannot be empty')})")
    problem = validate_namespace_name(namespace)
    if problem is not None:
        text = f"Invalid namespace '{namespace}': {problem}"
        raise EntityIdError(f"InvalidNamespace({rust_debug(text)})")
    return namespace


def _event_namespace(entity_id: str | None) -> str:
    if entity_id is None:
        raise AuthError("Invalid entity ID", "Missing 'entity_id' field in payload")
    try:
        namespace = parse_entity_id(entity_id)
    except EntityIdError as exc:
        text = f"Failed to parse entity_id '{entity_id}': {exc.debug}"
        raise AuthError("Invalid entity ID", text) from None
    if namespace is None:
        text = (
            f"Entity ID '{entity_id}' missing namespace prefix (expected 'namespace/entity' format)"
        )
        raise AuthError("Invalid entity ID", text)
    return namespace


def authorize_event(header: str | None, event: FluxEvent, namespaces: Mapping[str, str]) -> None:
    """``authorize_event`` of ``src/api/auth_middleware.rs`` (auth on); raises AuthError."""
    try:
        token = extract_bearer_token(header)
    except TokenError as exc:
        raise AuthError("Invalid token", str(exc)) from None
    namespace = _event_namespace(event.entity_id)
    owner_token = namespaces.get(namespace)
    if owner_token is None:
        text = f"Namespace '{namespace}' not found. Get a namespace at flux-universe.com"
        raise AuthError("Namespace not found", text)
    if owner_token != token:
        text = f"Token does not have permission to write to namespace '{namespace}'"
        raise AuthError("Forbidden", text, 403)


def authorize_deletion(header: str | None, entity_id: str, namespaces: Mapping[str, str]) -> None:
    """``authorize_deletion`` of ``src/api/deletion.rs``: exact ``Bearer `` prefix."""
    if header is None:
        raise DeletionAuthError(401, "Missing Authorization header")
    if not _visible_ascii(header):
        raise DeletionAuthError(401, "Invalid Authorization header")
    if not header.startswith("Bearer "):
        raise DeletionAuthError(401, "Invalid Authorization format")
    token = header.removeprefix("Bearer ")
    try:
        namespace = parse_entity_id(entity_id)
    except EntityIdError as exc:
        raise DeletionAuthError(400, exc.debug) from None
    if namespace is None:
        raise DeletionAuthError(401, "Entity has no namespace")
    if namespaces.get(namespace) != token:
        raise DeletionAuthError(403, "Token does not own namespace")


class RateLimiter:
    """Per-key token bucket (``src/rate_limit/mod.rs``): capacity N, refill N/60 per s."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    def check_and_consume(self, key: str, limit_per_minute: int, now: float) -> bool:
        """Take one token for ``key`` at monotonic time ``now`` (s); False if empty."""
        tokens, last = self._buckets.get(key, (float(limit_per_minute), now))
        tokens = min(tokens + (now - last) * limit_per_minute / 60.0, limit_per_minute)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        return allowed

    def reset(self) -> None:
        """Forget every bucket (they are not persisted across restarts)."""
        self._buckets.clear()


# ------------------------------------------------------------------------------ state


@dataclass(slots=True)
class Entity:
    """One entity of the world state; ``last_updated_ns`` is server Unix ns."""

    id: str
    properties: dict[str, JSONValue]
    last_updated_ns: int

    @property
    def last_updated(self) -> str:
        """``lastUpdated`` as chrono's ``to_rfc3339()`` renders it (``+00:00``)."""
        return format_rfc3339(self.last_updated_ns, zulu=False)

    def to_json(self) -> dict[str, JSONValue]:
        """The ``/api/state/entities`` item."""
        return {
            "id": self.id,
            "properties": sort_json(self.properties),
            "lastUpdated": self.last_updated,
        }


@dataclass(frozen=True, slots=True)
class StateUpdate:
    """One changed property, broadcast as a ``state_update`` frame."""

    entity_id: str
    property: str
    value: JSONValue
    timestamp_ns: int

    def frame(self) -> str:
        """The compact JSON text frame."""
        return compact_json(
            {
                "type": "state_update",
                "entity_id": self.entity_id,
                "property": self.property,
                "value": sort_json(self.value),
                "timestamp": format_rfc3339(self.timestamp_ns, zulu=True),
            }
        )


@dataclass(frozen=True, slots=True)
class EntityDeleted:
    """An entity removed by a tombstone, broadcast as ``entity_deleted``."""

    entity_id: str
    timestamp_ns: int

    def frame(self) -> str:
        """The compact JSON text frame."""
        return compact_json(
            {
                "type": "entity_deleted",
                "entity_id": self.entity_id,
                "timestamp": format_rfc3339(self.timestamp_ns, zulu=True),
            }
        )


StateChange = StateUpdate | EntityDeleted


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """The numbers of one ``metrics_update`` tick."""

    entities: int
    events_total: int
    rate_per_second: float
    connections: int
    publishers_active: int

    def frame(self, wall_ns: int) -> str:
        """The frame, keys in struct order; ``timestamp`` is the send time."""
        return compact_json(
            {
                "type": "metrics_update",
                "timestamp": format_rfc3339(wall_ns, zulu=True),
                "entities": {"total": self.entities},
                "events": {
                    "total": self.events_total,
                    "rate_per_second": self.rate_per_second,
                },
                "websocket": {"connections": self.connections},
                "publishers": {"active": self.publishers_active},
            }
        )


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


@dataclass(slots=True)
class StateEngine:
    """In-memory world state plus the metrics tracker (``src/state/``)."""

    wall_ns: Callable[[], int] = time.time_ns
    monotonic_ms: Callable[[], int] = _monotonic_ms
    entities: dict[str, Entity] = field(default_factory=dict)
    events_total: int = 0
    _window: deque[int] = field(default_factory=deque, init=False, repr=False)
    _publishers: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def process(self, event: FluxEvent) -> list[StateChange]:
        """Apply one event (``process_event``) and return what changed, in order."""
        self._record(event.source)
        entity_id = event.entity_id
        properties = event.payload.get("properties") if entity_id is not None else None
        if entity_id is None or not isinstance(properties, dict):
            return []
        if properties.get("__deleted__") is True:
            return self._delete(entity_id)
        return [self._update(entity_id, name, properties[name]) for name in sorted(properties)]

    def snapshot(self, *, connections: int, publisher_window: float) -> MetricsSnapshot:
        """Metrics now; the rate window is deliberately not trimmed here (it freezes)."""
        threshold = self.monotonic_ms() - int(publisher_window * 1000)
        stale = [src for src, seen in self._publishers.items() if seen <= threshold]
        for source in stale:
            del self._publishers[source]
        return MetricsSnapshot(
            entities=len(self.entities),
            events_total=self.events_total,
            rate_per_second=len(self._window) / 5.0,
            connections=connections,
            publishers_active=len(self._publishers),
        )

    def reset_metrics(self) -> None:
        """Forget the counters, as a process restart does (entities are kept)."""
        self.events_total = 0
        self._window.clear()
        self._publishers.clear()

    def _record(self, source: str) -> None:
        now = self.monotonic_ms()
        self.events_total += 1
        self._window.append(now)
        while now - self._window[0] > RATE_WINDOW_MS:
            self._window.popleft()
        self._publishers[source] = now

    def _update(self, entity_id: str, name: str, value: JSONValue) -> StateUpdate:
        now = self.wall_ns()
        entity = self.entities.get(entity_id)
        if entity is None:
            entity = self.entities[entity_id] = Entity(entity_id, {}, now)
        entity.properties[name] = value
        entity.last_updated_ns = now
        return StateUpdate(entity_id, name, value, now)

    def _delete(self, entity_id: str) -> list[StateChange]:
        if self.entities.pop(entity_id, None) is None:
            return []
        return [EntityDeleted(entity_id, self.wall_ns())]


def parse_client_message(
    text: str,
) -> tuple[Literal["subscribe", "unsubscribe"], str] | None:
    """Decode a client WS frame; None for anything Flux logs and ignores."""
    try:
        message = _DECODER.decode(text)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    entity_id = message.get("entity_id")
    if not isinstance(entity_id, str):
        return None
    kind = message.get("type")
    if kind == "subscribe":
        return "subscribe", entity_id
    if kind == "unsubscribe":
        return "unsubscribe", entity_id
    return None
