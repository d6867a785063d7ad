"""The monitor of one Flux instance: a long-lived WebSocket subscriber with capped,
jittered reconnects and staleness detection, plus the optional canary and read check.

Frames are decoded and recorded inline in the receive loop, with no queue of our own:
when the client falls behind, aiohttp's reader stops reading the socket (flow control)
and Flux drops messages for the slow client, so memory stays bounded under any load.
"""

from __future__ import annotations

import asyncio
import logging
import random

import aiohttp
import orjson

from ttft_exporter.clock import Clock
from ttft_exporter.errors import FluxReconnectReason
from ttft_exporter.flux.config import FluxInstanceConfig
from ttft_exporter.flux.decoder import (
    EntityDeleted,
    MetricsUpdate,
    StateUpdate,
    decode_frame,
)
from ttft_exporter.flux.decoder import Malformed as BadFrame
from ttft_exporter.flux.events import (
    ConnectionState,
    EventsProcessed,
    FluxEventSink,
    FluxReport,
    FluxRestarted,
    FrameReceived,
    Malformed,
    Reconnected,
)
from ttft_exporter.logs import fields

__all__ = ["CLOSE_DEADLINE", "FluxMonitor", "backoff_delay"]

log = logging.getLogger("ttft_exporter.flux")

_NS = 1e-9
_YIELD_EVERY = 64
# Seconds one close of ours may take, closing handshake included: then the socket is
# dropped. A hung Flux never sends its close frame, and the stream is down meanwhile.
CLOSE_DEADLINE = 1.0


def backoff_delay(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, initial * 2^attempt)]."""
    return rng.uniform(0, min(cap, initial * (2 ** min(attempt, 30))))


class FluxMonitor:
    """Watches one Flux instance until stopped."""

    def __init__(
        self,
        config: FluxInstanceConfig,
        sink: FluxEventSink,
        session: aiohttp.ClientSession,
        clock: Clock,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._name = config.name
        self._sink = sink
        self._session = session
        self._clock = clock
        self._rng = rng or random.Random()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._end_reason: FluxReconnectReason | None = None
        self._last_total: int | None = None
        self._last_message_ns: int | None = None
        self._started_ns = clock.monotonic_ns()
        # When the current connection opened: its silence is measured from here, not
        # from the last message of an older connection (issue #8).
        self._connected_ns = self._started_ns
        self._frame_error_logged = False
        self.connected = False
        self.stale = False
        # Longest prefix first: an entity counts in its most specific group.
        self._groups = sorted(config.groups, key=lambda g: -len(g))
        self._canary_entity = config.canary_entity
        # Canary sequence -> future resolved with the monotonic ns of its state_update.
        self.canary_waiters: dict[int, asyncio.Future[int]] = {}

    # --- connection loop ---------------------------------------------------------------

    async def run(self) -> None:
        """Connect, read until the connection ends, back off, repeat. Never returns."""
        attempt = 0
        while True:
            opened_ns = self._clock.monotonic_ns()
            reason = await self._connect_and_read()
            self._sink.on_flux_event(Reconnected(self._name, reason))
            lived = (self._clock.monotonic_ns() - opened_ns) * _NS
            # A connection that lived a while resets the backoff; a flapping one grows it.
            attempt = (
                0
                if reason is not FluxReconnectReason.CONNECT_FAILED
                and lived > self.config.stale_after
                else attempt + 1
            )
            delay = backoff_delay(
                attempt, self.config.reconnect.initial, self.config.reconnect.max, self._rng
            )
            log.warning(
                "flux connection ended; reconnecting",
                extra=fields(flux=self.config.name, reason=reason, backoff_seconds=round(delay, 3)),
            )
            await asyncio.sleep(delay)

    async def _connect_and_read(self) -> FluxReconnectReason:
        cfg = self.config
        self._end_reason = None
        try:
            async with asyncio.timeout(cfg.connect_timeout):
                ws = await self._session.ws_connect(
                    cfg.ws_url,
                    heartbeat=cfg.ping_interval,
                    autoping=True,
                    max_msg_size=4 * 1024 * 1024,
                    # Not aiohttp's default 10 s wait for the peer's close frame;
                    # _close() bounds the whole close anyway.
                    timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_DEADLINE),
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.debug("flux connect failed", extra=fields(flux=cfg.name, err=str(exc)[:200]))
            return FluxReconnectReason.CONNECT_FAILED
        self._connected_ns = self._clock.monotonic_ns()
        self._ws = ws
        self._set_connected(True)
        closed_by_server = False
        try:
            for entity in cfg.subscriptions():
                await ws.send_str(orjson.dumps({"type": "subscribe", "entity_id": entity}).decode())
            handled = 0
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self._on_frame_guarded(msg.data)
                    handled += 1
                    if handled % _YIELD_EVERY == 0:
                        # receive() does not suspend while frames are queued: let the
                        # probes' reads and the scrapes in between, or a firehose
                        # would delay their timestamps.
                        await asyncio.sleep(0)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    self._received()
                    self._sink.on_flux_event(Malformed(self._name))
                elif msg.type is aiohttp.WSMsgType.CLOSE:
                    closed_by_server = True
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    if isinstance(msg.data, aiohttp.ServerTimeoutError):
                        return self._reason(FluxReconnectReason.PING_TIMEOUT)
                    return self._reason(FluxReconnectReason.ERROR)
                elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    break
        except (aiohttp.ClientError, OSError) as exc:
            log.debug("flux connection error", extra=fields(flux=cfg.name, err=str(exc)[:200]))
            return self._reason(FluxReconnectReason.ERROR)
        finally:
            self._ws = None
            self._set_connected(False)
            await self._close(ws)
        # A close frame is a clean close; anything else is an abrupt drop.
        clean = closed_by_server or ws.close_code == aiohttp.WSCloseCode.OK
        return self._reason(FluxReconnectReason.CLOSED if clean else FluxReconnectReason.ERROR)

    async def _close(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Close `ws` within CLOSE_DEADLINE. aiohttp's close() reads until the peer's
        close frame, restarting its ws_close timeout at every other message: a peer
        that keeps sending but never answers the closing handshake held it (and so
        this monitor, with the stream down) forever. Cancelled on the deadline, it
        drops the socket itself."""
        try:
            async with asyncio.timeout(CLOSE_DEADLINE):
                await ws.close()
        except TimeoutError:
            log.debug("flux close handshake unanswered; dropped", extra=fields(flux=self._name))

    def _reason(self, default: FluxReconnectReason) -> FluxReconnectReason:
        # The staleness watchdog (another task) may have closed the socket on purpose.
        return self._end_reason or default

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        self._emit_state()

    def _emit_state(self) -> None:
        self._sink.on_flux_event(ConnectionState(self._name, self.connected, self.stale))

    async def watch_staleness(self) -> None:
        """Mark the stream stale after `stale_after` without a message, and drop a
        connection that stayed silent that long so that the next one can bring the
        stream back."""
        cfg = self.config
        step = min(1.0, cfg.stale_after / 4)
        while True:
            await asyncio.sleep(step)
            self.check_staleness()
            ws = self._ws
            if ws is not None and not ws.closed and self.connection_silent():
                self._end_reason = FluxReconnectReason.STALE
                await self._close(ws)

    def connection_silent(self) -> bool:
        """Whether the open connection has said nothing for `stale_after` since it
        opened or since its last message. A new connection gets a full window even
        after a long outage: closing it before Flux's next metrics_update (up to 2 s
        away) would only grow the backoff and keep the stream down."""
        since = self._connected_ns
        if self._last_message_ns is not None and self._last_message_ns > since:
            since = self._last_message_ns
        return (self._clock.monotonic_ns() - since) * _NS > self.config.stale_after

    def last_message_age(self) -> float | None:
        """Seconds since the last message of any connection; None before the first."""
        if self._last_message_ns is None:
            return None
        return (self._clock.monotonic_ns() - self._last_message_ns) * _NS

    def check_staleness(self) -> bool:
        """Update the stale gauges; returns whether the stream is stale."""
        now = self._clock.monotonic_ns()
        since = self._last_message_ns if self._last_message_ns is not None else self._started_ns
        stale = (now - since) * _NS > self.config.stale_after
        if stale != self.stale:
            self.stale = stale
            self._emit_state()
            if stale:
                log.warning("flux stream stale", extra=fields(flux=self.config.name))
        return stale

    # --- messages (hot path) ----------------------------------------------------------

    def _received(self) -> int:
        now = self._clock.monotonic_ns()
        self._last_message_ns = now
        if self.stale:
            self.stale = False
            self._emit_state()
        return now

    def _on_frame_guarded(self, frame: str | bytes) -> None:
        # Decoding never raises; this guards the recording code, so that a bug there
        # costs one frame, never the subscription (issue #8).
        try:
            self.on_frame(frame)
        except Exception:
            self._sink.on_flux_event(Malformed(self._name))
            if not self._frame_error_logged:
                self._frame_error_logged = True
                log.exception(
                    "flux frame could not be recorded; counted as malformed",
                    extra=fields(flux=self.config.name),
                )

    def on_frame(self, frame: str | bytes) -> None:
        """Decode one text frame and emit what it says."""
        now_ns = self._received()
        wall = self._clock.wall()
        message = decode_frame(frame)
        sink = self._sink
        if isinstance(message, BadFrame):
            sink.on_flux_event(FrameReceived(self._name, wall, "malformed"))
            log.debug("malformed flux frame", extra=fields(flux=self.config.name, why=message.why))
            return
        if isinstance(message, StateUpdate):
            self._on_state_update(message, now_ns, wall)
        elif isinstance(message, MetricsUpdate):
            sink.on_flux_event(FrameReceived(self._name, wall, "metrics_update"))
            self._on_metrics(message)
        elif isinstance(message, EntityDeleted):
            sink.on_flux_event(FrameReceived(self._name, wall, "entity_deleted"))
        else:
            sink.on_flux_event(FrameReceived(self._name, wall, "other"))

    def _on_state_update(self, update: StateUpdate, now_ns: int, wall: float) -> None:
        entity = update.entity_id
        group = "other"
        for prefix in self._groups:
            if entity.startswith(prefix):
                group = prefix
                break
        lag = max(0.0, wall - update.sent)
        self._sink.on_flux_event(FrameReceived(self._name, wall, "state_update", group, lag))
        if entity == self._canary_entity and update.property == "seq":
            value = update.value
            waiter = self.canary_waiters.get(value) if isinstance(value, int) else None
            if waiter is not None and not waiter.done():
                waiter.set_result(now_ns)

    def _on_metrics(self, update: MetricsUpdate) -> None:
        if not update.complete:
            # Fields missing: protocol drift worth seeing; apply what is there.
            self._sink.on_flux_event(Malformed(self._name))
        total = update.events_total
        if total is not None:
            last = self._last_total
            if last is not None:
                if total >= last:
                    self._sink.on_flux_event(EventsProcessed(self._name, total - last))
                else:
                    # Flux restarted: its counter began again at 0 (then replayed).
                    self._sink.on_flux_event(FluxRestarted(self._name))
                    self._sink.on_flux_event(EventsProcessed(self._name, total))
            self._last_total = total
        self._sink.on_flux_event(
            FluxReport(
                self._name,
                update.rate_per_second,
                update.entities,
                update.websocket_connections,
                update.publishers_active,
            )
        )
