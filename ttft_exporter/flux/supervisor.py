"""Owns one monitor (and its canary and read check) per configured Flux instance;
on a config change only the instances that changed restart. Each of their loops runs
under the exporter's Supervisor, so an unexpected error restarts it with backoff."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import aiojobs

from ttft_exporter.clock import Clock
from ttft_exporter.flux.canary import FluxCanary, FluxQuery
from ttft_exporter.flux.config import FluxInstanceConfig
from ttft_exporter.flux.events import FluxEventSink, FluxStarted, FluxStopped
from ttft_exporter.flux.monitor import FluxMonitor
from ttft_exporter.logs import fields
from ttft_exporter.supervise import Component, Supervisor

__all__ = ["FluxRunning", "FluxSupervisor"]

log = logging.getLogger("ttft_exporter.flux")


@dataclass
class FluxRunning:
    """One watched instance: its config, monitor and optional canary."""

    config: FluxInstanceConfig
    fingerprint: str
    monitor: FluxMonitor
    session: aiohttp.ClientSession
    canary: FluxCanary | None = None
    jobs: list[aiojobs.Job[None]] = field(default_factory=list)


class FluxSupervisor:
    """Starts, restarts (on config change) and stops the Flux monitors."""

    def __init__(
        self,
        *,
        sink: FluxEventSink,
        jobs: aiojobs.Scheduler,
        clock: Clock,
        supervisor: Supervisor,
    ) -> None:
        self._sink = sink
        self._jobs = jobs
        self._clock = clock
        self._supervisor = supervisor
        self.running: dict[str, FluxRunning] = {}

    async def apply(self, instances: Sequence[FluxInstanceConfig]) -> None:
        """Make the running monitors match the config."""
        wanted = {i.name: i for i in instances}
        for name, running in list(self.running.items()):
            config = wanted.get(name)
            if config is None or config.fingerprint() != running.fingerprint:
                await self._stop(running)
                del self.running[name]
                self._sink.on_flux_event(FluxStopped(name, tuple(running.config.groups)))
        for name, config in wanted.items():
            if name not in self.running:
                self.running[name] = await self._start(config)

    async def _start(self, config: FluxInstanceConfig) -> FluxRunning:
        self._sink.on_flux_event(FluxStarted(config.name, tuple(config.groups)))
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout)
        )
        monitor = FluxMonitor(config, self._sink, session, self._clock)
        running = FluxRunning(config, config.fingerprint(), monitor, session)
        loops: list[tuple[Component, Callable[[], Awaitable[None]]]] = [
            (Component.FLUX_MONITOR, monitor.run),
            (Component.FLUX_STALENESS, monitor.watch_staleness),
        ]
        if config.canary is not None:
            canary = FluxCanary(config, monitor, self._sink, session, self._clock)
            running.canary = canary
            loops.append((Component.FLUX_CANARY, canary.run))
        if config.query is not None:
            query = FluxQuery(config, self._sink, session, self._clock)
            loops.append((Component.FLUX_READ_CHECK, query.run))
        for component, loop in loops:
            supervised = self._supervisor.run(
                component, config.name, loop, redactor=lambda: config.redactor
            )
            running.jobs.append(
                await self._jobs.spawn(supervised, name=f"{component} {config.name}")
            )
        log.info("watching flux", extra=fields(flux=config.name, url=config.url))
        return running

    async def _stop(self, running: FluxRunning) -> None:
        for job in running.jobs:
            if not job.closed:
                await job.close()
        await running.session.close()

    async def close(self) -> None:
        """Stop every monitor."""
        for running in list(self.running.values()):
            await self._stop(running)
        self.running.clear()
