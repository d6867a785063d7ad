"""A hostile LLM endpoint in a process of its own, for tests: it answers every request
with HTTP 200 and an SSE body that breaks a bound, as fast as the socket takes it.

Run as `python -m tests.hostile_server MODE [MEGABYTES]`; it prints its port on the
first line of stdout and serves until killed. A separate process, so its own CPU use
never runs on the event loop of the exporter under test (as a remote server would not).

Modes:
- `long-line`: `data: ` then MEGABYTES of `x` without any line end.
- `huge-stream`: MEGABYTES of well-formed one-token chunks, never `[DONE]`.
- `ndjson-stream`: MEGABYTES of well-formed Ollama `/api/generate` lines (NDJSON), never
  `done: true`.
- `nested-events`: SSE events of just under 1 MiB (inside the line limit), each a JSON
  object holding 350,000 empty arrays.
"""

from __future__ import annotations

import asyncio
import sys

_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
)
_TOKEN = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'
_LINE = b'{"model":"m","created_at":"2025-01-01T00:00:00Z","response":"x","done":false}\n'
_BLOCK = 1 << 16
# Just under the framer's 1 MiB event limit, so only the decoder can refuse it.
_NESTED = b'data: {"x":[' + b"[]," * 349_000 + b"[]]}\n\n"


def _body_block(mode: str) -> tuple[bytes, bytes]:
    """The first bytes of the body and the block repeated after them."""
    if mode == "long-line":
        return b"data: ", b"x" * _BLOCK
    if mode == "huge-stream":
        return b"", _TOKEN * (_BLOCK // len(_TOKEN))
    if mode == "ndjson-stream":
        return b"", _LINE * (_BLOCK // len(_LINE))
    if mode == "nested-events":
        return b"", _NESTED
    raise SystemExit(f"unknown mode {mode!r}")


async def _serve(mode: str, total: int) -> None:
    first, block = _body_block(mode)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # The request head; the body (a few hundred bytes) is never needed.
            await reader.readuntil(b"\r\n\r\n")
            writer.write(_HEAD + first)
            sent = 0
            while sent < total:
                writer.write(block)
                await writer.drain()
                sent += len(block)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up, as it should
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main() -> None:
    """Entry point: MODE [MEGABYTES] (default 200)."""
    mode = sys.argv[1]
    megabytes = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    asyncio.run(_serve(mode, megabytes << 20))


if __name__ == "__main__":
    main()
