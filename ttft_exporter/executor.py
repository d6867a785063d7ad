"""Runs one probe of one target to a recorded result: the global concurrency cap, the
separate pool of ad-hoc (`/probe`) probes, one probe per target at a time, the deadline,
the exception boundary, the suspect mark (was the exporter itself starved meanwhile?),
recording, history and one log line."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp

from ttft_exporter.budget import ProbeBudget
from ttft_exporter.catalogue import DEFAULT_INTER_TOKEN_BUCKETS
from ttft_exporter.clock import Clock
from ttft_exporter.config import TargetConfig
from ttft_exporter.errors import AdhocRejectReason, FailureReason, ProbeRejected
from ttft_exporter.history import History, ProbeRecord
from ttft_exporter.limiter import CapacityLimiter
from ttft_exporter.logs import fields
from ttft_exporter.looplag import LoopLagMonitor
from ttft_exporter.probes import get_prober
from ttft_exporter.probes.base import ProbeResult
from ttft_exporter.selfmetrics import ExporterMetrics
from ttft_exporter.sinks import Sink, budget_series
from ttft_exporter.traceids import format_trace_id, new_span_id, new_trace_id

__all__ = ["DEFAULT_ADHOC_CONCURRENCY", "ProbeExecutor"]

log = logging.getLogger("ttft_exporter.probe")

# Ad-hoc probes are for a person or a blackbox-style scrape job looking at one target
# now and then, not a second scheduler: a handful at once is plenty.
DEFAULT_ADHOC_CONCURRENCY = 4


@dataclass
class _Claim:
    """The probe of a target that runs now: only one at a time per target."""

    kind: str  # "scheduled" or "ad-hoc"
    until: float  # loop time by which it ends at the latest
    released: asyncio.Event = field(default_factory=asyncio.Event)


class ProbeExecutor:
    """Shared by the background loops and `/probe`.

    Scheduled probes share one global cap (`concurrency`); ad-hoc probes have a small
    pool of their own, so no number of `/probe` calls can take a slot from the loops.
    Both limiters live as long as the app: a reload resizes them instead of replacing
    them, so old and new probes together never exceed a cap. A target never has two
    probes in flight: an ad-hoc probe of a busy target is refused at once (429), and a
    scheduled probe waits for the target's ad-hoc probe (bounded by its deadline).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        concurrency: int,
        metrics: ExporterMetrics,
        history: History,
        adhoc_concurrency: int = DEFAULT_ADHOC_CONCURRENCY,
        lag_monitor: LoopLagMonitor | None = None,
        budget: ProbeBudget | None = None,
        trace_ids: bool = False,
    ) -> None:
        self._clock = clock
        # Tracing on (`otel.traces`): every probe gets a trace id and a span id, which
        # the sinks turn into its span and its exemplars. Off, nothing is drawn.
        # A plain attribute: a reload may flip it, the next probe follows.
        self.trace_ids = trace_ids
        # The cost guard's ledger: the runners ask it before each probe, every result
        # (scheduled or ad-hoc) is charged to it. Lives as long as the app, like the
        # limiters, so a reload keeps what each target spent today.
        self.budget = budget if budget is not None else ProbeBudget(clock)
        self._lag = lag_monitor
        self._limiter = CapacityLimiter(concurrency)
        self._adhoc = CapacityLimiter(adhoc_concurrency)
        self._metrics = metrics
        self._claims: dict[str, _Claim] = {}
        # Targets with scheduled probes waiting for another probe of theirs to end
        # (an ad-hoc one, or another scenario's), and how many.
        self._scheduled_waiting: dict[str, int] = {}
        # When the last probe of each target ended (clock.monotonic_ns), scheduled or
        # ad-hoc: how long a target has been idle, for its cold probe.
        self._last_end: dict[str, int] = {}
        self.history = history

    @property
    def concurrency(self) -> int:
        """The global cap of scheduled probes."""
        return self._limiter.capacity

    @property
    def adhoc_concurrency(self) -> int:
        """The size of the ad-hoc pool."""
        return self._adhoc.capacity

    def set_concurrency(self, concurrency: int) -> None:
        """Apply a new cap. Probes in flight keep their slots; new ones wait until the
        number running is below the new cap."""
        self._limiter.capacity = concurrency

    async def run(
        self,
        target: TargetConfig,
        session: aiohttp.ClientSession,
        sink: Sink,
        *,
        deadline: float | None = None,
        idle_before: float | None = None,
    ) -> ProbeRecord:
        """A scheduled probe: once, handed to `sink`, kept in history. Never raises
        but for cancellation: every failure becomes a failed result. `idle_before`:
        a cold probe's idle time, carried in its result."""
        timeout = target.timeout if deadline is None else deadline
        await self._wait_for_release(target.name)
        claim = self._claim(target.name, "scheduled", timeout)
        try:
            async with self._limiter:
                claim.until = asyncio.get_running_loop().time() + timeout
                return await self._execute(target, session, sink, timeout, idle_before=idle_before)
        finally:
            self._release(target.name, claim)

    @contextlib.asynccontextmanager
    async def adhoc_slot(self, target: TargetConfig, deadline: float) -> AsyncIterator[float]:
        """Reserve the target and a slot of the ad-hoc pool for one `/probe`; yields the
        deadline left for the probe itself, since waiting for the pool counts against it.

        Raises ProbeRejected: 429 when the target has a probe in flight (or its
        scheduled probe is about to start), 503 when no slot frees up in time.
        """
        loop = asyncio.get_running_loop()
        name = target.name
        if self.budget.exhausted(target):
            self._metrics.adhoc_rejected.labels(AdhocRejectReason.BUDGET_EXHAUSTED).inc()
            raise ProbeRejected(
                429,
                f"the daily budget of target {name!r} is spent; probing resumes at 00:00 UTC",
                retry_after=max(1, math.ceil(self.budget.seconds_to_reset())),
            )
        running = self._claims.get(name)
        if running is not None or name in self._scheduled_waiting:
            self._metrics.adhoc_rejected.labels(AdhocRejectReason.TARGET_BUSY).inc()
            kind = running.kind if running is not None else "scheduled"
            until = running.until if running is not None else loop.time() + target.timeout
            raise ProbeRejected(
                429,
                f"target {name!r} has a {kind} probe in flight; one probe per target at a "
                "time, so this one was not started: retry later",
                retry_after=max(1, math.ceil(until - loop.time())),
            )
        started = loop.time()
        claim = self._claim(name, "ad-hoc", deadline)
        try:
            try:
                async with asyncio.timeout(deadline):
                    await self._adhoc.acquire()
            except TimeoutError:
                self._metrics.adhoc_rejected.labels(AdhocRejectReason.POOL_TIMEOUT).inc()
                raise ProbeRejected(
                    503,
                    f"no ad-hoc probe slot became free within the probe deadline of "
                    f"{deadline:g}s: all {self._adhoc.capacity} slots are busy "
                    "(see --probe.adhoc-concurrency)",
                    retry_after=max(1, math.ceil(deadline)),
                ) from None
            try:
                yield max(deadline - (loop.time() - started), 0.0)
            finally:
                self._adhoc.release()
        finally:
            self._release(name, claim)

    async def run_adhoc(
        self,
        target: TargetConfig,
        session: aiohttp.ClientSession,
        sink: Sink,
        *,
        deadline: float,
        left: float,
    ) -> ProbeRecord:
        """The probe of a `/probe` call, inside `adhoc_slot()`: `deadline` is the one
        reported, `left` what remains of it after waiting for the pool."""
        claim = self._claims.get(target.name)
        if claim is None or claim.kind != "ad-hoc":
            raise RuntimeError(f"run_adhoc({target.name!r}) outside adhoc_slot()")
        return await self._execute(target, session, sink, deadline, budget=left)

    async def _wait_for_release(self, name: str) -> None:
        # One probe per target at a time: a scheduled probe waits for the target's
        # probe in flight (ad-hoc, or another scenario's), bounded by its deadline.
        while (claim := self._claims.get(name)) is not None:
            self._scheduled_waiting[name] = self._scheduled_waiting.get(name, 0) + 1
            try:
                await claim.released.wait()
            finally:
                left = self._scheduled_waiting.pop(name) - 1
                if left:
                    self._scheduled_waiting[name] = left

    async def wait_idle(self, name: str) -> None:
        """Return once the target has no probe in flight (each ends by its deadline)."""
        while (claim := self._claims.get(name)) is not None:
            await claim.released.wait()

    def last_probe_end_ns(self, name: str) -> int | None:
        """When the target's last probe ended (clock.monotonic_ns), if it had one."""
        return self._last_end.get(name)

    def forget(self, name: str) -> None:
        """Drop what is kept about a target that left the config."""
        self._last_end.pop(name, None)

    def _claim(self, name: str, kind: str, timeout: float) -> _Claim:
        if name in self._claims:
            raise RuntimeError(f"target {name!r} already has a probe in flight")
        claim = _Claim(kind, asyncio.get_running_loop().time() + timeout)
        self._claims[name] = claim
        return claim

    def _release(self, name: str, claim: _Claim) -> None:
        if self._claims.get(name) is claim:
            del self._claims[name]
        claim.released.set()

    async def _execute(
        self,
        target: TargetConfig,
        session: aiohttp.ClientSession,
        sink: Sink,
        timeout: float,
        *,
        budget: float | None = None,
        idle_before: float | None = None,
    ) -> ProbeRecord:
        self._metrics.in_flight.inc()
        mark = self._lag.mark() if self._lag is not None else None
        # Drawn before the probe runs, so an id is there however it ends.
        ids = (new_trace_id(), new_span_id()) if self.trace_ids else None
        try:
            result, lines = await self._attempt(
                target,
                session,
                timeout if budget is None else budget,
                sink.gap_bounds(target.name) or DEFAULT_INTER_TOKEN_BUCKETS,
            )
        finally:
            self._metrics.in_flight.dec()
            self._last_end[target.name] = self._clock.monotonic_ns()
        if self._lag is not None and mark is not None:
            suspicion = self._lag.check(mark)
            if suspicion is not None:
                result = dataclasses.replace(result, suspect=suspicion.causes)
                lines = [*lines, suspicion.describe()]
        if ids is not None:
            result = dataclasses.replace(result, trace_id=ids[0], span_id=ids[1])
            lines = [*lines, f"trace id {format_trace_id(ids[0])}"]
        if idle_before is not None:
            result = dataclasses.replace(result, idle_before=idle_before)
        sink.on_probe_result(target, result, timeout=timeout)
        self.budget.charge(target, result, budget_series(sink, target))
        self._log(target, result)
        return self.history.add(target.name, result, lines)

    async def _attempt(
        self,
        target: TargetConfig,
        session: aiohttp.ClientSession,
        timeout: float,
        gap_bounds: tuple[float, ...],
    ) -> tuple[ProbeResult, list[str]]:
        try:
            # The sink's own gap buckets, so the probe's gap histogram merges exactly.
            prepared = get_prober(target.protocol)(
                target, session, self._clock, gap_bounds=gap_bounds
            )
        except Exception as exc:
            log.exception("cannot prepare probe", extra=fields(target=target.name))
            return ProbeResult(
                False,
                FailureReason.INTERNAL,
                f"cannot prepare probe: {type(exc).__name__}",
                # A probe was due now: its timestamp must move even though it never ran.
                started_at=self._clock.wall(),
            ), []
        try:
            async with asyncio.timeout(timeout):
                result = await prepared.run()
        except Exception as exc:  # noqa: BLE001 - the probe boundary turns every error into data
            result = prepared.failure(exc, timeout)
            if result.reason is FailureReason.INTERNAL:
                # A bug: log the traceback, with secrets redacted like everything else.
                trace = target.redactor.cut("".join(traceback.format_exception(exc)), 16384)
                log.error(
                    "probe raised an unexpected error",
                    extra=fields(target=target.name, err=trace),
                )
        return result, prepared.log

    def _log(self, target: TargetConfig, result: ProbeResult) -> None:
        if result.success:
            log.debug(
                "probe succeeded",
                extra=fields(
                    target=target.name,
                    ttft_seconds=round(result.time_to_first_token or 0.0, 6),
                    duration_seconds=round(result.duration or 0.0, 6),
                    output_tokens=result.output_tokens,
                    **_suspect_field(result),
                    **_trace_field(result),
                ),
            )
        else:
            log.warning(
                "probe failed",
                extra=fields(
                    target=target.name,
                    reason=result.reason.value if result.reason else "internal",
                    err=result.detail,
                    duration_seconds=round(result.elapsed, 6),
                    **_suspect_field(result),
                    **_trace_field(result),
                ),
            )


def _trace_field(result: ProbeResult) -> dict[str, str]:
    # With tracing on, the log line names its trace, so logs, spans and exemplars meet.
    return {"trace_id": format_trace_id(result.trace_id)} if result.trace_id else {}


def _suspect_field(result: ProbeResult) -> dict[str, str]:
    # Only on suspect probes: the log line of a clean probe stays as it was.
    return {"suspect": ",".join(result.suspect)} if result.suspect else {}
