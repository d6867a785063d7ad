"""Flux ingest benchmark: how many `state_update` messages per second one exporter
process (one core: a single asyncio thread) decodes and records, and its CPU seconds per
1M messages. The firehose runs in its own process and sends as fast as we read.

    .venv/bin/python benchmarks/bench_flux.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time

import aiohttp
from prometheus_client import CollectorRegistry

from ttft_exporter.clock import SystemClock
from ttft_exporter.config import parse_config
from ttft_exporter.flux.metrics import FluxMetrics
from ttft_exporter.flux.monitor import FluxMonitor
from ttft_exporter.metrics import DEFAULT_BUCKETS


async def measure(seconds: float) -> dict[str, float]:
    """Run the firehose and a monitor for `seconds`; return the figures."""
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ttft_exporter.sim.firehose",
            "--rate",
            "0",
            "--duration",
            str(seconds + 15),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if server.stdout is None:
            raise RuntimeError("firehose has no stdout")
        port = int(await asyncio.to_thread(server.stdout.readline))
        config = parse_config(
            {"flux": [{"name": "bench", "url": f"http://127.0.0.1:{port}", "groups": ["sensor-"]}]}
        ).flux[0]
        registry = CollectorRegistry()
        metrics = FluxMetrics(registry, DEFAULT_BUCKETS).instance("bench", config.groups)
        async with aiohttp.ClientSession() as session:
            monitor = FluxMonitor(config, metrics, session, SystemClock())
            task = asyncio.create_task(monitor.run())

            def received() -> float:
                value = registry.get_sample_value(
                    "ttft_flux_messages_total", {"flux": "bench", "type": "state_update"}
                )
                return value or 0.0

            for _ in range(200):  # up to 10 s for the first message
                if received() > 0:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # warm-up
            start_msgs, start_cpu, start_wall = received(), time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            msgs = received() - start_msgs
            cpu = time.process_time() - start_cpu
            wall = time.perf_counter() - start_wall
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
    return {
        "messages": msgs,
        "messages_per_second": msgs / wall,
        "cpu_seconds": cpu,
        "cpu_seconds_per_million": cpu / msgs * 1e6 if msgs else float("nan"),
        "cpu_share": cpu / wall,
    }


def main() -> int:
    """Print the figures as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    r = asyncio.run(measure(args.seconds))
    print("| Flux figure | measured | target |")
    print("| --- | --- | --- |")
    rate = r["messages_per_second"]
    print(f"| state_update messages/s ingested (one core) | {rate:,.0f} | >= 50,000 |")
    print(f"| client CPU s per 1M messages | {r['cpu_seconds_per_million']:.1f} | - |")
    print(f"| client CPU share while ingesting | {r['cpu_share']:.0%} | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
