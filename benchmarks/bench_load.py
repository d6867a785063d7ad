"""Benchmark: `ttft-exporter bench` (its Runner, in this process) at 200 concurrent
streams against the performance.md reference stream (first text at 300 ms, 20 chunks
of 2 tokens 20 ms apart, 40 tokens in usage, a role-only chunk with the headers,
keep-alive comments), simulator in a child process.

Figures (issue 14 targets in brackets):
- TTFT median and p99 drift: the client's p50/p99 minus the simulator's own p50/p99
  (request arrival to first text write, CLOCK_MONOTONIC in both processes) over the
  same step, the opening burst of 200 connects included [<= +2 ms, <= +20 ms];
- client CPU seconds per 1M output tokens over the measured 200-stream step [<= 10];
- peak RSS of this process [<= 50 MB];
- the server's own first-write p99 at 200 streams minus at 1 stream [<= 1 ms];
- the client's own verdict (client_bound, suspect share, loop lag).

Usage: ``python -m benchmarks.bench_load [--quick] [--json PATH]``
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import (
    REFERENCE,
    SimProcess,
    bench_main,
    build_config,
    log,
    pct,
    rss_mb,
    sim_process,
)
from ttft_exporter.bench.profile import Step, Stop, Warmup
from ttft_exporter.bench.prompts import SyntheticPrompts
from ttft_exporter.bench.runner import BenchPlan, Runner
from ttft_exporter.bench.selfwatch import SelfWatch

MS = 1000.0


async def _server_ttfts(sim: SimProcess, since: float, limit: int) -> list[float]:
    """The simulator's own TTFTs (arrival to first text write) of requests that
    arrived after `since` (perf_counter seconds, the same clock in both processes)."""
    records = await sim.requests(limit)
    return [
        r["first_text_written"] - r["arrival"]
        for r in records
        if r.get("first_text_written") is not None and r["arrival"] >= since
    ]


async def _step(sim: SimProcess, streams: int, stop: Stop) -> dict[str, Any]:
    config = build_config(
        [{"name": "load", "url": sim.url, "model": "ref", "reuse_connections": True,
          "max_tokens": 64, "timeout": "30s", "interval": "60s"}]
    )  # fmt: skip
    # Warm-up: one request per stream (opens the connections, spread over the ramp).
    step = Step(0, "concurrency", streams, stop, Warmup(requests=streams))
    plan = BenchPlan(
        target=config.targets[0],
        steps=(step,),
        prompts=SyntheticPrompts(64, seed=1),
        fixed_output=False,  # the reference stream's length is the simulator's
        timeout=30.0,
    )
    runner = Runner(plan, SelfWatch())
    since = time.perf_counter()
    cpu0, sim0 = time.process_time(), sim.cpu_seconds()
    async with runner.watch:
        (result,) = await runner.run()
    cpu1, sim1 = time.process_time(), sim.cpu_seconds()
    # The client's own memory, before this harness loads the simulator's records.
    client_rss = rss_mb()
    measured = [r for r in runner.records if not r.warmup and r.success]
    first_measured = min(r.start for r in runner.records if not r.warmup)
    client = [r.ttft for r in runner.records if r.success and r.ttft is not None]
    # The server's TTFTs of the same requests (warm-up included on both sides: the
    # opening burst is part of the figure, as the target says).
    server = await _server_ttfts(sim, since, len(runner.records) + 10)
    tokens = sum(r.output_tokens or 0 for r in measured)
    stats, watch = result.stats, result.self_watch
    row = {
        "streams": streams,
        "requests": stats.requests,
        "failed": stats.requests - stats.succeeded,
        "matched_server_records": len(server),
        "client_ttft_p50_ms": pct(client, 50) * MS,
        "client_ttft_p99_ms": pct(client, 99) * MS,
        "server_ttft_p50_ms": pct(server, 50) * MS,
        "server_ttft_p99_ms": pct(server, 99) * MS,
        "drift_p50_ms": (pct(client, 50) - pct(server, 50)) * MS,
        "drift_p99_ms": (pct(client, 99) - pct(server, 99)) * MS,
        "measured_ttft_p50_ms": (stats.ttft.p50 or 0.0) * MS,
        "measured_ttft_p99_ms": (stats.ttft.p99 or 0.0) * MS,
        "output_tokens": tokens,
        "output_tokens_per_s": stats.output_tokens_per_second,
        # The whole step's CPU (warm-up included) over the measured tokens: an upper
        # bound of the marginal cost.
        "client_cpu_s": cpu1 - cpu0,
        "client_cpu_s_per_1m_tokens": (cpu1 - cpu0) / tokens * 1e6 if tokens else None,
        "measured_cpu_s_per_1m_tokens": watch.cpu_seconds / tokens * 1e6 if tokens else None,
        "sim_cpu_s": sim1 - sim0,
        "client_bound": watch.client_bound,
        "suspect_share": watch.suspect_share,
        "loop_lag_p99_ms": (watch.loop_lag_p99 or 0.0) * MS,
        "loop_lag_max_ms": (watch.loop_lag_max or 0.0) * MS,
        "connect_p99_ms": (stats.connect.p99 or 0.0) * MS,
        "measured_since_wall": first_measured,
        "records_held": len(runner.records),
        "rss_mb": client_rss,
    }
    log(
        f"load {streams:>3} streams: n={stats.requests} failed={row['failed']} drift p50 "
        f"{row['drift_p50_ms']:+.2f} p99 {row['drift_p99_ms']:+.2f} ms | server p99 "
        f"{row['server_ttft_p99_ms']:.1f} ms | cpu/1M tok {row['client_cpu_s_per_1m_tokens']}"
        f" | client_bound={watch.client_bound} lag p99 {row['loop_lag_p99_ms']:.1f} ms"
    )
    return row


async def main_async(quick: bool) -> dict[str, Any]:
    """A 1-stream baseline, then 200 streams."""
    duration = 8.0 if quick else 20.0
    # What the imports alone cost (aiohttp, pydantic, the exporter): the floor of RSS.
    imported = rss_mb()
    async with sim_process({"ref": REFERENCE}, record_requests=20_000) as sim:
        base = await _step(sim, 1, Stop(requests=10 if quick else 30))
        load = await _step(sim, 200, Stop(duration=duration))
    log(
        f"rss: {imported['VmRSS']:.1f} MB after imports, client peak "
        f"{load['rss_mb']['VmHWM']:.1f} MB with {load['records_held']} records held"
    )
    return {
        "quick": quick,
        "baseline_1_stream": base,
        "load_200_streams": load,
        "server_first_write_p99_moved_ms": load["server_ttft_p99_ms"] - base["server_ttft_p99_ms"],
        "rss_after_imports_mb": imported,
        # The client's peak, read before the harness loaded the simulator's records.
        "peak_rss_mb": load["rss_mb"],
        "harness_peak_rss_mb": rss_mb(),
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    # The loop `ttft-exporter bench` runs on by default: uvloop when installed.
    bench_main(__doc__, main_async, argv, event_loop="auto")


if __name__ == "__main__":
    main()
