"""Shared benchmark helpers: the simulator subprocess, target building, the probe path
the scheduler uses, percentiles, process CPU/memory readings and JSON output."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from ttft_exporter.clock import SystemClock
from ttft_exporter.config import Config, TargetConfig, parse_config
from ttft_exporter.executor import ProbeExecutor
from ttft_exporter.history import History
from ttft_exporter.logs import setup_logging
from ttft_exporter.probes.base import ProbeResult
from ttft_exporter.selfmetrics import ExporterMetrics
from ttft_exporter.sinks.prometheus.series import MetricStore
from ttft_exporter.sinks.prometheus.sink import PrometheusSink

__all__ = [
    "REFERENCE",
    "REFERENCE_TTFT",
    "REPO",
    "BenchExecutor",
    "SimProcess",
    "StampingClock",
    "build_config",
    "emit",
    "log",
    "pct",
    "proc_cpu_seconds",
    "rss_mb",
    "self_cpu_seconds",
    "setup_logs",
    "sim_process",
]

REPO = Path(__file__).resolve().parent.parent

# The performance.md reference stream: first text at 300 ms, 20 chunks of 2 tokens 20 ms
# apart, 40 tokens in usage, a role-only chunk with the headers, `: ping`-style
# keep-alive comments every 100 ms while the server is silent.
REFERENCE_TTFT = 0.300
REFERENCE: dict[str, Any] = {
    "ttft": REFERENCE_TTFT,
    "itl": 0.020,
    "tokens": 40,
    "tokens_per_chunk": 2,
    "role_chunk": True,
    "keepalive_interval": 0.100,
    "usage": "auto",
}

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_SIM_START_TIMEOUT = 20.0
_SIM_STOP_TIMEOUT = 10.0


def log(message: str) -> None:
    """Progress on stderr (stdout of a benchmark module is kept for its JSON)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of another process, from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    # The command name may contain spaces; fields resume after the closing parenthesis.
    fields = raw.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def self_cpu_seconds() -> dict[str, float]:
    """This process's CPU: process_time() and the getrusage user/system split."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"process_time": time.process_time(), "user": usage.ru_utime, "sys": usage.ru_stime}


def rss_mb() -> dict[str, float]:
    """VmRSS and VmHWM from /proc/self/status and ru_maxrss, in MB (10^6 bytes)."""
    out: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024 / 1e6
    # ru_maxrss is in kilobytes on Linux.
    out["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    return out


@dataclass
class SimProcess:
    """A simulator running in a child process on 127.0.0.1."""

    process: asyncio.subprocess.Process
    port: int

    @property
    def url(self) -> str:
        """Base URL of the OpenAI-compatible API."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    def cpu_seconds(self) -> float:
        """CPU seconds the simulator has used so far."""
        return proc_cpu_seconds(self.pid)

    async def requests(self, limit: int) -> list[dict[str, Any]]:
        """The last `limit` requests the simulator recorded (arrival and first text
        write are perf_counter stamps, CLOCK_MONOTONIC, comparable across processes)."""
        url = f"http://127.0.0.1:{self.port}/sim/requests?limit={limit}"
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as response,
        ):
            response.raise_for_status()
            data = await response.json()
        records: list[dict[str, Any]] = data["requests"]
        return records


@contextlib.asynccontextmanager
async def sim_process(
    models: dict[str, dict[str, Any]],
    *,
    record_requests: int = 100,
    max_seconds: float = 600.0,
) -> AsyncIterator[SimProcess]:
    """Start `python -m benchmarks.sim_server` with these models; stop it on exit."""
    config = {"models": models, "record_requests": record_requests}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.sim_server",
        "--config",
        json.dumps(config),
        "--max-seconds",
        str(max_seconds),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None  # noqa: S101 - PIPE was requested
        async with asyncio.timeout(_SIM_START_TIMEOUT):
            line = await process.stdout.readline()
        if not line.strip():
            raise RuntimeError("simulator exited before printing its port")
        yield SimProcess(process, int(line))
    finally:
        await _stop(process)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    if process.stdin is not None:
        process.stdin.close()
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        async with asyncio.timeout(_SIM_STOP_TIMEOUT):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def build_config(targets: list[dict[str, Any]], **top: Any) -> Config:
    """A validated Config; the same defaults as tests/conftest.py make_config."""
    full = [
        {
            "protocol": "openai-chat",
            "prompt": "hello",
            "interval": "15s",
            "timeout": "10s",
            **target,
        }
        for target in targets
    ]
    return parse_config({"targets": full, **top})


class StampingClock(SystemClock):
    """The system clock, plus the absolute start stamp of the probe each asyncio task
    runs, so the benchmark can place client stamps on the simulator's timeline (both
    use CLOCK_MONOTONIC). StreamProbe.run() reads `wall()` and then `monotonic_ns()`
    for its start; the first `monotonic_ns()` after a `wall()` in a task is taken as
    that start. Costs one `current_task()` per stamp; not used for CPU figures."""

    def __init__(self) -> None:
        self.starts: dict[asyncio.Task[Any], int] = {}
        self._armed: set[asyncio.Task[Any]] = set()

    def wall(self) -> float:
        """Unix time; arms the start capture of the current task."""
        task = asyncio.current_task()
        if task is not None:
            self._armed.add(task)
        return time.time()

    def monotonic_ns(self) -> int:
        """perf_counter_ns(); recorded as a start if the task is armed."""
        now = time.perf_counter_ns()
        task = asyncio.current_task()
        if task is not None and task in self._armed:
            self._armed.discard(task)
            self.starts[task] = now
        return now

    def take_start(self) -> int | None:
        """The start stamp of the last probe run by the current task."""
        task = asyncio.current_task()
        return self.starts.pop(task, None) if task is not None else None


class BenchExecutor:
    """The production probe path: `ProbeExecutor.run` (get_prober, StreamProbe under
    `asyncio.timeout`, record_result into a MetricStore), with a concurrency cap large
    enough not to queue the benchmark's own streams."""

    def __init__(self, concurrency: int, clock: SystemClock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.metrics = ExporterMetrics()
        self.store = MetricStore()
        self.executor = ProbeExecutor(
            clock=self.clock,
            concurrency=max(1, concurrency),
            metrics=self.metrics,
            history=History(100),
        )

    async def probe(self, target: TargetConfig, session: aiohttp.ClientSession) -> ProbeResult:
        """One probe of `target` on the target's own session; never raises."""
        record = await self.executor.run(target, session, PrometheusSink(self.store))
        return record.result


def setup_logs() -> None:
    """Logging as the CLI sets it up by default (info, logfmt on stderr)."""
    setup_logging("info", "logfmt")


def emit(result: dict[str, Any], path: str | None) -> None:
    """Write a benchmark's JSON result to `path` (or stdout)."""
    text = json.dumps(result, indent=2, sort_keys=True, default=str)
    if path:
        Path(path).write_text(text + "\n")
    else:
        print(text)


def bench_main(
    doc: str | None,
    main_async: Callable[[bool], Coroutine[Any, Any, dict[str, Any]]],
    argv: list[str] | None = None,
) -> None:
    """The shared command line of every benchmark: `[--quick] [--json PATH]`."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="write the result here instead of stdout")
    args = parser.parse_args(argv)
    setup_logs()
    emit(asyncio.run(main_async(args.quick)), args.json)
