"""One background loop per configured target: start jitter, a fixed cadence, no
overlap with itself (a late probe skips a tick and counts it), and a config swap that
restarts only the targets that changed. Every task is an aiojobs job owned by the app,
and every loop runs under the supervisor (restarted with backoff if it ever fails)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import aiohttp
import aiojobs

from ttft_exporter.config import Config, TargetConfig
from ttft_exporter.executor import ProbeExecutor
from ttft_exporter.logs import fields
from ttft_exporter.probes import create_session
from ttft_exporter.selfmetrics import ExporterMetrics
from ttft_exporter.shard import Shard
from ttft_exporter.sinks import Sink, budget_series
from ttft_exporter.supervise import Component, Supervisor

__all__ = ["ProbeScheduler", "TargetRunner"]

log = logging.getLogger("ttft_exporter.scheduler")


class TargetRunner:
    """The probe loop of one target, with its own HTTP session."""

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
    ) -> None:
        self.target = target
        self.fingerprint = target.fingerprint()
        self._executor = executor
        self._sink = sink
        self._jobs = jobs
        self._metrics = metrics
        self._supervisor = supervisor
        self._start_jitter = start_jitter
        self._loop_job: aiojobs.Job[None] | None = None
        self._probe_job: aiojobs.Job[object] | None = None
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the session and spawn the loop."""
        if self._loop_job is not None:
            raise RuntimeError(f"runner of target {self.target.name!r} already started")
        self.session = create_session(
            self.target.tls, reuse_connections=self.target.reuse_connections
        )
        self._loop_job = await self._jobs.spawn(
            self._supervisor.run(
                Component.PROBE, self.target.name, self._loop, redactor=lambda: self.target.redactor
            ),
            name=f"probe-loop {self.target.name}",
        )

    async def stop(self) -> None:
        """Cancel the loop and any probe in flight, close the session."""
        for job in (self._loop_job, self._probe_job):
            if job is not None and not job.closed:
                await job.close()
        if self.session is not None:
            await self.session.close()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.target.interval
        if self._start_jitter:
            # Spread targets over the interval so they don't all fire on one tick.
            await asyncio.sleep(random.uniform(0, interval))
        next_tick = loop.time()
        while True:
            if self._probe_job is not None and not self._probe_job.closed:
                self._metrics.skipped.labels(self.target.name).inc()
                log.warning(
                    "previous probe still running; skipping",
                    extra=fields(target=self.target.name),
                )
            # A spent daily budget pauses the target (counted by the budget, logged
            # once when it tripped); the loop keeps ticking to resume at 00:00 UTC.
            elif self._executor.budget.admit(self.target, budget_series(self._sink, self.target)):
                self._probe_job = await self._jobs.spawn(
                    self._probe(), name=f"probe {self.target.name}"
                )
            next_tick += interval
            now = loop.time()
            if next_tick < now:
                # Fell behind (e.g. a suspended process): realign instead of bursting.
                next_tick = now + interval
            await asyncio.sleep(next_tick - now)

    async def _probe(self) -> object:
        assert self.session is not None  # noqa: S101 - start() opens it before the loop
        return await self._executor.run(self.target, self.session, self._sink)


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
    ) -> None:
        self._executor = executor
        self._sink = sink
        self._jobs = jobs
        self._metrics = metrics
        self._supervisor = supervisor
        self._start_jitter = start_jitter
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
            if target is None or target.fingerprint() != runner.fingerprint:
                await runner.stop()
                del self.runners[name]
                if target is None:
                    self._sink.on_target_removed(name)
                    self._remove_skipped(name)
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
