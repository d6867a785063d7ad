"""Restart-with-backoff for every long-lived loop of the exporter (probe loops, the Flux
monitor and its checks, the reload listener, the loop-lag sampler). An unexpected
exception is logged once, with its traceback and secrets redacted, counted by
component, and the loop starts again after a capped exponential backoff. A loop that
keeps failing is reported down so that readiness and an alert can say so; it is still
retried at the cap, and counts as up again once a run has lasted `healthy_after`."""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ttft_exporter.clock import Clock, SystemClock
from ttft_exporter.logs import fields
from ttft_exporter.redact import Redactor
from ttft_exporter.selfmetrics import ExporterMetrics

__all__ = ["Component", "RestartPolicy", "Supervisor"]

log = logging.getLogger("ttft_exporter.supervise")

_NS = 1e-9


class Component(enum.StrEnum):
    """What a supervised loop is; the `component` label (a closed set, the same as
    metrics.BACKGROUND_COMPONENTS)."""

    PROBE = "probe"
    FLUX_MONITOR = "flux_monitor"
    FLUX_STALENESS = "flux_staleness"
    FLUX_CANARY = "flux_canary"
    FLUX_READ_CHECK = "flux_read_check"
    CONFIG_RELOAD = "config_reload"
    LOOP_LAG = "loop_lag"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Backoff `initial * 2^(n-1)` seconds after the n-th failure in a row, capped at
    `max`. After `budget` failures in a row (no run in between lasting `healthy_after`)
    the loop counts as down."""

    initial: float = 1.0
    max: float = 60.0
    budget: int = 5
    healthy_after: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.max or self.budget < 1 or self.healthy_after <= 0:
            raise ValueError(f"invalid restart policy {self!r}")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure in a row (1-based)."""
        return min(self.max, self.initial * 2.0 ** min(failures - 1, 62))


@dataclass(slots=True)
class _Run:
    component: Component
    name: str
    started_ns: int = 0
    running: bool = False
    failures: int = 0  # in a row


@dataclass(frozen=True, slots=True)
class DownLoop:
    """A loop that failed its restart budget."""

    component: Component
    name: str
    failures: int


@dataclass
class Supervisor:
    """Runs coroutine functions until cancelled, restarting them when they fail."""

    metrics: ExporterMetrics | None = None
    clock: Clock = field(default_factory=SystemClock)
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    # Injectable for tests that record the backoff; it must really wait.
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _runs: dict[int, _Run] = field(default_factory=dict, init=False)
    _ids: itertools.count[int] = field(default_factory=itertools.count, init=False)

    def __post_init__(self) -> None:
        if self.metrics is not None:
            for component in Component:
                self.metrics.background_errors.labels(component.value)
                self.metrics.background_down.labels(component.value).set_function(
                    self._down_gauge(component)
                )

    def _down_gauge(self, component: Component) -> Callable[[], float]:
        return lambda: float(self.down_count(component))

    async def run(
        self,
        component: Component,
        name: str,
        loop: Callable[[], Awaitable[None]],
        *,
        redactor: Callable[[], Redactor] = Redactor,
    ) -> None:
        """Await `loop()` again and again until cancelled. A return counts as a
        failure too: a long-lived loop has no reason to end. The secrets of
        `redactor()` are redacted from the logged traceback. `name` is a configured
        name (a target, a Flux instance) for the log line; it is not a label."""
        key = next(self._ids)
        state = self._runs[key] = _Run(component, name)
        try:
            while True:
                state.started_ns = self.clock.monotonic_ns()
                state.running = True
                error: Exception | None = None
                try:
                    await loop()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the supervision boundary: logged and counted below
                    error = exc
                state.running = False
                lived = (self.clock.monotonic_ns() - state.started_ns) * _NS
                if lived >= self.policy.healthy_after:
                    state.failures = 0
                state.failures += 1
                delay = self.policy.delay(state.failures)
                self._record(state, error, redactor(), delay)
                await self.sleep(delay)
        finally:
            del self._runs[key]

    def _record(
        self, state: _Run, error: Exception | None, redactor: Redactor, delay: float
    ) -> None:
        if self.metrics is not None:
            self.metrics.background_errors.labels(state.component.value).inc()
        if error is None:
            what = "returned"
        elif state.failures == 1:
            # The traceback once per streak: the next failures are most likely the same.
            what = redactor.redact("".join(traceback.format_exception(error)))
        else:
            what = redactor.cut(f"{type(error).__name__}: {error}", 300)
        info = fields(
            component=state.component.value,
            name=state.name,
            failures=state.failures,
            backoff_seconds=round(delay, 3),
            err=what,
        )
        if state.failures == self.policy.budget:
            log.error("background loop keeps failing; reported down, still retrying", extra=info)
        else:
            log.error("background loop failed; restarting", extra=info)

    def _is_down(self, run: _Run, now_ns: int) -> bool:
        if run.failures < self.policy.budget:
            return False
        # A restart that has now run for healthy_after is healthy, before it ever fails.
        return not (run.running and (now_ns - run.started_ns) * _NS >= self.policy.healthy_after)

    def down(self) -> list[DownLoop]:
        """The loops that failed their restart budget and have not recovered."""
        now = self.clock.monotonic_ns()
        return [
            DownLoop(run.component, run.name, run.failures)
            for run in self._runs.values()
            if self._is_down(run, now)
        ]

    def down_count(self, component: Component) -> int:
        """How many loops of `component` are down (the gauge's value)."""
        now = self.clock.monotonic_ns()
        return sum(
            1
            for run in self._runs.values()
            if run.component is component and self._is_down(run, now)
        )
