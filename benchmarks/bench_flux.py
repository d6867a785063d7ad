"""Flux ingest benchmark: how many `state_update` messages per second one exporter
process (one core: a single asyncio thread) decodes and records, and its CPU seconds per
1M messages. The firehose runs in its own process and sends as fast as we read.

Then a soak (skip with `--soak-seconds 0`): the issue's load, 50,000 messages/s for
30 s, with the RSS growth and the peak of aiohttp's WebSocket reader buffer. These were
a unit test's assertions until issue #9 (a throughput cannot pass on a loaded machine);
the test keeps the semantics (flow control bounds the buffer), this keeps the figures.

    .venv/bin/python benchmarks/bench_flux.py [--seconds 20] [--soak-seconds 30]
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

from ttft_exporter.catalogue import DEFAULT_BUCKETS
from ttft_exporter.clock import SystemClock
from ttft_exporter.config import parse_config
from ttft_exporter.flux.events import FluxStarted
from ttft_exporter.flux.monitor import FluxMonitor
from ttft_exporter.sinks import FanOut
from ttft_exporter.sinks.prometheus.series import MetricStore
from ttft_exporter.sinks.prometheus.sink import PrometheusSink


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
        metrics = _flux_sink(registry, "bench", config.groups)
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


def _flux_sink(registry: CollectorRegistry, name: str, groups: list[str]) -> FanOut:
    """The exporter's path: a fan-out to the Prometheus sink, the instance announced."""
    prometheus = PrometheusSink(MetricStore(), registry)
    prometheus.configure_flux(DEFAULT_BUCKETS)
    sinks = FanOut([prometheus])
    sinks.on_flux_event(FluxStarted(name, tuple(groups)))
    return sinks


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def soak(rate: int, seconds: float) -> dict[str, float]:
    """A monitor against a firehose at `rate` messages/s for `seconds`: messages
    received, RSS growth after a 2 s warm-up, and the reader buffer's peak and limit."""
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ttft_exporter.sim.firehose",
            "--rate",
            str(rate),
            "--duration",
            str(seconds + 10),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if server.stdout is None:
            raise RuntimeError("firehose has no stdout")
        port = int(await asyncio.to_thread(server.stdout.readline))
        config = parse_config(
            {"flux": [{"name": "soak", "url": f"http://127.0.0.1:{port}", "stale_after": "5s"}]}
        ).flux[0]
        registry = CollectorRegistry()
        metrics = _flux_sink(registry, "soak", config.groups)

        def value(name: str, **labels: str) -> float:
            found = registry.get_sample_value(name, {"flux": "soak", **labels})
            return found or 0.0

        async with aiohttp.ClientSession() as session:
            monitor = FluxMonitor(config, metrics, session, SystemClock())
            task = asyncio.create_task(monitor.run())
            await asyncio.sleep(2.0)  # connect and warm up before the baseline
            baseline, start = rss_bytes(), value("ttft_flux_messages_total", type="state_update")
            peak = limit = 0
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            while loop.time() < end:
                await asyncio.sleep(0.05)
                ws = monitor._ws
                if ws is not None:
                    reader = ws._reader
                    limit = reader._limit
                    peak = max(peak, reader._size)
            received = value("ttft_flux_messages_total", type="state_update") - start
            growth = rss_bytes() - baseline
            reconnects = value("ttft_flux_reconnects_total", reason="error")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
    return {
        "received": received,
        "rss_growth_bytes": growth,
        "buffer_peak_bytes": peak,
        "buffer_limit_bytes": limit,
        "reconnects": reconnects,
    }


def main() -> int:
    """Print the figures as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--soak-rate", type=int, default=50_000)
    parser.add_argument("--soak-seconds", type=float, default=30.0)
    args = parser.parse_args()
    r = asyncio.run(measure(args.seconds))
    print("| Flux figure | measured | target |")
    print("| --- | --- | --- |")
    rate = r["messages_per_second"]
    print(f"| state_update messages/s ingested (one core) | {rate:,.0f} | >= 50,000 |")
    print(f"| client CPU s per 1M messages | {r['cpu_seconds_per_million']:.1f} | - |")
    print(f"| client CPU share while ingesting | {r['cpu_share']:.0%} | - |")
    if args.soak_seconds > 0:
        k = asyncio.run(soak(args.soak_rate, args.soak_seconds))
        label = f"{args.soak_rate:,}/s for {args.soak_seconds:g} s"
        floor = 0.8 * args.soak_rate * args.soak_seconds
        print(f"| state_updates received at {label} | {k['received']:,.0f} | >= {floor:,.0f} |")
        print(f"| RSS growth at {label} | {k['rss_growth_bytes'] / 1e6:.1f} MB | < 30 MB |")
        print(
            f"| reader buffer peak at {label} | {k['buffer_peak_bytes']:,.0f} B | "
            f"<= limit {k['buffer_limit_bytes']:,.0f} B + 64 KiB |"
        )
        print(f"| reconnects at {label} | {k['reconnects']:.0f} | 0 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
