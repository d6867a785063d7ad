"""Benchmark: the CPU floor under the load tester's figure, at 200 concurrent reference
streams (first text at 300 ms, 20 chunks of 2 tokens 20 ms apart, 40 tokens), the
simulator in a child process.

What it answers: how much of the load tester's client CPU per 1M tokens is ours, and
how much is the stack under it. Three clients read the same streams on the same loop
(`--event-loop asyncio|uvloop`, run once for each):
- `raw`: an asyncio Protocol on kept-alive connections that writes one prebuilt
  request and counts bytes to the `[DONE]` terminator: no HTTP client, no parsing, no
  per-read task wake-up. The floor of asyncio (or uvloop) itself;
- `aiohttp`: aiohttp's client reading each response with `content.iter_any()` and doing
  nothing with the bytes: the floor of any probe engine built on aiohttp's reader;
- `engine`: `ttft-exporter bench`'s Runner (the probe engine: stamping, framing,
  decoding, the timeline, the per-request record and the self-watch).

The streams start 5 ms apart as the Runner's do (streams in step share loop passes and
cost less). CPU is `time.process_time()` of this process over 12 s (5 s with `--quick`)
of steady state, after the ramp and a 2 s warm-up, against the requests completed in
that window; tokens are 40 per request (the reference stream's usage).

Usage: ``python -m benchmarks.bench_floor [--quick] [--event-loop asyncio|uvloop]``
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
from yarl import URL

from benchmarks.bench_load import _step
from benchmarks.common import REFERENCE, SimProcess, bench_main, log, sim_process
from ttft_exporter.bench.profile import Stop
from ttft_exporter.bench.runner import ramp_seconds

STREAMS = 200
TOKENS_PER_REQUEST = 40  # the reference stream's usage
_BODY = json.dumps(
    {
        "model": "ref",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "max_tokens": 64,
        "stream_options": {"include_usage": True},
    }
).encode()
_DONE = b"data: [DONE]"


class _Counter:
    def __init__(self) -> None:
        self.requests = 0


class _RawStream(asyncio.Protocol):
    """Kept-alive HTTP/1.1 by hand: each response is read to its `[DONE]`; the zero
    chunk that follows it lands before the next request's bytes and holds no `[DONE]`."""

    def __init__(self) -> None:
        self.done: asyncio.Future[None] | None = None
        self._tail = b""

    def data_received(self, data: bytes) -> None:
        window = self._tail + data
        self._tail = data[-len(_DONE) :]
        if _DONE in window and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("closed"))


async def _raw_worker(url: URL, start: float, stop: float, count: _Counter) -> None:
    loop = asyncio.get_running_loop()
    host, port = url.host or "127.0.0.1", url.port or 80
    request = (
        f"POST {url.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(_BODY)}\r\n\r\n"
    ).encode() + _BODY
    await asyncio.sleep(start)
    transport, protocol = await loop.create_connection(_RawStream, host, port)
    try:
        while loop.time() < stop:
            protocol.done = loop.create_future()
            transport.write(request)
            await protocol.done
            count.requests += 1
    finally:
        transport.close()


async def _aiohttp_worker(
    session: aiohttp.ClientSession, url: URL, start: float, stop: float, count: _Counter
) -> None:
    loop = asyncio.get_running_loop()
    headers = {"Content-Type": "application/json"}
    await asyncio.sleep(start)
    while loop.time() < stop:
        async with session.post(url, data=_BODY, headers=headers) as response:
            async for _chunk in response.content.iter_any():
                pass
        count.requests += 1


async def _window(count: _Counter, warmup: float, seconds: float) -> tuple[float, int]:
    """CPU seconds and requests completed between the end of the warm-up and `seconds`
    later, while the workers keep running (steady state, no restart in step)."""
    await asyncio.sleep(warmup)
    cpu0, done0 = time.process_time(), count.requests
    await asyncio.sleep(seconds)
    return time.process_time() - cpu0, count.requests - done0


async def _floor(kind: str, url: URL, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    # The streams start spread as the Runner's do (5 ms apart): streams in step share
    # loop passes and cost less per request than the load tester's desynchronized ones.
    ramp = ramp_seconds(STREAMS)
    warmup = ramp + 2.0
    count = _Counter()
    stop = loop.time() + warmup + seconds + 0.5
    starts = [ramp * i / (STREAMS - 1) for i in range(STREAMS)]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        if kind == "raw":
            workers = [_raw_worker(url, start, stop, count) for start in starts]
        else:
            workers = [_aiohttp_worker(session, url, start, stop, count) for start in starts]
        measured = asyncio.ensure_future(_window(count, warmup, seconds))
        await asyncio.gather(measured, *workers)
    cpu, requests = measured.result()
    tokens = requests * TOKENS_PER_REQUEST
    return {
        "requests": requests,
        "cpu_s": cpu,
        "cpu_us_per_request": cpu / requests * 1e6,
        "cpu_s_per_1m_tokens": cpu / tokens * 1e6,
    }


async def _engine(sim: SimProcess, seconds: float) -> dict[str, Any]:
    row = await _step(sim, STREAMS, Stop(duration=seconds))
    return {
        "requests": row["requests"],
        "cpu_s_per_1m_tokens": row["measured_cpu_s_per_1m_tokens"],
        # s per 1M tokens x 40 tokens per request = us per request
        "cpu_us_per_request": row["measured_cpu_s_per_1m_tokens"] * TOKENS_PER_REQUEST,
        "client_bound": row["client_bound"],
    }


async def main_async(quick: bool) -> dict[str, Any]:
    """Each client at 200 streams, one after another, on one simulator."""
    seconds = 5.0 if quick else 12.0
    result: dict[str, Any] = {"quick": quick, "streams": STREAMS}
    async with sim_process({"ref": REFERENCE}, record_requests=20_000) as sim:
        url = URL(f"{sim.url}/chat/completions")
        for kind in ("raw", "aiohttp"):
            result[kind] = await _floor(kind, url, seconds)
        result["engine"] = await _engine(sim, seconds)
    for kind in ("raw", "aiohttp", "engine"):
        row = result[kind]
        log(
            f"{kind:>8}: {row['requests']} requests, {row['cpu_s_per_1m_tokens']:.1f} CPU s "
            f"per 1M tokens, {row['cpu_us_per_request']:.0f} us per request"
        )
    return result


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    bench_main(__doc__, main_async, argv, event_loop="auto")


if __name__ == "__main__":
    main()
