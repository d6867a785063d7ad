"""The hostile peers of the soak benchmark (issue #8), on 127.0.0.1: servers that
produce each fault for real, and a slowloris client. They run in the benchmark's own
process, never in the exporter's, so their CPU never runs on the exporter's loop.

The two bulk servers (a 200 MB line without end, a stream larger than
`max_response_bytes`) are `tests/hostile_server.py`, started by the benchmark in
processes of their own as `bench_hostile.py` does; the LLM simulator serves the
stalling stream and the answer for the backtracking `expect`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

__all__ = [
    "ECHO_FORMS",
    "HOSTILE_FLUX_FRAMES",
    "MALFORMED_HTTP",
    "CaptureServer",
    "EchoKeyServer",
    "FluxFramesServer",
    "GarbageHTTPServer",
    "ImplausibleUsageServer",
    "RedirectServer",
    "Slowloris",
    "free_port",
]

ROLE = '{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}'
TEXT = '{"choices":[{"index":0,"delta":{"content":"hi "}}]}'


def free_port() -> int:
    """A port that was free a moment ago (the child binds it right after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _sse(*events: str) -> bytes:
    return "".join(f"data: {e}\n\n" for e in events).encode()


def _u_escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if i % 2 else c for i, c in enumerate(text))


def _percent(text: str) -> str:
    return "".join(f"%{b:02X}" for b in text.encode())


class _AppServer:
    """An aiohttp app on a free 127.0.0.1 port."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """Base URL of the OpenAI-compatible API."""
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        """Listen on a free port."""
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class CaptureServer(_AppServer):
    """Where the redirect points: counts what reaches it and which credentials came
    along (the exporter must send it nothing: redirects are not followed)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self.credential_headers: Counter[str] = Counter()

    def app(self) -> web.Application:
        async def record(request: web.Request) -> web.Response:
            self.requests += 1
            for name in ("Authorization", "X-Auth-Token", "Ocp-Apim-Subscription-Key"):
                if name in request.headers:
                    self.credential_headers[name] += 1
            return web.Response(status=200, body=_sse(ROLE, TEXT, "[DONE]"))

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        return app


class RedirectServer(_AppServer):
    """Answers every request with 307 to another local server (item 12)."""

    def __init__(self, location: str) -> None:
        super().__init__()
        self.location = location
        self.requests = 0

    def app(self) -> web.Application:
        async def redirect(_request: web.Request) -> web.Response:
            self.requests += 1
            return web.Response(status=307, headers={"Location": self.location})

        app = web.Application()
        app.router.add_post("/v1/chat/completions", redirect)
        return app


class ImplausibleUsageServer(_AppServer):
    """A well-formed stream whose usage chunk claims 1e18 completion tokens (item 15)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def app(self) -> web.Application:
        usage = json.dumps(
            {
                "choices": [],
                "usage": {
                    "prompt_tokens": 5,
                    "completion_tokens": 1e18,
                    "total_tokens": 1e18,
                },
            }
        )

        async def stream(request: web.Request) -> web.StreamResponse:
            self.requests += 1
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            # The client may hang up at any point (its deadline, the exporter stopping).
            with contextlib.suppress(ConnectionError):
                await response.write(_sse(ROLE))
                for _ in range(5):
                    await asyncio.sleep(0.02)
                    await response.write(_sse(TEXT))
                await response.write(_sse(usage, "[DONE]"))
            return response

        app = web.Application()
        app.router.add_post("/v1/chat/completions", stream)
        return app


# How an error body carries the credentials back, one form per request in turn
# (tests/unit/test_secrets.py has the same forms as tests).
ECHO_FORMS: dict[str, Callable[[str, str], str]] = {
    "straddles-4096": lambda k, t: " \n" * 2036 + "bad key: " + k + " token " + t,
    "straddles-excerpt": lambda k, t: "x" * 180 + k + " " + t + " y" * 3000,
    "json-u-escaped": lambda k, t: (
        json.dumps({"error": {"message": "Incorrect API key: "}})[:-3]
        + _u_escaped(k)
        + " "
        + _u_escaped(t)
        + '"}}'
    ),
    "url-encoded": lambda k, t: f"see https://example.com/login?key={_percent(k)}&t={_percent(t)}",
}


class EchoKeyServer(_AppServer):
    """Answers 401 with a body that echoes the API key and the X-Auth-Token value
    (items 13 and 14), in each of ECHO_FORMS in turn."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self.credentials_seen = 0
        self._forms = itertools.cycle(ECHO_FORMS.values())

    def app(self) -> web.Application:
        async def reject(request: web.Request) -> web.Response:
            self.requests += 1
            key = request.headers.get("Authorization", "").removeprefix("Bearer ")
            token = request.headers.get("X-Auth-Token", "")
            if key and token:
                self.credentials_seen += 1
            body = next(self._forms)(key, token)
            return web.Response(status=401, text=body, content_type="text/plain")

        app = web.Application()
        app.router.add_post("/v1/chat/completions", reject)
        return app


def _metrics_frame(total: object, **extra: object) -> str:
    frame: dict[str, object] = {
        "type": "metrics_update",
        "timestamp": "2026-02-14T10:30:45.123456789Z",
        "entities": {"total": 1},
        "events": {"total": total, "rate_per_second": 0.0},
        "websocket": {"connections": 1},
        "publishers": {"active": 0},
    }
    frame.update(extra)
    return json.dumps(frame)


def _state_frame(timestamp: str) -> str:
    return json.dumps(
        {
            "type": "state_update",
            "entity_id": "sensor-1",
            "property": "t",
            "value": 1,
            "timestamp": timestamp,
        }
    )


# Values no Flux sends (item 1); tests/unit/flux/test_monitor.py has the same list.
HOSTILE_FLUX_FRAMES = [
    _metrics_frame(-5),
    _metrics_frame(10**23),
    _metrics_frame("12"),
    _metrics_frame(True),
    _metrics_frame(3, events=[1, 2]),
    _state_frame("2026-02-14T10:30:45." + "1" * 5000 + "Z"),
    _state_frame("0001-01-01T00:00:00Z"),
    _state_frame("2026-02-14T10:30:45.\u0661Z"),
    "{not json",
]


class FluxFramesServer:
    """A Flux-like WebSocket (`/api/ws`) that sends a real metrics_update every
    `every` seconds, each followed by one hostile frame in turn."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self.connections = 0
        self.hostile_sent = 0
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._frames = itertools.cycle(HOSTILE_FLUX_FRAMES)

    @property
    def url(self) -> str:
        """Flux base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        self.connections += 1
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        total = 0
        with contextlib.suppress(ConnectionError):
            while not ws.closed:
                total += 1
                await ws.send_str(_metrics_frame(total))
                await ws.send_str(next(self._frames))
                self.hostile_sent += 1
                # Reads (subscribe frames, pongs are automatic) until the next tick.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.every):
                        async for _message in ws:
                            pass
        return ws

    async def start(self) -> None:
        """Listen on a free port."""
        app = web.Application()
        app.router.add_get("/api/ws", self._ws)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Close the listener and the WebSockets."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


# Answers no HTTP client can parse (item 3); tests/unit/flux/test_canary.py has them.
MALFORMED_HTTP = [
    b"garbage\r\n\r\n",
    b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
]


class GarbageHTTPServer:
    """A raw TCP server answering every request with malformed HTTP, in turn: the
    Flux instance whose canary (and WebSocket upgrade) get nonsense."""

    def __init__(self) -> None:
        self.requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._answers = itertools.cycle(MALFORMED_HTTP)

    @property
    def url(self) -> str:
        """Flux base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            writer.write(next(self._answers))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except TimeoutError:
            pass
        finally:
            writer.close()

    async def start(self) -> None:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


@dataclass
class Slowloris:
    """Holds `connections` idle connections to the exporter (item 9): each sends part
    of a request head, then one more header byte every `trickle` seconds, never the
    end of the head. A connection the exporter closes is opened again after
    `reconnect_delay` (an attacker that keeps its count up without a busy loop)."""

    port: int
    connections: int = 300
    trickle: float = 5.0
    reconnect_delay: float = 0.5
    opened: int = 0
    held: int = 0
    closed_by_server: int = 0
    connect_errors: Counter[str] = field(default_factory=Counter)
    held_max: int = 0
    lifetimes: list[float] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        """Open the connections (each in its own task, staggered over ~1 s)."""
        for index in range(self.connections):
            self._tasks.append(asyncio.create_task(self._one(index / self.connections)))

    async def stop(self) -> None:
        """Close every connection."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _one(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(delay)
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError as exc:
                self.connect_errors[type(exc).__name__] += 1
                await asyncio.sleep(self.reconnect_delay)
                continue
            self.opened += 1
            self.held += 1
            self.held_max = max(self.held_max, self.held)
            began = loop.time()
            try:
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                while True:
                    # The server hanging up shows as EOF (or a reset) on the read.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.trickle):
                            if not await reader.read(1024):
                                break
                    writer.write(b"X")
                    await writer.drain()
            except OSError:
                pass
            finally:
                self.held -= 1
                writer.close()
            # Reached only when the exporter hung up (a stop cancels the task instead).
            self.closed_by_server += 1
            self.lifetimes.append(loop.time() - began)
            await asyncio.sleep(self.reconnect_delay)

    def summary(self) -> dict[str, object]:
        """What the attack achieved."""
        lifetimes = sorted(self.lifetimes)
        median = lifetimes[len(lifetimes) // 2] if lifetimes else math.nan
        return {
            "connections_wanted": self.connections,
            "opened": self.opened,
            "held_now": self.held,
            "held_max": self.held_max,
            "closed_by_server": self.closed_by_server,
            "connect_errors": dict(self.connect_errors),
            "median_lifetime_s": median,
        }
