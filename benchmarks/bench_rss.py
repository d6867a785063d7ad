"""Benchmark 3: resident memory of the real exporter with 10 targets.

Runs the exporter application in this process (ExporterState + create_app on an
AppRunner/TCPSite, access log off as the CLI does, start jitter on) with 10 targets
probing the reference stream at a 1 s interval against the simulator in a child
process, scrapes /metrics a few times over plain sockets, and reports VmRSS and VmHWM
from /proc/self/status and ru_maxrss. Scrapes ask for gzip, as Prometheus does (aiohttp
compresses large bodies in a worker thread, which counts). run.py starts this module in a fresh
interpreter so no other benchmark's memory counts.

Usage: ``python -m benchmarks.bench_rss [--quick] [--json PATH]``
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from benchmarks.common import (
    REFERENCE,
    bench_main,
    build_config,
    log,
    rss_mb,
    sim_process,
)
from ttft_exporter.config import ConfigHolder
from ttft_exporter.server import ExporterState, create_app

TARGETS = 10
SCRAPES = 6


async def scrape(port: int, path: str = "/metrics") -> bytes:
    """A minimal HTTP/1.0 GET over a raw socket (no extra client library in RSS),
    asking for gzip as Prometheus does by default."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n\r\n".encode()
        )
        await writer.drain()
        async with asyncio.timeout(10):
            raw = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise RuntimeError(f"scrape failed: {head[:80]!r}")
    return body


def _probe_counts(state: ExporterState) -> tuple[int, int]:
    ok = failed = 0
    for series in state.store.series.values():
        ok += int(series.get("ttft_probe_requests_total", ("success",)) or 0)
        failed += int(series.get("ttft_probe_requests_total", ("failure",)) or 0)
    return ok, failed


async def main_async(quick: bool) -> dict[str, Any]:
    """Serve the exporter for the duration, scraping it at even intervals."""
    duration = 10.0 if quick else 30.0
    baseline = rss_mb()
    samples: list[dict[str, float]] = []
    async with sim_process({"ref": REFERENCE}) as sim:
        config = build_config(
            [
                {
                    "name": f"target-{i}",
                    "url": sim.url,
                    "model": "ref",
                    "interval": "1s",
                    "timeout": "900ms",
                }
                for i in range(TARGETS)
            ]
        )
        state = ExporterState(holder=ConfigHolder(None, config), start_jitter=True)
        runner = web.AppRunner(create_app(state), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port: int = runner.addresses[0][1]
            started = rss_mb()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            body = b""
            for index in range(SCRAPES):
                await asyncio.sleep(duration / SCRAPES)
                body = await scrape(port)
                sample = {"t": time.perf_counter() - wall0, **rss_mb(), "body": len(body)}
                samples.append(sample)
                log(f"rss t={sample['t']:.1f}s VmRSS {sample['VmRSS']:.1f} MB (scrape {index})")
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
            ok, failed = _probe_counts(state)
        finally:
            await runner.cleanup()
    final = rss_mb()
    return {
        "quick": quick,
        "targets": TARGETS,
        "duration_s": wall,
        "baseline_after_imports": baseline,
        "after_start": started,
        "samples": samples,
        "vmrss_mb": samples[-1]["VmRSS"],
        "vmrss_max_sampled_mb": max(s["VmRSS"] for s in samples),
        "vmhwm_mb": final["VmHWM"],
        "ru_maxrss_mb": final["ru_maxrss"],
        "growth_first_to_last_mb": samples[-1]["VmRSS"] - samples[0]["VmRSS"],
        "probes_ok": ok,
        "probes_failed": failed,
        "metrics_body_bytes": len(body),
        "exporter_cpu_cores": cpu / wall if wall > 0 else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    bench_main(__doc__, main_async, argv)


if __name__ == "__main__":
    main()
