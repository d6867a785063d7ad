"""Client sessions and TLS contexts of the probes, and the connection phase stamps
(DNS, connect, TLS) that aiohttp trace hooks and a TLS context subclass collect for the
request in flight."""

from __future__ import annotations

import contextlib
import math
import os
import ssl
from collections.abc import Iterator
from contextvars import ContextVar
from types import SimpleNamespace
from typing import Any

import aiohttp

from ttft_exporter.clock import Clock
from ttft_exporter.targets import TLSConfig

__all__ = [
    "PhaseRecorder",
    "build_ssl_context",
    "create_session",
    "recording_phases",
    "shared_ssl_context",
]

_NS = 1e-9
_CURRENT_PHASES: ContextVar[PhaseRecorder | None] = ContextVar("ttft_phases", default=None)


@contextlib.contextmanager
def recording_phases(recorder: PhaseRecorder) -> Iterator[None]:
    """Stamp the TLS handshake of connections this task opens into `recorder`."""
    token = _CURRENT_PHASES.set(recorder)
    try:
        yield
    finally:
        _CURRENT_PHASES.reset(token)


class PhaseRecorder:
    """Connection phase stamps for one request, filled by aiohttp trace hooks and by
    the TLS context. All stamps are monotonic nanoseconds."""

    __slots__ = (
        "clock",
        "conn_end",
        "conn_start",
        "dns_end",
        "dns_start",
        "reused",
        "tls_start",
    )

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.dns_start: int | None = None
        self.dns_end: int | None = None
        self.conn_start: int | None = None
        self.conn_end: int | None = None
        self.tls_start: int | None = None
        self.reused = False

    def new_hop(self) -> None:
        """Forget the connection stamps before the next request of a redirect chain:
        the phases describe the connection of the final response."""
        self.dns_start = self.dns_end = self.conn_start = self.conn_end = None
        self.tls_start = None
        self.reused = False

    def phases(self, start_ns: int, headers_ns: int | None) -> dict[str, float]:
        """dns, connect, tls and headers (connection ready to response headers) in
        seconds, each one of: its duration; 0 when the probe did not need it (every
        connection phase on a reused connection, dns for an address or a cached name,
        tls over plain HTTP); NaN when it was needed but not measured, because it
        failed or the probe never got that far (after a refused connect: connect, tls
        and headers)."""
        if self.reused:
            dns = connect = tls = 0.0
        else:
            if self.dns_start is None:
                # No lookup: an address or a cached name needed none, once connecting.
                dns = 0.0 if self.conn_start is not None else math.nan
            else:
                dns = _span(self.dns_start, self.dns_end)
            tcp_from = self.dns_end if self.dns_end is not None else self.conn_start
            tcp_to = self.tls_start if self.tls_start is not None else self.conn_end
            connect = _span(tcp_from, tcp_to) if self.conn_start is not None else math.nan
            if self.tls_start is not None:
                tls = _span(self.tls_start, self.conn_end)
            else:
                # No handshake started: plain HTTP once connected, not reached otherwise.
                tls = 0.0 if self.conn_end is not None else math.nan
        ready = self.conn_end if self.conn_end is not None else start_ns
        headers = _span(ready, headers_ns)
        return {"dns": dns, "connect": connect, "tls": tls, "headers": headers}


def _span(start: int | None, end: int | None) -> float:
    """Seconds from start to end; NaN if either end was never stamped."""
    if start is None or end is None:
        return math.nan
    return max(0, end - start) * _NS


class _TimedSSLContext(ssl.SSLContext):
    """An SSLContext that stamps the start of the TLS handshake.

    asyncio wraps the already-connected socket with `wrap_bio` right before the
    handshake, in the task that opens the connection, so the stamp splits aiohttp's
    single connection-create span into TCP connect and TLS.
    """

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        recorder = _CURRENT_PHASES.get()
        if recorder is not None and recorder.tls_start is None:
            recorder.tls_start = recorder.clock.monotonic_ns()
        return super().wrap_bio(*args, **kwargs)


_CONTEXTS: dict[tuple[TLSConfig, str, tuple[float, ...]], ssl.SSLContext] = {}


def shared_ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """The TLS context for these settings, shared by every target that has them.

    Loading the system trust store costs ~18 ms of CPU and ~0.8 MB per context; with
    one per target, startup and reloads of many targets would stall the event loop (and
    the probes in flight). Keyed on the files' contents as read at load and their
    modification times too, so a reload picks up a rotated CA or client certificate.
    """
    files = (tls.ca_file, tls.cert_file, tls.key_file)
    mtimes = tuple(os.stat(f).st_mtime if f is not None else 0.0 for f in files)
    # The contents read at load as well: a file rewritten within the clock's
    # granularity keeps its mtime.
    key = (tls, tls.content_digest, mtimes)
    context = _CONTEXTS.get(key)
    if context is None:
        if len(_CONTEXTS) > 256:
            _CONTEXTS.clear()
        context = _CONTEXTS[key] = build_ssl_context(tls)
    return context


def build_ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """A new client TLS context from a target's `tls` settings."""
    context = _TimedSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif tls.ca_file is not None:
        context.load_verify_locations(cafile=str(tls.ca_file))
    else:
        context.load_default_certs()
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context


def _recorder(params: SimpleNamespace) -> PhaseRecorder | None:
    ctx = params.trace_request_ctx
    return ctx if isinstance(ctx, PhaseRecorder) else None


async def _on_dns_start(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (rec := _recorder(ctx)) is not None:
        rec.dns_start = rec.clock.monotonic_ns()


async def _on_dns_end(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (rec := _recorder(ctx)) is not None:
        rec.dns_end = rec.clock.monotonic_ns()


async def _on_conn_start(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (rec := _recorder(ctx)) is not None:
        rec.conn_start = rec.clock.monotonic_ns()


async def _on_conn_end(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (rec := _recorder(ctx)) is not None:
        rec.conn_end = rec.clock.monotonic_ns()


async def _on_reuse(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (rec := _recorder(ctx)) is not None:
        rec.reused = True


def _trace_config() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_dns_resolvehost_start.append(_on_dns_start)
    trace.on_dns_resolvehost_end.append(_on_dns_end)
    trace.on_connection_create_start.append(_on_conn_start)
    trace.on_connection_create_end.append(_on_conn_end)
    trace.on_connection_reuseconn.append(_on_reuse)
    return trace


def create_session(
    tls: TLSConfig, *, reuse_connections: bool, limit: int = 0
) -> aiohttp.ClientSession:
    """The client session of one target. Without reuse every request opens a fresh
    connection and resolves the name again, so each probe pays DNS, connect and TLS."""
    connector = aiohttp.TCPConnector(
        ssl=shared_ssl_context(tls),
        force_close=not reuse_connections,
        use_dns_cache=reuse_connections,
        limit=limit,
        # No parallel happy-eyeballs race: addresses are tried one after the other,
        # so a probe measures one connection, as blackbox does.
        happy_eyeballs_delay=None,
    )
    return aiohttp.ClientSession(
        connector=connector,
        trace_configs=[_trace_config()],
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=False,
    )
