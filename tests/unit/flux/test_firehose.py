"""Bounded memory under a firehose that sends faster than we read: the subscriber keeps
no queue of its own, and aiohttp's reader buffer stays under its flow-control limit.

Semantics, not speed: the test runs until flow control was exercised (the buffer
reached the threshold at which aiohttp pauses reading), whatever the machine's speed;
the ingest rate and the 30 s soak at 50,000 messages/s are benchmark figures
(benchmarks/bench_flux.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from tests.unit.flux.conftest import WatchFactory, flux_config

# How long the buffer is watched once flow control has been seen, and the cap (real
# time) on reaching it: generous for a starved 2-core box.
WATCH_SECONDS = 3.0
CAP_SECONDS = 60.0


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_firehose_is_held_back_by_flow_control_and_memory_stays_bounded(
    watch: WatchFactory,
) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "ttft_exporter.sim.firehose", "--rate", "0", "--duration", "90"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(await asyncio.to_thread(server.stdout.readline))
        w = await watch(flux_config(f"http://127.0.0.1:{port}", stale_after="5s"))
        await w.wait_for(lambda: w.value("ttft_flux_connected") == 1.0, timeout=30)
        baseline = rss_bytes()
        loop = asyncio.get_running_loop()
        cap = loop.time() + CAP_SECONDS
        end: float | None = None
        peak = limit = frames = 0
        while end is None or loop.time() < end:
            assert loop.time() < cap, f"flow control never engaged: peak {peak} of {limit} B"
            await asyncio.sleep(0.05)
            ws = w.monitor._ws
            if ws is None:
                continue
            reader = ws._reader
            # aiohttp's WebSocketDataQueue pauses the socket above `_limit` queued bytes
            # and resumes at half of it.
            limit = reader._limit
            peak = max(peak, reader._size)
            frames = max(frames, len(reader._buffer))
            if end is None and peak >= limit // 2:
                end = loop.time() + WATCH_SECONDS
        growth = rss_bytes() - baseline
        received = w.value("ttft_flux_messages_total", type="state_update")
        print(
            f"firehose: {received:.0f} state_updates, reader buffer peak {peak} B "
            f"({frames} frames) of limit {limit} B, RSS growth {growth / 1e6:.1f} MB"
        )
        assert w.value("ttft_flux_connected") == 1.0
        assert w.value("ttft_flux_reconnects_total", reason="error") == 0.0
        # The reader was ahead of us (the buffer reached the pause threshold), and
        # flow control held it: one read (64 KiB) may overshoot the limit. Without flow
        # control the buffer grows with the sender, far past the limit within the watch.
        assert limit > 0
        assert limit // 2 <= peak <= limit + 2**16
        # What went through is several times the buffer limit (a frame is over 100 B),
        # so the bound above was held while data flowed, not by a stalled stream.
        assert received * 100 > 4 * limit
        # A coarse guard (the buffer bound is the precise one): the 30 MB of the 30 s
        # soak in benchmarks/bench_flux.py.
        assert growth < 30e6
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
