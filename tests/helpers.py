"""Small helpers shared by tests: free loopback ports, the real binaries the test
command installs, bounded polling, a canned successful probe result and the
executor-plus-scheduler pair the scheduler, cold-probe and budget tests run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import aiojobs
import pytest

from ttft_exporter.budget import ProbeBudget
from ttft_exporter.catalogue import DEFAULT_BUCKETS
from ttft_exporter.clock import Clock, Sleeper, SystemClock
from ttft_exporter.executor import ProbeExecutor
from ttft_exporter.history import History
from ttft_exporter.probes.base import GapHistogram, ProbeResult
from ttft_exporter.scheduler import ProbeScheduler
from ttft_exporter.selfmetrics import ExporterMetrics
from ttft_exporter.sinks.prometheus.series import MetricStore
from ttft_exporter.sinks.prometheus.sink import PrometheusSink
from ttft_exporter.supervise import Supervisor

__all__ = [
    "LOGGING_ERRORS",
    "CountingLLM",
    "ManualClock",
    "ManualTimer",
    "StampCountingClock",
    "free_port",
    "gap_histogram",
    "poll",
    "probe_scheduler",
    "require_tool",
    "running_rig",
    "success_result",
    "terminate",
]

# Every "--- Logging error ---" of the current test (a handler that failed to emit),
# filled by tests/conftest.py; here so that the test modules and the conftest (loaded
# under another module name) share one list.
LOGGING_ERRORS: list[str] = []


class ManualClock:
    """A Clock that moves only when told to: `advance(seconds)`."""

    def __init__(self, wall: float = 1_771_065_045.0) -> None:
        self.now_ns = 0
        self._wall = wall

    def advance(self, seconds: float) -> None:
        self.now_ns += int(seconds * 1e9)

    def monotonic_ns(self) -> int:
        return self.now_ns

    def wall(self) -> float:
        return self._wall + self.now_ns * 1e-9


class ManualTimer(ManualClock):
    """A ManualClock that is also a Sleeper: `sleep()` returns once `advance()` has
    moved the clock to its deadline, so code that waits minutes is tested in no time
    and with exact figures."""

    def __init__(self, wall: float = 1_771_065_045.0) -> None:
        super().__init__(wall)
        self._sleepers: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def sleeping(self) -> int:
        """How many sleeps are waiting for the clock to move."""
        return sum(1 for _, future in self._sleepers if not future.done())

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        entry = (self.now_ns + round(seconds * 1e9), future)
        self._sleepers.append(entry)
        try:
            await future
        finally:
            self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        for deadline, future in self._sleepers:
            if deadline <= self.now_ns and not future.done():
                future.set_result(None)


class StampCountingClock(ManualClock):
    """A ManualClock that counts its monotonic reads (the probe's stamps), so a test
    server can send a byte, then wait until the probe has stamped it before moving
    virtual time on. Every stamp then lands at the virtual time of what it stamps,
    however late the process gets the CPU: exact timing semantics on a loaded box."""

    def __init__(self, wall: float = 1_771_065_045.0) -> None:
        super().__init__(wall)
        self.reads = 0

    def monotonic_ns(self) -> int:
        self.reads += 1
        return self.now_ns

    async def wait_reads(self, at_least: int, what: str, cap: float = 30.0) -> None:
        """Yield to the loop until the clock was read `at_least` times in all; fail
        after `cap` real seconds (a probe that never stamps is a test failure)."""
        deadline = time.monotonic() + cap
        while self.reads < at_least:
            if time.monotonic() > deadline:
                pytest.fail(f"the probe never stamped {what} ({self.reads} of {at_least} reads)")
            await asyncio.sleep(0.001)


def free_port() -> int:
    """A loopback port that was free a moment ago (for servers that need a fixed one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def terminate(popen: subprocess.Popen[bytes], grace: float) -> None:
    """Stop a server this test started, by its PID: SIGTERM, then SIGKILL if it is
    still running `grace` seconds later. Blocks up to twice `grace`."""
    if popen.poll() is not None:
        return
    os.kill(popen.pid, signal.SIGTERM)
    try:
        popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.kill(popen.pid, signal.SIGKILL)
        popen.wait(timeout=grace)


def require_tool(tool: str, package: str) -> str:
    """The path of a real binary; fails (never skips) when it is missing, because the
    test command (.ci/run) installs it."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"{tool} is not on PATH: install Debian's {package} package "
            f"(apt-get install -y --no-install-recommends {package}), as .ci/run does"
        )
    return path


async def poll(
    check: Callable[[], Awaitable[Any]], what: str, cap: float, step: float = 0.1
) -> Any:
    """Await `check()` until it returns something truthy; fail after `cap` seconds."""
    deadline = time.monotonic() + cap
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {cap}s waiting for {what}")
        await asyncio.sleep(step)


def gap_histogram(gaps: tuple[float, ...], bounds: tuple[float, ...] | None = None) -> GapHistogram:
    """A GapHistogram (default: the inter-token buckets) that observed `gaps`."""
    hist = GapHistogram(bounds or DEFAULT_BUCKETS["inter_token"])
    for gap in gaps:
        hist.observe(gap)
    return hist


def success_result(**overrides: Any) -> ProbeResult:
    """A successful probe with every figure set (40 tokens, 0.3 s TTFT, 19 gaps of
    20 ms), `overrides` replacing any of its fields."""
    values: dict[str, Any] = {
        "success": True,
        "started_at": 1700000000.5,
        "phases": {"dns": 0.0, "connect": 0.001, "tls": 0.002, "headers": 0.003},
        "http_status": 200,
        "time_to_first_byte": 0.006,
        "time_to_first_chunk": 0.007,
        "time_to_first_token": 0.3,
        "time_to_first_output_token": 0.5,
        "duration": 0.68,
        "inter_chunk_gaps": gap_histogram((0.02,) * 19),
        "time_per_output_token": 0.38 / 39,
        "output_tokens": 40,
        "decode_tokens": 39,
        "usage_source": "usage",
        "input_tokens": 7,
        "finish_reason": "length",
    }
    values.update(overrides)
    return ProbeResult(**values)


def probe_scheduler(
    jobs: aiojobs.Scheduler,
    metrics: ExporterMetrics,
    store: MetricStore,
    *,
    history: History,
    clock: Clock | None = None,
    sleeper: Sleeper | None = None,
    budget: ProbeBudget | None = None,
) -> tuple[ProbeExecutor, ProbeScheduler]:
    """A real executor (16 slots, timing on `clock`, else the system's) and a real
    scheduler feeding `store`, start jitter off. `clock` and `sleeper` are also the
    scheduler's (its cold cycles'); None leaves the scheduler its defaults."""
    executor = ProbeExecutor(
        clock=clock if clock is not None else SystemClock(),
        concurrency=16,
        metrics=metrics,
        history=history,
        budget=budget,
    )
    scheduler = ProbeScheduler(
        executor=executor,
        sink=PrometheusSink(store),
        jobs=jobs,
        metrics=metrics,
        supervisor=Supervisor(metrics),
        start_jitter=False,
        clock=clock,
        sleeper=sleeper,
    )
    return executor, scheduler


class _Rig(Protocol):
    scheduler: ProbeScheduler


RigT = TypeVar("RigT", bound=_Rig)


@contextlib.asynccontextmanager
async def running_rig(make: Callable[[aiojobs.Scheduler], RigT]) -> AsyncIterator[RigT]:
    """`make(jobs)` on a fresh aiojobs scheduler; afterwards its probe scheduler is
    closed, then the jobs (in that order: the runners' loops are jobs)."""
    jobs = aiojobs.Scheduler(limit=None, close_timeout=5.0)
    made = make(jobs)
    try:
        yield made
    finally:
        await made.scheduler.close()
        await jobs.close()


class CountingLLM:
    """An OpenAI-chat streaming server that counts the requests open at once, in all
    and per model, for tests of concurrency caps. The model name picks the behaviour:
    `stall*` sends one token then nothing (until the client leaves, 30 s at most),
    `slow*` answers after `slow_seconds`, anything else at once."""

    def __init__(self, slow_seconds: float = 0.3) -> None:
        self.slow_seconds = slow_seconds
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.total_in_flight = 0
        self.total_peak = 0
        self.starts: list[str] = []
        self.runner: Any = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset_peak(self) -> None:
        self.total_peak = self.total_in_flight
        self.peak = dict(self.in_flight)

    async def start(self) -> CountingLLM:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        # handler_cancellation: a stalled answer ends when the probe gives up.
        self.runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        model = (await request.json())["model"]
        self.starts.append(model)
        self.in_flight[model] = self.in_flight.get(model, 0) + 1
        self.peak[model] = max(self.peak.get(model, 0), self.in_flight[model])
        self.total_in_flight += 1
        self.total_peak = max(self.total_peak, self.total_in_flight)
        try:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            if model.startswith("slow"):
                await asyncio.sleep(self.slow_seconds)
            chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if model.startswith("stall"):
                await asyncio.sleep(30)
            done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            await resp.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
            return resp
        finally:
            self.in_flight[model] -= 1
            self.total_in_flight -= 1
