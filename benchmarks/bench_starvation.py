"""Does the exporter notice when it is starved? Probes stream from the simulator (in its
own process; true TTFT 100 ms) while the exporter's own loop is starved four ways:
quiet, a blocking call on the loop (60 ms every 400 ms), CPU hogs beside it (two busy
processes per core), and, as root on a writable cgroup v1 cpu hierarchy, a CFS quota
of 5 ms per 100 ms on the exporter's own cgroup (with 12 targets streaming 100 chunks
each, so the exporter needs more CPU than the quota gives it in a burst). Reports the
lag seen, the probes marked suspect and the TTFT of clean and suspect probes.

Usage: ``python -m benchmarks.bench_starvation [--quick] [--json PATH]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmarks.common import bench_main, build_config, log, pct, sim_process
from ttft_exporter.clock import SystemClock
from ttft_exporter.executor import ProbeExecutor
from ttft_exporter.history import History
from ttft_exporter.looplag import LoopLagMonitor
from ttft_exporter.probes import create_session
from ttft_exporter.selfmetrics import ExporterMetrics
from ttft_exporter.sinks.prometheus.series import MetricStore
from ttft_exporter.sinks.prometheus.sink import PrometheusSink

MODEL = {"ttft": 0.1, "itl": 0.01, "tokens": 20}
HEAVY = {"ttft": 0.1, "itl": 0.003, "tokens": 100}
TARGETS = 4
CGROUP_V1 = Path("/sys/fs/cgroup/cpu")
QUOTA_US, PERIOD_US = 5_000, 100_000


class RecordingMonitor(LoopLagMonitor):
    """The production monitor, also keeping every lag for percentiles."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lags: list[float] = []

    def _record(self, lag: float) -> None:
        self.lags.append(lag)
        super()._record(lag)


async def _block_loop(stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(0.4)
        time.sleep(0.06)  # a blocking call on the loop


@contextlib.asynccontextmanager
async def _hogs(count: int) -> AsyncIterator[None]:
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", "while True: pass")
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            await proc.wait()


@contextlib.contextmanager
def _quota() -> Any:
    """Move this process into a child cgroup (v1 cpu controller) with a CFS quota."""
    group = CGROUP_V1 / f"ttft-bench-{os.getpid()}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(QUOTA_US))
        (group / "cgroup.procs").write_text(str(os.getpid()))
        try:
            yield
        finally:
            (CGROUP_V1 / "cgroup.procs").write_text(str(os.getpid()))
    finally:
        with contextlib.suppress(OSError):
            group.rmdir()


def _can_quota() -> bool:
    return os.geteuid() == 0 and (CGROUP_V1 / "cpu.cfs_quota_us").is_file()


async def _scenario(
    name: str, url: str, seconds: float, *, targets: int = TARGETS, model: str = "m"
) -> dict[str, Any]:
    config = build_config(
        [
            {"name": f"t{i}", "url": url, "model": model, "interval": "1s", "timeout": "900ms"}
            for i in range(targets)
        ]
    )
    metrics = ExporterMetrics()
    monitor = RecordingMonitor(clock=SystemClock(), metrics=metrics, bound=0.01)
    history = History(10_000)
    executor = ProbeExecutor(
        clock=SystemClock(), concurrency=16, metrics=metrics, history=history, lag_monitor=monitor
    )
    store = MetricStore()
    sink = PrometheusSink(store)
    stop = asyncio.Event()

    async def loop(target: Any, offset: float) -> None:
        await asyncio.sleep(offset)
        async with create_session(target.tls, reuse_connections=False) as session:
            while not stop.is_set():
                started = time.monotonic()
                await executor.run(target, session, sink)
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    sampler = asyncio.create_task(monitor.run())
    extra: list[asyncio.Task[None]] = []
    if name == "blocking-call":
        extra.append(asyncio.create_task(_block_loop(stop)))
    throttled_before = None
    await asyncio.sleep(0.3)  # the first samples, and the cgroup found
    if monitor.throttling is not None:
        throttled_before = monitor.throttling
    loops = [asyncio.create_task(loop(t, i / targets)) for i, t in enumerate(config.targets)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*loops, *extra)
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    records = [r.result for r in history.records()]
    ok = [r for r in records if r.success and r.time_to_first_token is not None]
    clean = [r.time_to_first_token for r in ok if not r.suspect and r.time_to_first_token]
    suspect = [r.time_to_first_token for r in ok if r.suspect and r.time_to_first_token]
    bursts = sum(
        1 for r in ok if r.time_per_output_token is not None and r.time_per_output_token < 0.002
    )
    throttling = monitor.throttling
    out = {
        "probes": len(records),
        "failed": len(records) - len(ok),
        "suspect_loop_lag": sum(1 for r in records if "loop_lag" in r.suspect),
        "suspect_throttled": sum(1 for r in records if "throttled" in r.suspect),
        "burst_probes": bursts,
        "burst_probes_marked": sum(
            1
            for r in ok
            if r.suspect and r.time_per_output_token is not None and r.time_per_output_token < 0.002
        ),
        "lag_samples": len(monitor.lags),
        "lag_p50_ms": pct(monitor.lags, 50) * 1000,
        "lag_p99_ms": pct(monitor.lags, 99) * 1000,
        "lag_max_ms": max(monitor.lags, default=0.0) * 1000,
        "ttft_clean_p50_ms": pct(clean, 50) * 1000,
        "ttft_clean_max_ms": max(clean, default=float("nan")) * 1000,
        "ttft_suspect_p50_ms": pct(suspect, 50) * 1000,
        "ttft_suspect_max_ms": max(suspect, default=float("nan")) * 1000,
        "cpu_stat": str(monitor.cpu_stat),
    }
    if throttling is not None and throttled_before is not None:
        out["periods"] = throttling.periods - throttled_before.periods
        out["throttled_periods"] = throttling.throttled_periods - throttled_before.throttled_periods
        out["throttled_seconds"] = round(
            throttling.throttled_seconds - throttled_before.throttled_seconds, 3
        )
    log(f"{name}: {out}")
    return out


async def main(quick: bool) -> dict[str, Any]:
    seconds = 8.0 if quick else 20.0
    results: dict[str, Any] = {"seconds_per_scenario": seconds, "targets": TARGETS,
                               "sim": MODEL}  # fmt: skip
    async with sim_process({"m": MODEL, "heavy": HEAVY}) as sim:
        results["quiet"] = await _scenario("quiet", sim.url, seconds)
        results["blocking-call"] = await _scenario("blocking-call", sim.url, seconds)
        async with _hogs(2 * (os.cpu_count() or 2)):
            results["cpu-hog"] = await _scenario("cpu-hog", sim.url, seconds)
        if _can_quota():
            with _quota():
                results["cfs-quota"] = await _scenario(
                    "cfs-quota", sim.url, seconds, targets=12, model="heavy"
                )
        else:
            results["cfs-quota"] = "skipped: needs root and a writable cgroup v1 cpu hierarchy"
    return results


if __name__ == "__main__":
    bench_main(__doc__, main)
