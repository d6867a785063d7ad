"""Bounded memory under a 50,000 messages/s firehose for 30 s: the subscriber keeps no
queue of its own, and aiohttp's reader buffer stays under its flow-control limit."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from tests.unit.flux.conftest import WatchFactory, flux_config

pytestmark = pytest.mark.slow


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize(
    ("rate", "duration", "minimum"),
    # The load, and a faster-than-we-can-read one that must hit flow control.
    [(50_000, 30.0, 1_200_000), (0, 8.0, 100_000)],
    ids=["50k-per-s-30s", "unlimited-8s"],
)
async def test_firehose_keeps_memory_bounded(
    watch: WatchFactory, rate: int, duration: float, minimum: int
) -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ttft_exporter.sim.firehose",
            "--rate",
            str(rate),
            "--duration",
            str(duration + 10),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(await asyncio.to_thread(server.stdout.readline))
        w = await watch(flux_config(f"http://127.0.0.1:{port}", stale_after="5s"))
        await w.wait_for(lambda: w.value("ttft_flux_connected") == 1.0, timeout=10)
        await asyncio.sleep(2.0)  # warm up before the baseline
        baseline = rss_bytes()
        max_buffer_bytes = 0
        max_buffer_frames = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + duration - 2.0
        limit = 0
        while loop.time() < end:
            await asyncio.sleep(0.05)
            ws = w.monitor._ws
            if ws is not None:
                reader = ws._reader
                limit = reader._limit
                max_buffer_bytes = max(max_buffer_bytes, reader._size)
                max_buffer_frames = max(max_buffer_frames, len(reader._buffer))
        growth = rss_bytes() - baseline
        received = w.value("ttft_flux_messages_total", type="state_update")
        print(
            f"firehose: received {received:.0f} state_updates in {duration:.0f}s, "
            f"reader buffer max {max_buffer_bytes} B / {max_buffer_frames} frames, RSS growth {growth / 1e6:.1f} MB"
        )
        assert w.value("ttft_flux_connected") == 1.0
        assert w.value("ttft_flux_reconnects_total", reason="error") == 0.0
        assert received > minimum
        if rate == 0:
            assert max_buffer_bytes > 0  # the reader really was ahead of us
        # aiohttp pauses reading at `limit` queued bytes; one read (64 KiB) may overshoot.
        assert limit > 0
        assert max_buffer_bytes <= limit + 2**16
        assert growth < 30e6
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
