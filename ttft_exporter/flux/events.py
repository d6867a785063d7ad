"""What the Flux monitor, canary and read check observe, as plain typed events: they
emit these and write no metric; sinks (Prometheus, OTel) turn them into series.

Every event names its instance (the configured `name`). Plain data with slots, one
made per WebSocket frame: NOTE not `frozen`, whose __init__ (object.__setattr__ per
field) tripled the cost of building one (0.34 -> 1.1 us, a third of a frame's whole
handling). Sinks treat events as read-only; several sinks share one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from ttft_exporter.errors import FluxCanaryReason, FluxReconnectReason

__all__ = [
    "CanaryChecked",
    "CanaryPublished",
    "ConnectionState",
    "EventsProcessed",
    "FluxEvent",
    "FluxEventSink",
    "FluxReport",
    "FluxRestarted",
    "FluxStarted",
    "FluxStopped",
    "FrameKind",
    "FrameReceived",
    "Malformed",
    "ReadChecked",
    "Reconnected",
]

# The kind of a text frame: a message type of the catalogue's FLUX_MESSAGE_TYPES, or
# `malformed` (not a JSON object of a known shape).
FrameKind = Literal["metrics_update", "state_update", "entity_deleted", "other", "malformed"]


@dataclass(slots=True)
class FluxStarted:
    """An instance is being watched: sinks create its series (closed enums at 0)."""

    instance: str
    groups: tuple[str, ...]


@dataclass(slots=True)
class FluxStopped:
    """An instance left the config or changed: sinks drop its series."""

    instance: str
    groups: tuple[str, ...]


@dataclass(slots=True)
class ConnectionState:
    """The WebSocket connected or dropped, or the stream turned stale or fresh; `up`
    is connected and not stale."""

    instance: str
    connected: bool
    stale: bool


@dataclass(slots=True)
class Reconnected:
    """A connection ended or failed and the monitor is about to reconnect."""

    instance: str
    reason: FluxReconnectReason


@dataclass(slots=True)
class FrameReceived:
    """A text frame arrived at wall time `at`: its kind, and for a state_update its
    entity group (a configured prefix or `other`) and lag (receive time minus the
    server's timestamp, at least 0)."""

    instance: str
    at: float
    kind: FrameKind
    group: str | None = None
    lag: float | None = None


@dataclass(slots=True)
class Malformed:
    """A frame that is not a known message (binary, incomplete metrics_update, or one
    whose recording failed); text frames that do not decode come as FrameReceived."""

    instance: str


@dataclass(slots=True)
class EventsProcessed:
    """Flux processed `count` more events (a delta of metrics_update events.total)."""

    instance: str
    count: int


@dataclass(slots=True)
class FluxRestarted:
    """Flux restarted: its events.total went down (a counter reset)."""

    instance: str


@dataclass(slots=True)
class FluxReport:
    """Flux's own figures from a metrics_update; None for a field it did not send."""

    instance: str
    rate_per_second: float | None
    entities: int | None
    websocket_connections: int | None
    publishers_active: int | None


@dataclass(slots=True)
class CanaryChecked:
    """A canary check ended: `propagation` seconds on success, `reason` on failure."""

    instance: str
    propagation: float | None
    reason: FluxCanaryReason | None


@dataclass(slots=True)
class CanaryPublished:
    """A canary POST was acknowledged after `seconds`."""

    instance: str
    seconds: float


@dataclass(slots=True)
class ReadChecked:
    """A timed read of /api/state/entities: `seconds`, or None if it failed."""

    instance: str
    seconds: float | None


FluxEvent = (
    FluxStarted
    | FluxStopped
    | ConnectionState
    | Reconnected
    | FrameReceived
    | Malformed
    | EventsProcessed
    | FluxRestarted
    | FluxReport
    | CanaryChecked
    | CanaryPublished
    | ReadChecked
)


class FluxEventSink(Protocol):
    """Where the Flux code sends its events (a sink, or the fan-out of several)."""

    def on_flux_event(self, event: FluxEvent) -> None:
        """Consume one event; must not block (it runs on the frame hot path)."""
