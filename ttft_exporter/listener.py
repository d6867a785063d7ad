"""The exporter's own listening socket, hardened against idle and slow clients: a cap on
open connections (excess ones are closed at accept, before they can use up file
descriptors the probes need), one deadline for the TLS handshake plus the first request
head, TLS started per connection after the cap is checked (so handshakes count too),
and no log line per connection or per accept error."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from ttft_exporter.errors import HTTPDropReason
from ttft_exporter.logs import fields
from ttft_exporter.selfmetrics import ExporterMetrics

__all__ = [
    "BoundSockets",
    "ConnectionGuard",
    "GatedSite",
    "ListenerLimits",
    "RateLimitedLog",
    "bind_error_text",
    "install_accept_error_handler",
    "raise_fd_limit",
]

log = logging.getLogger("ttft_exporter.server")

DEFAULT_MAX_CONNECTIONS = 256
# A quarter of the cap per client address: one slowloris client cannot lock out
# Prometheus, a reload or a /probe call from another address.
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 64
DEFAULT_READ_HEADER_TIMEOUT = 10.0
DEFAULT_IDLE_TIMEOUT = 30.0
# asyncio's message when accept() fails with EMFILE, ENFILE, ENOBUFS or ENOMEM.
_ACCEPT_ERROR = "socket.accept() out of system resource"


@dataclass(frozen=True)
class ListenerLimits:
    """Bounds of the exporter's HTTP server."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_client: int = DEFAULT_MAX_CONNECTIONS_PER_CLIENT
    # From accept to the end of the first request head, TLS handshake included.
    read_header_timeout: float = DEFAULT_READ_HEADER_TIMEOUT
    # Keep-alive: how long a connection may wait for its next request (aiohttp closes
    # it then, and also when a later request head is still incomplete by then).
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT


class RateLimitedLog:
    """One warning line per `interval` at most, telling how many were held back."""

    def __init__(self, interval: float = 60.0, monotonic: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._monotonic = monotonic
        self._next = 0.0
        self._held_back = 0

    def warning(self, message: str, **values: Any) -> None:
        now = self._monotonic()
        if now < self._next:
            self._held_back += 1
            return
        self._next = now + self._interval
        log.warning(message, extra=fields(**values, suppressed_since_last=self._held_back))
        self._held_back = 0


class ConnectionGuard:
    """Counts the open connections of one listener and refuses those over the cap."""

    def __init__(
        self,
        limits: ListenerLimits,
        metrics: ExporterMetrics,
        *,
        log_interval: float = 60.0,
    ) -> None:
        self.limits = limits
        self._metrics = metrics
        self._refused_log = RateLimitedLog(log_interval)
        self._timeout_log = RateLimitedLog(log_interval)
        self._client_log = RateLimitedLog(log_interval)
        self.open = 0
        # Open connections per client address; an address leaves when its last closes,
        # so the map is bounded by the cap.
        self.by_client: dict[str, int] = {}
        self.handshakes: set[asyncio.Task[None]] = set()

    def admit(self, client: str) -> bool:
        """Count a new connection from `client` (an address) in, or refuse it: over
        the cap, or over the client's share of it (counted, rate-limited log)."""
        if self.open >= self.limits.max_connections:
            self._metrics.http_dropped.labels(HTTPDropReason.LIMIT).inc()
            self._refused_log.warning(
                "connection limit reached; closing new connections at once",
                max_connections=self.limits.max_connections,
            )
            return False
        held = self.by_client.get(client, 0)
        if held >= self.limits.max_connections_per_client:
            self._metrics.http_dropped.labels(HTTPDropReason.CLIENT_LIMIT).inc()
            self._client_log.warning(
                "a client reached its connection limit; closing its new connections",
                max_connections_per_client=self.limits.max_connections_per_client,
            )
            return False
        self.by_client[client] = held + 1
        self.open += 1
        self._metrics.http_connections.set(self.open)
        return True

    def release(self, client: str) -> None:
        """A counted connection of `client` closed."""
        held = self.by_client.pop(client, 1) - 1
        if held > 0:
            self.by_client[client] = held
        self.open -= 1
        self._metrics.http_connections.set(self.open)

    def header_timeout(self) -> None:
        """A connection closed for being too slow to send its first request head."""
        self._metrics.http_dropped.labels(HTTPDropReason.HEADER_TIMEOUT).inc()
        self._timeout_log.warning(
            "closing connections that sent no complete request in time",
            read_header_timeout_seconds=self.limits.read_header_timeout,
        )


class _GatedConnection(asyncio.Protocol):
    """Stands between the socket and aiohttp's request handler: admission, the header
    deadline, the TLS upgrade; then forwards every event to the handler."""

    def __init__(
        self,
        guard: ConnectionGuard,
        make_handler: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._guard = guard
        self._make_handler = make_handler
        self._ssl_context = ssl_context
        self._raw: asyncio.Transport | None = None
        self._handler: asyncio.Protocol | None = None
        self._early: list[bytes] = []
        self._head_seen = False
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None
        self._counted = False
        self._client = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = cast(asyncio.Transport, transport)
        peer = raw.get_extra_info("peername")
        self._client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._guard.admit(self._client):
            # abort(): no lingering close, the descriptor is free at once.
            raw.abort()
            return
        self._counted = True
        self._raw = raw
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._guard.limits.read_header_timeout, self._header_deadline)
        if self._ssl_context is None:
            self._attach(raw)
            return
        task = loop.create_task(self._start_tls(raw, self._ssl_context))
        self._guard.handshakes.add(task)
        task.add_done_callback(self._guard.handshakes.discard)

    async def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                raw,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self._guard.limits.read_header_timeout,
            )
        except OSError:
            # A failed or timed-out handshake (ssl.SSLError and TimeoutError are
            # OSErrors): the client's problem, not worth a line. asyncio does not call
            # connection_lost() for a connection lost during the handshake: release here.
            raw.abort()
            self._closed()
            return
        except asyncio.CancelledError:
            raw.abort()
            self._closed()
            raise
        if tls is None or tls.is_closing():
            raw.abort()
            self._closed()
            return
        self._attach(tls)

    def _attach(self, transport: asyncio.Transport) -> None:
        self._handler = self._make_handler()
        self._handler.connection_made(transport)
        for data in self._early:
            self._handler.data_received(data)
        self._early.clear()

    def _header_deadline(self) -> None:
        self._timer = None
        if not self._head_seen and self._raw is not None:
            self._guard.header_timeout()
            self._raw.abort()

    def data_received(self, data: bytes) -> None:
        if not self._head_seen:
            seen = self._tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self._head_seen = True
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            else:
                self._tail = seen[-3:]
        if self._handler is None:
            # TLS can hand over application data before start_tls() has returned.
            self._early.append(data)
        else:
            self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        if self._handler is None:
            return None
        return self._handler.eof_received()

    def _closed(self) -> None:
        """Free the slot, once, whichever way the connection ended."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._counted:
            self._counted = False
            self._guard.release(self._client)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed()
        if self._handler is not None:
            self._handler.connection_lost(exc)
            self._handler = None

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()


class _LateFactory:
    """A protocol factory whose real factory is set after the sockets are bound."""

    def __init__(self) -> None:
        self.factory: Callable[[], asyncio.Protocol] | None = None

    def __call__(self) -> asyncio.Protocol:
        if self.factory is None:  # the sockets do not listen before a site serves them
            raise RuntimeError("a connection arrived before the site started")
        return self.factory()


class BoundSockets:
    """Listening sockets bound before the application starts, so that a port in use
    fails the process before any probe runs or any line is logged. The sockets accept
    nothing until a GatedSite starts serving them."""

    def __init__(self, server: asyncio.Server, factory: _LateFactory) -> None:
        self.server = server
        self._factory = factory

    @classmethod
    async def bind(cls, host: str, port: int, *, backlog: int = 128) -> BoundSockets:
        """Bind `host:port` (every address the host resolves to). Raises OSError."""
        factory = _LateFactory()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            factory, host, port, backlog=backlog, reuse_address=True, start_serving=False
        )
        return cls(server, factory)

    @property
    def port(self) -> int:
        """The bound port (useful after binding port 0)."""
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def serve(self, factory: Callable[[], asyncio.Protocol]) -> None:
        """Start accepting connections, each handled by a protocol from `factory`."""
        self._factory.factory = factory
        await self.server.start_serving()


def bind_error_text(exc: OSError) -> str:
    """`address already in use` rather than asyncio's `[Errno 98] error while
    attempting to bind on address ('127.0.0.1', 9): address already in use`."""
    if exc.errno is not None and not isinstance(exc, socket.gaierror):
        return os.strerror(exc.errno).lower()
    return str(exc.strerror or exc)


class GatedSite(web.BaseSite):
    """A TCP site of an `AppRunner` whose connections pass through a ConnectionGuard;
    with `ssl_context`, HTTPS only."""

    __slots__ = ("_bound", "_guard", "_host", "_port", "_sockets", "_tls")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        guard: ConnectionGuard,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 128,
        sockets: BoundSockets | None = None,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard
        self._tls = ssl_context
        self._bound: int | None = None
        # Bound beforehand (the CLI binds before anything starts), or at start().
        self._sockets = sockets

    @property
    def name(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        """The bound port (the requested one before start)."""
        return self._bound if self._bound is not None else self._port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("call runner.setup() before starting a site")
        guard, context = self._guard, self._tls
        sockets = self._sockets or await BoundSockets.bind(
            self._host, self._port, backlog=self._backlog
        )
        self._server = sockets.server
        await sockets.serve(lambda: _GatedConnection(guard, server, context))
        self._bound = sockets.port

    async def stop(self) -> None:
        for task in list(self._guard.handshakes):
            task.cancel()
        await super().stop()


def install_accept_error_handler(
    loop: asyncio.AbstractEventLoop, metrics: ExporterMetrics, interval: float = 60.0
) -> None:
    """Count accept() failures for lack of descriptors or memory and log them once a
    minute. asyncio reports each one to the loop's exception handler, up to `backlog`
    times per loop turn, with a traceback: 4 MB of log in 8 s at 256 descriptors.
    Every other exception the loop reports still reaches the previous handler."""
    previous = loop.get_exception_handler()
    throttled = RateLimitedLog(interval)

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _ACCEPT_ERROR:
            metrics.http_accept_errors.inc()
            throttled.warning(
                "cannot accept connections: out of file descriptors or memory",
                err=str(context.get("exception")),
            )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft limit of open files to the hard limit (probes, the server and
    Flux all need descriptors); returns the (soft, hard) limits in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.debug("cannot raise the open-files limit", extra=fields(err=str(exc)))
    return soft, hard
