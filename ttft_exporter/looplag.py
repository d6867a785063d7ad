"""Notices when the exporter itself was starved: a tiny periodic task measures how
late the event loop runs its wake-ups (the lag histogram) and samples the cgroup's CPU
throttling counters; the executor asks it, in O(1), whether a probe overlapped lag
above the bound or a throttled period, and marks that probe suspect.

Why it matters: every timestamp is taken when the loop gets to it. A loop that waits
for a CPU (a busy node, a CFS quota) stamps late, and a whole stream arrives in one
read: TTFT grows by the wait and TPOT shrinks to nothing, with nothing else showing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ttft_exporter.catalogue import SUSPECT_CAUSES
from ttft_exporter.cgroup import CPUThrottling, find_cpu_stat, read_cpu_stat
from ttft_exporter.clock import Clock, SystemClock
from ttft_exporter.logs import fields

if TYPE_CHECKING:
    # Only a type here: `ttft-exporter bench` runs the monitor without prometheus_client.
    from ttft_exporter.selfmetrics import ExporterMetrics

__all__ = [
    "DEFAULT_LAG_INTERVAL",
    "DEFAULT_SUSPECT_LOOP_LAG",
    "LagMark",
    "LoopLagMonitor",
    "Suspicion",
]

log = logging.getLogger("ttft_exporter.looplag")

# Ten wake-ups a second: a few microseconds of CPU each, and a stall longer than
# interval + bound is always seen (a shorter one is seen by the part of it that
# falls after a wake-up was due).
DEFAULT_LAG_INTERVAL = 0.1
DEFAULT_SUSPECT_LOOP_LAG = 0.01
# The last lags above the bound, to report the worst one a probe overlapped. Above
# this many within one probe, the worst of the last ones is reported.
_RING = 32
_NS = 1e-9


@dataclass(frozen=True, slots=True)
class LagMark:
    """What the monitor had counted when a probe started."""

    lag_events: int
    throttled_periods: int | None


@dataclass(frozen=True, slots=True)
class Suspicion:
    """Why a probe's timings may include the exporter's own delay."""

    causes: tuple[str, ...]
    lag_events: int  # wake-ups later than the bound (an overdue one counts)
    worst_lag: float  # seconds
    throttled_periods: int
    bound: float

    def describe(self) -> str:
        """One line for the probe log (`/probe?debug=true`, `/logs`)."""
        parts = []
        if "loop_lag" in self.causes:
            parts.append(
                f"event loop late by more than {self.bound * 1000:g}ms {self.lag_events} "
                f"time(s), worst {self.worst_lag:.3f}s"
            )
        if "throttled" in self.causes:
            parts.append(f"cgroup CPU-throttled in {self.throttled_periods} period(s)")
        return (
            f"suspect ({', '.join(self.causes)}): {'; '.join(parts)}; the timings may "
            "include the exporter's own wait for a CPU"
        )


class LoopLagMonitor:
    """Measures event-loop lag every `interval` seconds; `bound` is the lag above
    which a probe overlapping it is suspect (config `suspect_loop_lag`).

    `sleep` and `clock` are injectable for tests, as a pair: the lag is the clock's
    time after `sleep(interval)` returns minus the interval, so a fake clock needs a
    sleep that moves it. `observe` gets every lag sample (seconds), for a caller
    without the exporter's metrics (`ttft-exporter bench`). `find_cpu_stat` locates
    the cgroup's `cpu.stat` (once, in a worker thread; None for no throttling
    counters).
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        metrics: ExporterMetrics | None = None,
        bound: float = DEFAULT_SUSPECT_LOOP_LAG,
        interval: float = DEFAULT_LAG_INTERVAL,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        find_cpu_stat: Callable[[], Path | None] = find_cpu_stat,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        if interval <= 0 or bound < 0:
            raise ValueError(f"interval must be above 0 and bound not below 0: {interval}, {bound}")
        self.bound = bound
        self.interval = interval
        self._clock = clock if clock is not None else SystemClock()
        self._metrics = metrics
        self._sleep = sleep
        self._find = find_cpu_stat
        self._observe = observe
        self._searched = False
        self.cpu_stat: Path | None = None
        self.throttling: CPUThrottling | None = None
        self._due_ns: int | None = None  # when the pending wake-up is due
        self.lag_events = 0
        self._worst = [0.0] * _RING
        self.samples = 0

    async def run(self) -> None:
        """Sample until cancelled (a supervised loop)."""
        if not self._searched:
            self._searched = True
            # A few /proc reads: not much, but not on the loop either.
            self.cpu_stat = await asyncio.to_thread(self._find)
            log.info(
                "cgroup CPU throttling counters",
                extra=fields(cpu_stat=str(self.cpu_stat or "none found")),
            )
        self._sample_cgroup()
        interval_ns = int(self.interval * 1e9)
        try:
            while True:
                self._due_ns = self._clock.monotonic_ns() + interval_ns
                await self._sleep(self.interval)
                lag = max(0, self._clock.monotonic_ns() - self._due_ns) * _NS
                self._due_ns = None
                self._record(lag)
                self._sample_cgroup()
        finally:
            # A stopped (or restarting) monitor has nothing overdue: no false suspects.
            self._due_ns = None

    def _record(self, lag: float) -> None:
        self.samples += 1
        if self._metrics is not None:
            self._metrics.loop_lag.observe(lag)
        if self._observe is not None:
            self._observe(lag)
        if lag > self.bound:
            self._worst[self.lag_events % _RING] = lag
            self.lag_events += 1

    def _sample_cgroup(self) -> None:
        if self.cpu_stat is None:
            return
        # A sysfs read of a few hundred bytes takes microseconds: cheaper on the loop
        # than a hop to a worker thread.
        sample = read_cpu_stat(self.cpu_stat)
        if sample is None and self.throttling is not None:
            log.warning(
                "cgroup cpu.stat no longer readable; throttling counters dropped",
                extra=fields(cpu_stat=str(self.cpu_stat)),
            )
            self.cpu_stat = None
        self.throttling = sample
        if self._metrics is not None:
            self._metrics.cpu_throttling.sample = sample

    def mark(self) -> LagMark:
        """At the start of a probe: O(1)."""
        throttled = self.throttling.throttled_periods if self.throttling is not None else None
        return LagMark(self.lag_events, throttled)

    def check(self, mark: LagMark) -> Suspicion | None:
        """At the end of a probe: was the loop late by more than the bound, or the
        cgroup throttled, since `mark`? A wake-up overdue by more than the bound right
        now counts too (the loop has been busy and the sampler has not run yet).
        O(1): at most the last 32 lags above the bound are looked at."""
        events = self.lag_events - mark.lag_events
        worst = 0.0
        for i in range(min(events, _RING)):
            worst = max(worst, self._worst[(self.lag_events - 1 - i) % _RING])
        if self._due_ns is not None:
            overdue = (self._clock.monotonic_ns() - self._due_ns) * _NS
            if overdue > self.bound:
                events += 1
                worst = max(worst, overdue)
        throttled = 0
        if mark.throttled_periods is not None and self.throttling is not None:
            throttled = max(0, self.throttling.throttled_periods - mark.throttled_periods)
        causes = tuple(
            cause
            for cause, seen in zip(SUSPECT_CAUSES, (events > 0, throttled > 0), strict=True)
            if seen
        )
        if not causes:
            return None
        return Suspicion(causes, events, worst, throttled, self.bound)
