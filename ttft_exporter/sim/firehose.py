"""A Flux-shaped WebSocket firehose for load tests and benchmarks: `state_update`
frames at a fixed rate (or as fast as the socket takes them) plus a `metrics_update`
every 2 s, on `/api/ws`. Run it in its own process so its CPU is not the client's:

    python -m ttft_exporter.sim.firehose --rate 50000 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

import orjson
from aiohttp import WSMsgType, web

__all__ = ["FIREHOSE_STATS", "FirehoseStats", "create_firehose_app", "main"]


class FirehoseStats:
    """What the firehose sent."""

    def __init__(self) -> None:
        self.sent = 0


FIREHOSE_STATS: web.AppKey[FirehoseStats] = web.AppKey("firehose_stats", FirehoseStats)


def _stamp() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z"


def _frames(batch: int, stamp: str, start: int) -> list[str]:
    return [
        orjson.dumps(
            {
                "type": "state_update",
                "entity_id": f"sensor-{(start + i) % 1000}",
                "property": "value",
                "value": start + i,
                "timestamp": stamp,
            }
        ).decode()
        for i in range(batch)
    ]


async def _handle_ws(request: web.Request) -> web.WebSocketResponse:
    rate: float = request.app["rate"]
    stats = request.app[FIREHOSE_STATS]
    ws = web.WebSocketResponse(autoping=True, heartbeat=None)
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    start = loop.time()
    next_metrics = start
    total = 0
    batch = 500
    reader = asyncio.create_task(_drain(ws))
    try:
        while not ws.closed:
            now = loop.time()
            if now >= next_metrics:
                await ws.send_str(_metrics(total))
                next_metrics = now + 2.0
            if rate > 0:
                due = int((now - start) * rate) - total
                if due <= 0:
                    await asyncio.sleep(0.001)
                    continue
                count = min(due, batch)
            else:
                count = batch
            stamp = _stamp()
            for frame in _frames(count, stamp, total):
                # send_str waits when the socket buffer is full: the slow client
                # pushes back on us, as TCP would on Flux.
                await ws.send_str(frame)
            total += count
            stats.sent = total
    except (ConnectionResetError, RuntimeError):
        pass
    finally:
        reader.cancel()
    return ws


async def _drain(ws: web.WebSocketResponse) -> None:
    async for msg in ws:
        if msg.type is WSMsgType.CLOSE:
            break


def _metrics(total: int) -> str:
    return orjson.dumps(
        {
            "type": "metrics_update",
            "timestamp": _stamp(),
            "entities": {"total": 1000},
            "events": {"total": total, "rate_per_second": 0.0},
            "websocket": {"connections": 1},
            "publishers": {"active": 1},
        }
    ).decode()


def create_firehose_app(rate: float = 0.0) -> web.Application:
    """The firehose app; rate 0 sends as fast as the client reads."""
    app = web.Application()
    app["rate"] = rate
    app[FIREHOSE_STATS] = FirehoseStats()
    app.router.add_get("/api/ws", _handle_ws)
    return app


async def _serve(rate: float, duration: float, port: int) -> None:
    app = create_firehose_app(rate)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    try:
        await asyncio.sleep(duration)
    finally:
        print(f"sent {app[FIREHOSE_STATS].sent}", file=sys.stderr, flush=True)
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Serve until `--duration` seconds have passed; prints the bound port first."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=0.0, help="frames per second (0: unlimited)")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.rate, args.duration, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
