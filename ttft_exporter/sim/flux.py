"""Flux-compatible server (HTTP routes + ``/api/ws``) for the demo command and the tests:
the checklist "What a faithful test double must do" of flux-api.md, plus control knobs
for restarts, silence, dropped connections, raw frames and publish faults."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, Field, field_validator

from ttft_exporter.sim.flux_state import (
    AuthError,
    DecodeError,
    DeleteFilter,
    DeletionAuthError,
    Entity,
    EntityDeleted,
    EntityIdError,
    FluxEvent,
    JSONDataError,
    MetricsSnapshot,
    RateLimiter,
    StateChange,
    StateEngine,
    ValidationError,
    authorize_deletion,
    authorize_event,
    compact_json,
    decode_batch,
    decode_delete_filter,
    decode_event,
    parse_client_message,
    parse_entity_id,
    rust_debug,
    subject_for,
    tombstone_event,
    uuid7,
    validate_and_prepare,
    validate_namespace_name,
)

__all__ = [
    "FLUX_SIM",
    "Entity",
    "FluxPublishError",
    "FluxSim",
    "FluxSimConfig",
    "create_flux_app",
    "run_flux_sim",
]

_log = logging.getLogger(__name__)

_METRICS_CAPACITY = 10  # per-connection broadcast capacities of src/state/engine.rs
_DELETION_CAPACITY = 100
_MAX_BATCH_DELETE = 10_000
_HISTORY_CAPACITY = 100_000  # stands in for JetStream retention; bounds memory
_WS_MAX_MSG_SIZE = 64 * 1024 * 1024  # tungstenite's default, not aiohttp's 4 MiB
_AXUM_413 = "Failed to buffer the request body: length limit exceeded"
_DOWN_TEXT = "Service Unavailable"
_SINCE_DEFAULT = timedelta(hours=24)
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_GENERATOR_MIN_SLEEP = 0.01

_Kind = Literal["state", "metrics", "deletion", "raw"]
_Frame = str | bytes | MetricsSnapshot


class FluxSimConfig(BaseModel, extra="forbid", validate_assignment=True, allow_inf_nan=False):
    """Knobs of the simulated Flux; durations in seconds. Read live unless noted."""

    metrics_interval: float = Field(default=2.0, gt=0)
    """``metrics_update`` period; ticks are global, not per connection."""
    publisher_window: float = Field(default=10.0, ge=0)
    """Window of ``publishers.active``."""
    auth: bool = False
    """``FLUX_AUTH_ENABLED=true``: bearer tokens on writes, plus rate limiting."""
    namespaces: dict[str, str] = Field(default_factory=dict)
    """Seeded namespace -> token pairs."""
    rate_limit_per_minute: int = Field(default=10_000, ge=0)
    """Token bucket per namespace (capacity N, refill N/60 per s); only with auth."""
    apply_delay: float = Field(default=0.0, ge=0)
    """Delay between a publish's ack and the state engine applying it."""
    body_limit_single: int = Field(default=1_048_576, ge=0)
    body_limit_batch: int = Field(default=10_485_760, ge=0)
    axum_body_limit: int | None = Field(default=2 * 1024 * 1024, ge=0)
    """axum's default body cap, checked first with a plain-text 413; None disables it.
    The app's ``client_max_size`` is fixed from the limits at creation."""
    state_channel_capacity: int = Field(default=1000, ge=1)
    """Queued ``state_update`` frames per connection; a lagging client loses the oldest.
    Read when a connection opens."""
    replay_idle: float = Field(default=0.5, ge=0)
    """After a simulated restart, replay ends after this long without an event."""
    generator_rate: float = Field(default=0.0, ge=0)
    """Background events per second (``sensor-<n>``/``host-<n>``); read at startup."""
    generator_entities: int = Field(default=20, ge=1)

    @field_validator("namespaces")
    @classmethod
    def _check_namespaces(cls, value: dict[str, str]) -> dict[str, str]:
        for name, token in value.items():
            problem = validate_namespace_name(name)
            if problem is not None:
                msg = f"namespace {name!r} is not a valid Flux namespace name: {problem}"
                raise ValueError(msg)
            if not token:
                raise ValueError(f"namespace {name!r} needs a non-empty token")
        return value


class FluxPublishError(Exception):
    """``FluxSim.publish`` failed the way the HTTP route would (status + error text)."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"{status}: {error}")
        self.status = status
        self.error = error


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int | None = None
    body: str | None = None
    delay: float = 0.0
    plain_text: bool = False

    def error_text(self, stream: str) -> str:
        if self.body is not None:
            return self.body
        return f"Failed to publish event to subject '{subject_for(stream)}'"


class _RateLimitedError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Pending:
    event: FluxEvent
    due: float


def _json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=compact_json(body).encode(),
        content_type="application/json",
        headers=headers,
    )


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return _json_response({"error": message}, status, headers)


def _plain(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text)


async def _cancel_and_wait(task: asyncio.Task[Any]) -> None:
    if task.done():  # a failure was already reported by FluxSim._task_done
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


class _Connection:
    """One ``/api/ws`` session: its subscriptions and its bounded outgoing queues."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, capacity: int) -> None:
        self.ws = ws
        self.request = request
        self.subscriptions: set[str] = set()
        self.done = asyncio.Event()
        self.state_seen = 0
        self.dropped = 0
        self._queues: dict[_Kind, deque[tuple[int, _Frame]]] = {
            "state": deque(),
            "metrics": deque(),
            "deletion": deque(),
            "raw": deque(),
        }
        self._capacity: dict[_Kind, int | None] = {
            "state": capacity,
            "metrics": _METRICS_CAPACITY,
            "deletion": _DELETION_CAPACITY,
            "raw": None,
        }
        self._order = itertools.count()
        self._wakeup = asyncio.Event()

    def matches(self, entity_id: str) -> bool:
        """Flux's filter: no subscription or ``*`` means everything, else exact ids."""
        subs = self.subscriptions
        return not subs or "*" in subs or entity_id in subs

    def push(self, kind: _Kind, frame: _Frame) -> None:
        """Queue a frame; a full queue loses its oldest frame, like a lagging receiver."""
        queue = self._queues[kind]
        capacity = self._capacity[kind]
        if capacity is not None and len(queue) >= capacity:
            queue.popleft()
            self.dropped += 1
        queue.append((next(self._order), frame))
        self._wakeup.set()

    def push_state(self, frame: str, drop_every: int | None) -> None:
        """Queue a ``state_update``, skipping every ``drop_every``-th one."""
        self.state_seen += 1
        if drop_every and self.state_seen % drop_every == 0:
            self.dropped += 1
            return
        self.push("state", frame)

    def backlogged(self) -> bool:
        """True when the state queue is at least half full."""
        capacity = self._capacity["state"] or 0
        return len(self._queues["state"]) * 2 >= capacity

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def run_sender(self, speaking: asyncio.Event) -> None:
        """Send queued frames in arrival order until the socket fails."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while True:
                await speaking.wait()
                frame = self._next()
                if frame is None:
                    break
                try:
                    await self._send(frame)
                except ConnectionError:
                    return

    def _next(self) -> _Frame | None:
        heads = [queue for queue in self._queues.values() if queue]
        if not heads:
            return None
        return min(heads, key=lambda queue: queue[0][0]).popleft()[1]

    async def _send(self, frame: _Frame) -> None:
        if isinstance(frame, MetricsSnapshot):
            await self.ws.send_str(frame.frame(time.time_ns()))
        elif isinstance(frame, str):
            await self.ws.send_str(frame)
        else:
            await self.ws.send_bytes(frame)


class FluxSim:
    """State and control surface of one simulated Flux, stored under ``FLUX_SIM``."""

    def __init__(self, config: FluxSimConfig) -> None:
        self.config = config
        self._engine = StateEngine()
        self._limiter = RateLimiter()
        self._history: deque[tuple[int, FluxEvent]] = deque(maxlen=_HISTORY_CAPACITY)
        self._stream: asyncio.Queue[_Pending] = asyncio.Queue()
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending_raw: list[str | bytes] = []
        self._fault = _Fault()
        self._drop_every: int | None = None
        self._speaking = asyncio.Event()
        self._speaking.set()
        self._up = asyncio.Event()
        self._up.set()
        self._down = False
        self._closing = False
        self._replaying = False
        self._replay_last = 0.0
        self._restart_lock = asyncio.Lock()
        self._listener: tuple[web.AppRunner, web.TCPSite, str, int] | None = None

    # ------------------------------------------------------------------ control API

    @property
    def entities(self) -> dict[str, Entity]:
        """The world state, by entity id (live; do not mutate)."""
        return self._engine.entities

    @property
    def events_total(self) -> int:
        """Events processed by the state engine since the last (simulated) start."""
        return self._engine.events_total

    @property
    def is_down(self) -> bool:
        """True while a simulated restart keeps Flux down."""
        return self._down

    @property
    def connections(self) -> int:
        """Open ``/api/ws`` sessions."""
        return len(self._connections)

    async def tick(self) -> None:
        """Send one ``metrics_update`` to every client now (unless silent)."""
        snapshot = self._engine.snapshot(
            connections=len(self._connections),
            publisher_window=self.config.publisher_window,
        )
        if self._speaking.is_set():
            for conn in self._connections:
                conn.push("metrics", snapshot)
        await asyncio.sleep(0)

    async def restart(self, replay: int = 0, gap: float = 0.0) -> None:
        """Simulate a Flux process restart; returns once it serves again.

        Every WebSocket is aborted (no close frame) and counters, rate-limit buckets and
        subscriptions are lost; entities survive (snapshot + NATS replay). For ``gap``
        seconds Flux is down: with ``run_flux_sim`` the listening socket is closed, so
        connects are refused; when the app is served by someone else (aiohttp_client)
        every request and WS upgrade gets 503 ``text/plain`` with ``Connection: close``.
        Then ``replay`` events are reprocessed (the newest stored ones, padded with
        entity-less events): ``events.total`` jumps to ``replay``, the rate window fills
        and broadcasts stay suppressed until ``replay_idle`` passes without an event.
        """
        async with self._restart_lock:
            await self._go_down()
            if gap > 0:
                await asyncio.sleep(gap)
            self._replay(replay)
            await self._come_up()

    async def drop_connections(self, clean: bool = False) -> None:
        """Abort every WS connection (no close frame), or close them with code 1000
        (then each close waits for the client's reply, at most 10 s)."""
        conns = list(self._connections)
        if clean:
            await asyncio.gather(
                *(conn.ws.close(code=WSCloseCode.OK) for conn in conns if conn.ws.prepared)
            )
        else:
            for conn in conns:
                conn.abort()
        await asyncio.gather(*(conn.done.wait() for conn in conns))

    def set_silent(self, silent: bool) -> None:
        """While True, send nothing (no metrics, updates or injected frames) but keep
        sockets open and answer pings. Broadcasts are discarded, not queued."""
        if silent:
            self._speaking.clear()
        else:
            self._speaking.set()

    def inject_frames(self, frames: Iterable[str | bytes]) -> None:
        """Queue raw frames (text for str, binary for bytes) to every client; with no
        client connected they go to the next one that connects."""
        frames = list(frames)
        if not self._connections:
            self._pending_raw.extend(frames)
            return
        for conn in self._connections:
            for frame in frames:
                conn.push("raw", frame)

    def set_fault(
        self,
        publish_status: int | None = None,
        publish_body: str | None = None,
        publish_delay: float = 0.0,
        plain_text: bool = False,
    ) -> None:
        """Fail or slow down publishing (JetStream trouble); no arguments clears it.

        Each publish first waits ``publish_delay``; then, if ``publish_status`` is set,
        it fails after validation, auth and rate limiting: single publishes and deletes
        answer ``publish_status`` with ``{"error": publish_body}`` (default: Flux's
        ``Failed to publish event to subject 'flux.events.<stream>'``), batch items get
        ``publish failed: <text>`` in a 200. ``plain_text`` answers the whole request
        with a ``text/plain`` body instead, as a gateway in front of Flux would.
        """
        self._fault = _Fault(publish_status, publish_body, publish_delay, plain_text)

    def set_drop_every(self, n: int | None) -> None:
        """Make every client silently miss every ``n``-th ``state_update`` (None: off)."""
        if n is not None and n < 1:
            raise ValueError(f"drop_every must be >= 1 or None, got {n}")
        self._drop_every = n

    async def publish(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Publish like ``POST /api/events`` minus HTTP, auth and rate limiting.

        Returns ``{"eventId", "stream"}``; raises FluxPublishError with the status and
        error text the route would answer (400 validation, injected faults, 503 while
        a simulated restart keeps Flux down).
        """
        try:
            prepared = decode_event(compact_json(dict(event)).encode())
            validate_and_prepare(prepared)
        except (DecodeError, ValidationError) as exc:
            raise FluxPublishError(400, str(exc)) from None
        if self._down:
            raise FluxPublishError(503, _DOWN_TEXT)
        error = await self._publish_event(prepared)
        if error is not None:
            raise FluxPublishError(self._fault.status or 500, error)
        return {"eventId": prepared.event_id, "stream": prepared.stream}

    async def wait_applied(self) -> None:
        """Wait until the state engine has applied every event published so far."""
        await self._stream.join()

    # ---------------------------------------------------------------- state engine

    async def _publish_event(self, event: FluxEvent) -> str | None:
        """The JetStream publish + ack: None on success, else the error text."""
        fault = self._fault
        if fault.delay > 0:
            await asyncio.sleep(fault.delay)
        if fault.status is not None:
            return fault.error_text(event.stream)
        self._history.append((time.time_ns(), event))
        due = asyncio.get_running_loop().time() + self.config.apply_delay
        self._stream.put_nowait(_Pending(event, due))
        return None

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = await self._stream.get()
            try:
                await self._up.wait()
                delay = pending.due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                    await self._up.wait()
                self._apply(pending.event)
            finally:
                self._stream.task_done()
            # Flux's per-connection tasks run alongside its engine: let the senders catch
            # up before a burst overflows queues that a fast client would have drained.
            if any(conn.backlogged() for conn in self._connections):
                await asyncio.sleep(0)

    def _apply(self, event: FluxEvent) -> None:
        changes = self._engine.process(event)
        if self._replaying:
            now = asyncio.get_running_loop().time()
            if now - self._replay_last < self.config.replay_idle:
                self._replay_last = now
                return
            self._replaying = False
        for change in changes:
            self._broadcast(change)

    def _broadcast(self, change: StateChange) -> None:
        if not self._speaking.is_set():
            return
        frame = change.frame()
        if isinstance(change, EntityDeleted):
            for conn in self._connections:
                conn.push("deletion", frame)
            return
        for conn in self._connections:
            if conn.matches(change.entity_id):
                conn.push_state(frame, self._drop_every)

    def _replay(self, count: int) -> None:
        """Reprocess ``count`` events as a fresh process does, broadcasts suppressed."""
        self._replaying = True
        self._replay_last = asyncio.get_running_loop().time()
        stored = [event for _, event in list(self._history)[-count:]] if count > 0 else []
        now_ms = time.time_ns() // 1_000_000
        padding = [
            FluxEvent("sim.replay", "sim-replay", now_ms, {}, event_id=uuid7())
            for _ in range(count - len(stored))
        ]
        for event in padding + stored:
            self._apply(event)

    # ------------------------------------------------------------------- restarts

    async def _go_down(self) -> None:
        self._down = True
        self._up.clear()
        if self._listener is not None:
            await self._listener[1].stop()
        await self.drop_connections(clean=False)
        if self._listener is not None:
            # Keep-alive HTTP connections die with the process too.
            server = self._listener[0].server
            for handler in server.connections if server is not None else []:
                handler.force_close()
        self._engine.reset_metrics()
        self._limiter.reset()
        self._pending_raw.clear()

    async def _come_up(self) -> None:
        if self._listener is not None and not self._closing:
            runner, _, host, port = self._listener
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
            self._listener = (runner, site, host, port)
        self._down = False
        self._up.set()

    def _attach_listener(self, runner: web.AppRunner, site: web.TCPSite, host: str) -> None:
        self._listener = (runner, site, host, site.port)

    # -------------------------------------------------------------- task ownership

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            asyncio.get_running_loop().call_exception_handler(
                {"message": f"Flux simulator task {task.get_name()} failed", "task": task}
            )

    async def _metrics_loop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            await self.tick()
            interval = self.config.metrics_interval
            deadline += interval
            now = loop.time()
            if deadline <= now:  # missed ticks are skipped, not sent in a burst
                deadline += math.ceil((now - deadline) / interval + 1e-9) * interval
            await asyncio.sleep(deadline - now)

    async def _generator_loop(self, rate: float) -> None:
        loop = asyncio.get_running_loop()
        rng = random.Random()
        start, sent = loop.time(), 0
        while True:
            await asyncio.sleep(max(1.0 / rate, _GENERATOR_MIN_SLEEP))
            due = int((loop.time() - start) * rate)
            for _ in range(due - sent):
                try:
                    await self.publish(self._generated_event(rng))
                except FluxPublishError as exc:
                    _log.debug("generator publish failed: %s", exc)
            sent = due

    def _generated_event(self, rng: random.Random) -> dict[str, Any]:
        index = rng.randrange(self.config.generator_entities)
        prefix = ""
        if self.config.auth and self.config.namespaces:
            prefix = f"{next(iter(self.config.namespaces))}/"
        if index % 2 == 0:
            stream, entity = "sim.sensors", f"{prefix}sensor-{index // 2}"
            properties: dict[str, Any] = {
                "temperature": round(rng.uniform(15.0, 30.0), 2),
                "humidity": round(rng.uniform(20.0, 80.0), 1),
            }
        else:
            stream, entity = "sim.hosts", f"{prefix}host-{index // 2}"
            properties = {
                "cpu_percent": round(rng.uniform(0.0, 100.0), 1),
                "status": rng.choice(("ok", "ok", "ok", "degraded")),
            }
        return {
            "stream": stream,
            "source": f"sim-gen-{index % 3}",
            "timestamp": time.time_ns() // 1_000_000,
            "payload": {"entity_id": entity, "properties": properties},
        }

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx`` entry: owns the engine, ticker and generator tasks."""
        background = [self._spawn(self._consume(), "flux-sim-state-engine")]
        background.append(self._spawn(self._metrics_loop(), "flux-sim-metrics"))
        rate = self.config.generator_rate
        if rate > 0:
            background.append(self._spawn(self._generator_loop(rate), "flux-sim-generator"))
        yield
        self._closing = True
        for task in background + list(self._tasks):
            await _cancel_and_wait(task)

    async def _on_shutdown(self, app: web.Application) -> None:
        """Drop open WebSockets so the server does not wait for their handlers."""
        self._closing = True
        for conn in list(self._connections):
            conn.abort()

    # ---------------------------------------------------------------- HTTP routes

    async def _read_body(self, request: web.Request, limit: int | None) -> bytes | web.Response:
        axum_limit = self.config.axum_body_limit
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return (
                _plain(413, _AXUM_413)
                if axum_limit is not None
                else _error(413, "payload too large")
            )
        if axum_limit is not None and len(body) > axum_limit:
            return _plain(413, _AXUM_413)
        if limit is not None and len(body) > limit:
            return _error(413, "payload too large")
        return body

    def _fault_response(self, error: str) -> web.Response:
        status = self._fault.status or 500
        return _plain(status, error) if self._fault.plain_text else _error(status, error)

    def _admit(self, request: web.Request, event: FluxEvent) -> None:
        """Auth, then the rate limit; both only with auth on (AuthError/_RateLimitedError)."""
        if not self.config.auth:
            return
        authorize_event(request.headers.get("Authorization"), event, self.config.namespaces)
        now = asyncio.get_running_loop().time()
        limit = self.config.rate_limit_per_minute
        if not self._limiter.check_and_consume(_bucket_key(event), limit, now):
            raise _RateLimitedError

    async def _handle_publish(self, request: web.Request) -> web.Response:
        """``POST /api/events``: 413 -> 400 -> 401/403 -> 429 -> 500 -> 200."""
        body = await self._read_body(request, self.config.body_limit_single)
        if isinstance(body, web.Response):
            return body
        try:
            event = decode_event(body)
            validate_and_prepare(event)
        except (DecodeError, ValidationError) as exc:
            return _error(400, str(exc))
        try:
            self._admit(request, event)
        except AuthError as exc:
            return _error(exc.status, exc.message)
        except _RateLimitedError:
            return _error(429, "rate limit exceeded", {"Retry-After": "60"})
        error = await self._publish_event(event)
        if error is not None:
            return self._fault_response(error)
        return _json_response({"eventId": event.event_id, "stream": event.stream})

    async def _handle_batch(self, request: web.Request) -> web.Response:
        """``POST /api/events/batch``: whole-request 413/400, else 200 with per-item results."""
        body = await self._read_body(request, self.config.body_limit_batch)
        if isinstance(body, web.Response):
            return body
        try:
            events = decode_batch(body)
        except DecodeError as exc:
            return _error(400, str(exc))
        if not events:
            return _error(400, "Batch request must contain at least one event")
        results: list[dict[str, Any]] = []
        for event in events:
            result = await self._batch_item(request, event)
            if isinstance(result, web.Response):
                return result
            results.append(result)
        failed = sum(1 for result in results if result["error"] is not None)
        return _json_response(
            {"successful": len(results) - failed, "failed": failed, "results": results}
        )

    async def _batch_item(
        self, request: web.Request, event: FluxEvent
    ) -> dict[str, Any] | web.Response:
        try:
            validate_and_prepare(event)
        except ValidationError as exc:
            return {"eventId": None, "stream": event.stream, "error": f"validation failed: {exc}"}
        error: str | None = None
        try:
            self._admit(request, event)
        except AuthError as exc:
            error = exc.batch_text
        except _RateLimitedError:
            error = "rate limit exceeded"
        if error is None:
            error = await self._publish_event(event)
            if error is not None and self._fault.plain_text:
                return self._fault_response(error)
            if error is not None:
                error = f"publish failed: {error}"
        return {"eventId": event.event_id, "stream": event.stream, "error": error}

    async def _handle_history(self, request: web.Request) -> web.Response:
        """``GET /api/events?entity=&since=&limit=``: oldest ``limit`` matches, newest first."""
        entity = request.query.get("entity")
        if entity is None:
            return _error(400, "entity parameter is required")
        since = _parse_since(request.query.get("since"))
        if since is None:
            return _error(400, "invalid `since` timestamp (expected ISO 8601)")
        limit = _parse_limit(request.query.get("limit"))
        if isinstance(limit, str):
            return _plain(400, f"Failed to deserialize query string: {limit}")
        # JetStream's ByStartTime works on whole seconds.
        start_ns = math.floor(since.timestamp()) * 1_000_000_000
        matches: list[dict[str, Any]] = []
        for stored_ns, event in list(self._history):
            if stored_ns >= start_ns and event.entity_id == entity:
                matches.append(event.to_json())
                if len(matches) >= limit:
                    break
        matches.reverse()
        return _json_response(matches)

    async def _handle_list_entities(self, request: web.Request) -> web.Response:
        """``GET /api/state/entities[?namespace=&prefix=]``."""
        namespace = request.query.get("namespace")
        prefix = request.query.get("prefix")
        items = [
            entity.to_json()
            for entity in list(self.entities.values())
            if _entity_matches(entity.id, namespace, prefix)
        ]
        return _json_response(items)

    async def _handle_get_entity(self, request: web.Request) -> web.Response:
        """``GET /api/state/entities/{id}`` (the id arrives percent-decoded)."""
        entity_id = request.match_info["id"]
        if entity_id == "delete":  # the static POST route wins in Flux's router
            return web.Response(status=405)
        entity = self.entities.get(entity_id)
        if entity is None:
            return _error(404, "Entity not found")
        return _json_response(entity.to_json())

    async def _handle_delete_entity(self, request: web.Request) -> web.Response:
        """``DELETE /api/state/entities/{id}``: publish a tombstone (200 even if absent)."""
        entity_id = request.match_info["id"]
        if entity_id == "delete":
            return web.Response(status=405)
        if self.config.auth:
            try:
                self._authorize_deletion(request, entity_id)
            except DeletionAuthError as exc:
                return _error(exc.status, exc.message)
        tombstone = tombstone_event(entity_id, time.time_ns() // 1_000_000)
        error = await self._publish_event(tombstone)
        if error is not None:
            return self._fault_response(error)
        return _json_response({"entity_id": entity_id, "eventId": tombstone.event_id})

    def _authorize_deletion(self, request: web.Request, entity_id: str) -> None:
        header = request.headers.get("Authorization")
        authorize_deletion(header, entity_id, self.config.namespaces)

    async def _handle_batch_delete(self, request: web.Request) -> web.Response:
        """``POST /api/state/entities/delete`` with a namespace/prefix/entity_ids filter."""
        body = await self._read_body(request, None)
        if isinstance(body, web.Response):
            return body
        if not _is_json_content_type(request.headers.get("Content-Type")):
            return _plain(415, "Expected request with `Content-Type: application/json`")
        try:
            delete_filter = decode_delete_filter(body)
        except JSONDataError as exc:
            return _plain(422, f"Failed to deserialize the JSON body into the target type: {exc}")
        except DecodeError as exc:
            return _plain(400, f"Failed to parse the request body as JSON: {exc}")
        ids = self._select_ids(delete_filter)
        if len(ids) > _MAX_BATCH_DELETE:
            message = f"Batch too large: {len(ids)} entities requested, max is {_MAX_BATCH_DELETE}"
            return _error(400, message)
        if self.config.auth:
            try:
                for entity_id in ids:
                    self._authorize_deletion(request, entity_id)
            except DeletionAuthError as exc:
                return _error(exc.status, exc.message)
        return await self._delete_all(ids)

    def _select_ids(self, delete_filter: DeleteFilter) -> list[str]:
        value = delete_filter.value
        if isinstance(value, list):
            return list(value)
        if delete_filter.kind == "namespace":
            return [eid for eid in self.entities if eid.startswith(f"{value}/")]
        return [eid for eid in self.entities if eid.startswith(value)]

    async def _delete_all(self, ids: list[str]) -> web.Response:
        deleted, errors = 0, []
        for entity_id in ids:
            tombstone = tombstone_event(entity_id, time.time_ns() // 1_000_000)
            error = await self._publish_event(tombstone)
            if error is None:
                deleted += 1
            elif self._fault.plain_text:
                return self._fault_response(error)
            else:
                errors.append(f"{entity_id}: PublishError({rust_debug(error)})")
        return _json_response({"deleted": deleted, "failed": len(errors), "errors": errors})

    async def _handle_admin_config(self, request: web.Request) -> web.Response:
        """``GET /api/admin/config``: the runtime limits."""
        return _json_response(
            {
                "rate_limit_enabled": True,
                "rate_limit_per_namespace_per_minute": self.config.rate_limit_per_minute,
                "body_size_limit_single_bytes": self.config.body_limit_single,
                "body_size_limit_batch_bytes": self.config.body_limit_batch,
            }
        )

    # ------------------------------------------------------------------ WebSocket

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/ws``: no auth, query ignored, nothing sent on connect."""
        rejection = _upgrade_rejection(request)
        if rejection is not None:
            return rejection
        ws = web.WebSocketResponse(
            autoping=True, heartbeat=None, compress=False, max_msg_size=_WS_MAX_MSG_SIZE
        )
        conn = _Connection(ws, request, self.config.state_channel_capacity)
        # Registered before the handshake so a tick racing it already counts the socket.
        self._connections.add(conn)
        try:
            await ws.prepare(request)
            for frame in self._pending_raw:
                conn.push("raw", frame)
            self._pending_raw.clear()
            sender = self._spawn(conn.run_sender(self._speaking), "flux-sim-ws-sender")
            try:
                await self._read_client(conn)
            finally:
                await _cancel_and_wait(sender)
        finally:
            self._connections.discard(conn)
            conn.done.set()
        return ws

    async def _read_client(self, conn: _Connection) -> None:
        async for message in conn.ws:
            if message.type is not WSMsgType.TEXT:
                continue  # binary and pong frames are ignored; pings are auto-answered
            parsed = parse_client_message(message.data)
            if parsed is None:
                _log.debug("ignoring client frame %.200r", message.data)
            elif parsed[0] == "subscribe":
                conn.subscriptions.add(parsed[1])
            else:
                conn.subscriptions.discard(parsed[1])


def _bucket_key(event: FluxEvent) -> str:
    """The rate-limit bucket: the entity's namespace, else the stream."""
    entity_id = event.entity_id
    if entity_id is not None:
        try:
            namespace = parse_entity_id(entity_id)
        except EntityIdError:
            namespace = None
        if namespace is not None:
            return namespace
    return event.stream


def _entity_matches(entity_id: str, namespace: str | None, prefix: str | None) -> bool:
    if namespace is not None:
        head, slash, _ = entity_id.partition("/")
        if not slash or head != namespace:
            return False
    return prefix is None or entity_id.startswith(prefix)


def _parse_since(raw: str | None) -> datetime | None:
    """chrono's ``parse_from_rfc3339``; None when it would fail. Default: now - 24 h."""
    if raw is None:
        return datetime.now(UTC) - _SINCE_DEFAULT
    match = _RFC3339.fullmatch(raw)
    if match is None:
        return None
    date, clock, fraction, offset = match.groups()
    micros = (fraction or "")[:6].ljust(6, "0")
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{date}T{clock}.{micros}{offset}")
    except ValueError:
        return None


def _parse_limit(raw: str | None) -> int | str:
    """The clamped ``limit``, or serde_urlencoded's error text for a bad value."""
    if raw is None:
        return 100
    if not raw:
        return "cannot parse integer from empty string"
    digits = raw.removeprefix("+")
    if not digits or not digits.isascii() or not digits.isdigit():
        return "invalid digit found in string"
    value = int(digits)
    if value >= 2**64:
        return "number too large to fit in target type"
    return max(1, min(value, 500))


def _is_json_content_type(value: str | None) -> bool:
    if value is None:
        return False
    mime = value.split(";", 1)[0].strip().lower()
    kind, _, subtype = mime.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _header_has_token(value: str | None, token: str) -> bool:
    return value is not None and any(part.strip().lower() == token for part in value.split(","))


def _upgrade_rejection(request: web.Request) -> web.Response | None:
    """axum's ``WebSocketUpgrade`` rejections for a plain GET (plain text)."""
    headers = request.headers
    if not _header_has_token(headers.get("Connection"), "upgrade"):
        return _plain(400, "Connection header did not include 'upgrade'")
    if headers.get("Upgrade", "").lower() != "websocket":
        return _plain(400, "`Upgrade` header did not include 'websocket'")
    if headers.get("Sec-WebSocket-Version") != "13":
        return _plain(400, "`Sec-WebSocket-Version` header did not include '13'")
    if "Sec-WebSocket-Key" not in headers:
        return _plain(400, "`Sec-WebSocket-Key` header missing")
    return None


FLUX_SIM: web.AppKey[FluxSim] = web.AppKey("flux_sim", FluxSim)


@web.middleware
async def _flux_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bare 404/405 like axum's fallbacks; 503 while a restart keeps Flux down."""
    if request.app[FLUX_SIM].is_down:
        response = _plain(503, _DOWN_TEXT)
        response.force_close()
        return response
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return web.Response(status=404)
    except web.HTTPMethodNotAllowed:
        return web.Response(status=405)


def create_flux_app(config: FluxSimConfig | None = None) -> web.Application:
    """Build the simulator app; it works on a copy of ``config``."""
    config = FluxSimConfig() if config is None else config.model_copy(deep=True)
    limits = (config.body_limit_single, config.body_limit_batch, config.axum_body_limit or 0)
    app = web.Application(client_max_size=max(limits) + 1, middlewares=[_flux_middleware])
    sim = FluxSim(config)
    app[FLUX_SIM] = sim
    router = app.router
    router.add_post("/api/events", sim._handle_publish)
    router.add_get("/api/events", sim._handle_history)
    router.add_post("/api/events/batch", sim._handle_batch)
    router.add_get("/api/state/entities", sim._handle_list_entities)
    router.add_post("/api/state/entities/delete", sim._handle_batch_delete)
    router.add_get("/api/state/entities/{id}", sim._handle_get_entity)
    router.add_delete("/api/state/entities/{id}", sim._handle_delete_entity)
    router.add_get("/api/admin/config", sim._handle_admin_config)
    router.add_get("/api/ws", sim._handle_ws)
    app.cleanup_ctx.append(sim._lifecycle)
    app.on_shutdown.append(sim._on_shutdown)
    return app


async def run_flux_sim(
    config: FluxSimConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    """Serve the simulator on ``host:port`` (0 picks a free port).

    Returns the started runner (``await runner.cleanup()`` stops it) and the bound
    port. Served this way, ``FluxSim.restart`` really closes the listening socket.
    """
    app = create_flux_app(config)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound: int = runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise
    app[FLUX_SIM]._attach_listener(runner, site, host)
    return runner, bound
