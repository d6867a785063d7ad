"""The client watches itself: per step the event-loop lag, the client's CPU and the
suspect requests of the exporter's own check (issue 7: a request that overlapped a
late loop wake-up or a CPU-throttled cgroup period). A step where the client, not the
server, was the bottleneck is flagged `client_bound` and does not count toward a
sweep."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from array import array
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from ttft_exporter.bench.stats import percentile
from ttft_exporter.looplag import LagMark, LoopLagMonitor

__all__ = [
    "DEFAULT_BENCH_LOOP_LAG",
    "DEFAULT_MAX_CPU",
    "DEFAULT_MAX_SUSPECT_SHARE",
    "ClientBound",
    "SelfWatch",
    "SelfWatchStats",
]

# A request is suspect when the loop was late by more than this meanwhile. Above the
# exporter's probe default (10 ms): a load test's latencies are hundreds of ms, and a
# busy client host runs wake-ups 10-20 ms late without being the bottleneck.
DEFAULT_BENCH_LOOP_LAG = 0.025
# A step is client-bound when more than this share of its requests are suspect...
DEFAULT_MAX_SUSPECT_SHARE = 0.05
# ... or when the client used this much of its one core (the loop is one thread):
# beyond it the loop cannot keep up, whatever the lag samples say.
DEFAULT_MAX_CPU = 0.9
# Lag samples kept per step (10 a second: 100 minutes), for the lag percentiles.
_MAX_SAMPLES = 60_000


class SelfWatchStats(BaseModel):
    """How the client itself fared during one step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loop_lag_p99: float | None  # seconds
    loop_lag_max: float | None
    loop_lag_events: int  # wake-ups later than the suspect bound
    cpu_seconds: float
    cpu_cores: float  # cpu_seconds / wall seconds of the step
    max_rss_mb: float
    suspect: int
    suspect_share: float
    client_bound: bool
    why: list[str]


@dataclass(frozen=True, slots=True)
class ClientBound:
    """The thresholds of the client-bound flag."""

    max_suspect_share: float = DEFAULT_MAX_SUSPECT_SHARE
    max_cpu: float = DEFAULT_MAX_CPU


class SelfWatch:
    """Runs the exporter's loop-lag monitor for the whole run and cuts its figures
    per step; `mark()`/`suspect()` bracket each request."""

    def __init__(
        self, *, bound: float = DEFAULT_BENCH_LOOP_LAG, thresholds: ClientBound | None = None
    ) -> None:
        # Doubles in an array: 8 bytes a sample, not 32 (a float object and its slot).
        self._lags = array("d")
        self.monitor = LoopLagMonitor(bound=bound, observe=self._observe)
        self.thresholds = thresholds or ClientBound()
        self._task: asyncio.Task[None] | None = None
        self._cpu0 = 0.0
        self._wall0 = 0.0
        self._events0 = 0

    def _observe(self, lag: float) -> None:
        if len(self._lags) < _MAX_SAMPLES:
            self._lags.append(lag)

    async def __aenter__(self) -> SelfWatch:
        self._task = asyncio.create_task(self.monitor.run(), name="bench-looplag")
        # Let it find the cgroup's cpu.stat and take its first sample.
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def begin_step(self) -> None:
        """The measurement of a step starts now."""
        del self._lags[:]
        self._events0 = self.monitor.lag_events
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()

    def mark(self) -> LagMark:
        """At the start of a request: O(1)."""
        return self.monitor.mark()

    def suspect(self, mark: LagMark) -> tuple[str, ...]:
        """At its end: why its figures may include the client's own delay."""
        found = self.monitor.check(mark)
        return found.causes if found is not None else ()

    def end_step(self, *, requests: int, suspect: int) -> SelfWatchStats:
        """The figures of the step that just ended and its client-bound verdict."""
        cpu = time.process_time() - self._cpu0
        wall = time.perf_counter() - self._wall0
        cores = cpu / wall if wall > 0 else 0.0
        share = suspect / requests if requests else 0.0
        ordered = sorted(self._lags)
        why = []
        if share > self.thresholds.max_suspect_share:
            why.append(
                f"{suspect} of {requests} requests suspect (above "
                f"{self.thresholds.max_suspect_share:.0%}): the event loop was late by "
                f"more than {self.monitor.bound * 1000:g}ms"
            )
        if cores >= self.thresholds.max_cpu:
            why.append(f"client CPU {cores:.2f} cores (one loop: at most 1)")
        # ru_maxrss is in kilobytes on Linux.
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
        return SelfWatchStats(
            loop_lag_p99=percentile(ordered, 99),
            loop_lag_max=ordered[-1] if ordered else None,
            loop_lag_events=self.monitor.lag_events - self._events0,
            cpu_seconds=cpu,
            cpu_cores=cores,
            max_rss_mb=rss,
            suspect=suspect,
            suspect_share=share,
            client_bound=bool(why),
            why=why,
        )
