"""The background loops of every configured target, one per scenario it probes, plus
its cold cycle: start jitter, a fixed cadence, no overlap with itself (a late probe
skips a tick and counts it), and a config swap that restarts only the targets (and
scenarios) that changed. Every task is an aiojobs job owned by the app,
and every loop runs under the supervisor (restarted with backoff if it ever fails)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import aiohttp
import aiojobs

from ttft_exporter.clock import AsyncioSleeper, Clock, Sleeper, SystemClock
from ttft_exporter.cold import ColdCycle, HoldGate
from ttft_exporter.config import Config, TargetConfig
from ttft_exporter.executor import ProbeExecutor
from ttft_exporter.logs import fields
from ttft_exporter.probes import create_session
from ttft_exporter.scenarios import DEFAULT_SCENARIO, ColdConfig
from ttft_exporter.selfmetrics import ExporterMetrics
from ttft_exporter.shard import Shard
from ttft_exporter.sinks import Sink, budget_series
from ttft_exporter.supervise import Component, Supervisor

__all__ = ["ProbeScheduler", "TargetRunner"]

log = logging.getLogger("ttft_exporter.scheduler")


class _Loop:
    """A job of a runner: a scenario's probe loop or the cold cycle, with the
    fingerprint it was started from and the probe it has in flight."""

    def __init__(self, target: TargetConfig) -> None:
        self.target = target
        self.fingerprint = target.probe_fingerprint()
        self.job: aiojobs.Job[None] | None = None
        self.probe_job: aiojobs.Job[object] | None = None

    async def close(self) -> None:
        for job in (self.job, self.probe_job):
            if job is not None and not job.closed:
                await job.close()


class TargetRunner:
    """The probe loops of one target, one per scenario (the `default` one when it
    configures none) plus its cold cycle, sharing one HTTP session. The executor runs
    one probe of a target at a time, so its scenarios never overlap each other."""

    def __init__(
        self,
        target: TargetConfig,
        *,
        executor: ProbeExecutor,
        sink: Sink,
        jobs: aiojobs.Scheduler,
        metrics: ExporterMetrics,
        supervisor: Supervisor,
        start_jitter: bool = True,
        clock: Clock | None = None,
        sleeper: Sleeper | None = None,
    ) -> None:
        self.target = target
        self.fingerprint = target.fingerprint()
        self.session_fingerprint = target.session_fingerprint()
        self._executor = executor
        self._sink = sink
        self._jobs = jobs
        self._metrics = metrics
        self._supervisor = supervisor
        self._start_jitter = start_jitter
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._sleeper: Sleeper = sleeper if sleeper is not None else AsyncioSleeper()
        self.gate = HoldGate()
        self.loops: dict[str, _Loop] = {}
        self.cold: _Loop | None = None
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the session and spawn the loops."""
        if self.session is not None:
            raise RuntimeError(f"runner of target {self.target.name!r} already started")
        self.session = create_session(
            self.target.tls, reuse_connections=self.target.reuse_connections
        )
        await self._sync(self.target)

    async def update(self, target: TargetConfig) -> None:
        """Take a new config of the same target (same session settings): restart only
        the scenarios (and cold cycle) whose fingerprint moved, start new ones, stop
        removed ones and drop their series."""
        if target.session_fingerprint() != self.session_fingerprint:
            raise RuntimeError(f"target {target.name!r} needs a new session: restart it")
        self.target = target
        self.fingerprint = target.fingerprint()
        await self._sync(target)

    async def _sync(self, target: TargetConfig) -> None:
        wanted = {t.scenario: t for t in target.probe_targets()}
        for scenario, running in list(self.loops.items()):
            new = wanted.get(scenario)
            if new is None or new.probe_fingerprint() != running.fingerprint:
                await running.close()
                del self.loops[scenario]
        for scenario, new in wanted.items():
            if scenario not in self.loops:
                self.loops[scenario] = await self._spawn_scenario(new)
        cold = target.cold_target()
        if self.cold is not None and (
            cold is None or cold.probe_fingerprint() != self.cold.fingerprint
        ):
            await self.cold.close()
            self.cold = None
            self.gate.held = False
        if cold is not None and self.cold is None and target.cold is not None:
            self.cold = await self._spawn_cold(cold, target.cold)

    async def _spawn_scenario(self, target: TargetConfig) -> _Loop:
        loop = _Loop(target)
        loop.job = await self._jobs.spawn(
            self._supervisor.run(
                Component.PROBE,
                _job_name(target),
                lambda: self._scenario_loop(loop),
                redactor=lambda: loop.target.redactor,
            ),
            name=f"probe-loop {_job_name(target)}",
        )
        return loop

    async def _spawn_cold(self, target: TargetConfig, config: ColdConfig) -> _Loop:
        loop = _Loop(target)

        async def probe(idle_seconds: float) -> object:
            # The daily budget holds for the cold probe too (refused: counted, as a
            # regular tick is).
            if not self._executor.budget.admit(target, budget_series(self._sink, target)):
                return None
            return await self._run(target, idle_before=idle_seconds)

        cycle = ColdCycle(
            target.name,
            config,
            gate=self.gate,
            executor=self._executor,
            clock=self._clock,
            sleeper=self._sleeper,
            probe=probe,
        )
        loop.job = await self._jobs.spawn(
            self._supervisor.run(
                Component.PROBE, _job_name(target), cycle.run, redactor=lambda: target.redactor
            ),
            name=f"cold-probe {target.name}",
        )
        return loop

    async def stop(self) -> None:
        """Cancel every loop and any probe in flight, close the session."""
        for loop in [*self.loops.values(), *([self.cold] if self.cold else [])]:
            await loop.close()
        if self.session is not None:
            await self.session.close()

    async def _scenario_loop(self, state: _Loop) -> None:
        loop = asyncio.get_running_loop()
        target = state.target
        interval = target.interval
        if self._start_jitter:
            # Spread targets over the interval so they don't all fire on one tick.
            await asyncio.sleep(random.uniform(0, interval))
        next_tick = loop.time()
        while True:
            if self.gate.held:
                # The cold probe waits for the target to be idle: not a skip.
                log.debug(
                    "probe held for the cold probe",
                    extra=fields(target=target.name, scenario=target.scenario),
                )
            elif state.probe_job is not None and not state.probe_job.closed:
                self._metrics.skipped.labels(target.name).inc()
                log.warning(
                    "previous probe still running; skipping",
                    extra=fields(target=target.name, scenario=target.scenario),
                )
            # A spent daily budget pauses the target (counted by the budget, logged
            # once when it tripped); the loop keeps ticking to resume at 00:00 UTC.
            elif self._executor.budget.admit(target, budget_series(self._sink, target)):
                state.probe_job = await self._jobs.spawn(
                    self._run(target), name=f"probe {_job_name(target)}"
                )
            next_tick += interval
            now = loop.time()
            if next_tick < now:
                # Fell behind (e.g. a suspended process): realign instead of bursting.
                next_tick = now + interval
            await asyncio.sleep(next_tick - now)

    async def _run(self, target: TargetConfig, idle_before: float | None = None) -> object:
        assert self.session is not None  # noqa: S101 - start() opens it before the loops
        return await self._executor.run(target, self.session, self._sink, idle_before=idle_before)


def _job_name(target: TargetConfig) -> str:
    # The default scenario keeps the target's own name (logs, readiness output).
    if target.scenario == DEFAULT_SCENARIO:
        return target.name
    return f"{target.name}/{target.scenario}"


class ProbeScheduler:
    """Owns the runners of every configured target."""

    def __init__(
        self,
        *,
        executor: ProbeExecutor,
        sink: Sink,
        jobs: aiojobs.Scheduler,
        metrics: ExporterMetrics,
        supervisor: Supervisor,
        start_jitter: bool = True,
        clock: Clock | None = None,
        sleeper: Sleeper | None = None,
    ) -> None:
        self._executor = executor
        self._sink = sink
        self._jobs = jobs
        self._metrics = metrics
        self._supervisor = supervisor
        self._start_jitter = start_jitter
        # The cold cycle's time: the executor's clock, and a way to wait on it.
        self._clock = clock
        self._sleeper = sleeper
        self.runners: dict[str, TargetRunner] = {}

    async def apply(self, config: Config, shard: Shard | None = None) -> None:
        """Make the running loops match `config`: stop removed and changed targets,
        start new and changed ones, leave the rest (and their series) alone. With a
        `shard`, only the targets it owns run here (another shard's are "removed")."""
        self._executor.set_concurrency(config.concurrency)
        owner = shard or Shard.from_config(config.shard)
        wanted = {t.name: t for t in config.targets if owner.owns(t.name)}
        for name, runner in list(self.runners.items()):
            target = wanted.get(name)
            if target is not None and target.fingerprint() == runner.fingerprint:
                continue
            if target is not None and target.session_fingerprint() == runner.session_fingerprint:
                # Same session: only the scenarios that changed restart.
                await runner.update(target)
                # Its series follow: new scenarios get theirs, removed ones lose them.
                self._sink.on_target(target)
                log.info("updated target", extra=fields(target=name))
                continue
            await runner.stop()
            del self.runners[name]
            if target is None:
                self._sink.on_target_removed(name)
                self._remove_skipped(name)
                self._executor.forget(name)
            log.info("stopped target", extra=fields(target=name))
        for name, target in wanted.items():
            if name in self.runners:
                continue
            self._sink.on_target(target)
            self._metrics.skipped.labels(name)
            runner = TargetRunner(
                target,
                executor=self._executor,
                sink=self._sink,
                jobs=self._jobs,
                metrics=self._metrics,
                supervisor=self._supervisor,
                start_jitter=self._start_jitter,
                clock=self._clock,
                sleeper=self._sleeper,
            )
            await runner.start()
            self.runners[name] = runner
            log.info(
                "started target",
                extra=fields(
                    target=name,
                    protocol=target.protocol,
                    interval_seconds=target.interval,
                ),
            )

    def _remove_skipped(self, name: str) -> None:
        with contextlib.suppress(KeyError):
            self._metrics.skipped.remove(name)

    async def close(self) -> None:
        """Stop every runner."""
        for runner in list(self.runners.values()):
            await runner.stop()
        self.runners.clear()
