"""A real forward proxy for tests, on 127.0.0.1 over raw asyncio sockets: plain HTTP
forwarding (absolute-form request line) and CONNECT tunnelling, optional Basic
credentials, a CONNECT refusal mode, and a record of every request it handled."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass, field

from yarl import URL

_HEAD_LIMIT = 64 * 1024


@dataclass
class ProxiedRequest:
    """One request the proxy handled: its method, target and Proxy-Authorization."""

    method: str
    target: str
    proxy_authorization: str | None


@dataclass
class ForwardProxy:
    """`await ForwardProxy(...).start()`; `.url` is `http://127.0.0.1:<port>`.

    `credentials` (user, password): requests without matching Basic credentials get a
    407. `refuse_connect`: CONNECT is answered with this status instead of a tunnel.
    """

    credentials: tuple[str, str] | None = None
    refuse_connect: int | None = None
    requests: list[ProxiedRequest] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    async def start(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _HEAD_LIMIT:
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = [line for line in lines[1:] if line]
        auth = next(
            (
                h.split(":", 1)[1].strip()
                for h in headers
                if h.lower().startswith("proxy-authorization:")
            ),
            None,
        )
        self.requests.append(ProxiedRequest(method, target, auth))
        if self.credentials is not None:
            user, password = self.credentials
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            if auth != f"Basic {token}":
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n'
                    b"Connection: close\r\n\r\n"
                )
                await writer.drain()
                return
        if method == "CONNECT":
            await self._tunnel(target, reader, writer)
            return
        url = URL(target)
        assert url.host is not None and url.port is not None
        up_reader, up_writer = await asyncio.open_connection(url.host, url.port)
        kept = [h for h in headers if not h.lower().startswith("proxy-")]
        origin = url.raw_path_qs or "/"
        fields = "".join(f"{h}\r\n" for h in kept)
        up_writer.write(f"{method} {origin} {version}\r\n{fields}\r\n".encode("latin-1"))
        await self._pipe_both(reader, writer, up_reader, up_writer)

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.refuse_connect is not None:
            writer.write(
                f"HTTP/1.1 {self.refuse_connect} Refused\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            return
        host, _, port = target.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await self._pipe_both(reader, writer, up_reader, up_writer)

    async def _pipe_both(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()
