"""Fixtures for the Flux monitor tests: the Flux simulator and a running monitor."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from ttft_exporter.catalogue import DEFAULT_BUCKETS
from ttft_exporter.clock import Clock, SystemClock
from ttft_exporter.config import parse_config
from ttft_exporter.flux.canary import FluxCanary, FluxQuery
from ttft_exporter.flux.config import FluxInstanceConfig
from ttft_exporter.flux.events import FluxStarted
from ttft_exporter.flux.monitor import FluxMonitor
from ttft_exporter.sim.flux import FLUX_SIM, FluxSim, FluxSimConfig, run_flux_sim
from ttft_exporter.sinks import FanOut
from ttft_exporter.sinks.prometheus.series import MetricStore
from ttft_exporter.sinks.prometheus.sink import PrometheusSink


@dataclass
class RunningFlux:
    runner: web.AppRunner
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sim(self) -> FluxSim:
        return self.runner.app[FLUX_SIM]


@dataclass
class Watched:
    """A monitor running against a simulator, with its registry."""

    config: FluxInstanceConfig
    registry: CollectorRegistry
    monitor: FluxMonitor
    session: aiohttp.ClientSession
    canary: FluxCanary | None = None
    query: FluxQuery | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def value(self, name: str, **labels: str) -> float:
        found = self.registry.get_sample_value(name, {"flux": self.config.name, **labels})
        return 0.0 if found is None else found

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError(f"condition not met within {timeout}s")
            await asyncio.sleep(0.01)


FluxFactory = Callable[..., Awaitable[RunningFlux]]
WatchFactory = Callable[..., Awaitable[Watched]]


@pytest.fixture
async def make_flux_sim() -> AsyncIterator[FluxFactory]:
    started: list[RunningFlux] = []

    async def make(**knobs: Any) -> RunningFlux:
        knobs.setdefault("metrics_interval", 0.1)
        runner, port = await run_flux_sim(FluxSimConfig(**knobs))
        running = RunningFlux(runner, port)
        started.append(running)
        return running

    yield make
    for running in started:
        await running.runner.cleanup()


def flux_config(url: str, **fields: Any) -> FluxInstanceConfig:
    fields.setdefault("name", "main")
    fields.setdefault("stale_after", "1s")
    fields.setdefault("reconnect", {"initial": "100ms", "max": "200ms"})
    return parse_config({"flux": [{"url": url, **fields}]}).flux[0]


@pytest.fixture
async def watch() -> AsyncIterator[WatchFactory]:
    """`await watch(flux_config(...), start=True)` runs a monitor (and its checks)."""
    made: list[Watched] = []

    async def make(
        config: FluxInstanceConfig,
        *,
        start: bool = True,
        loops: bool = True,
        clock: Clock | None = None,
    ) -> Watched:
        """`clock`: an injected clock; then the staleness watchdog is not started
        (the test drives check_staleness() and connection_silent() itself)."""
        registry = CollectorRegistry()
        # The exporter's path: a fan-out to the Prometheus sink, the instance announced.
        prometheus = PrometheusSink(MetricStore(), registry)
        prometheus.configure_flux(DEFAULT_BUCKETS)
        metrics = FanOut([prometheus])
        metrics.on_flux_event(FluxStarted(config.name, tuple(config.groups)))
        session = aiohttp.ClientSession()
        watchdog = clock is None
        clock = clock or SystemClock()
        monitor = FluxMonitor(config, metrics, session, clock)
        watched = Watched(config, registry, monitor, session)
        if config.canary is not None:
            watched.canary = FluxCanary(config, monitor, metrics, session, clock)
        if config.query is not None:
            watched.query = FluxQuery(config, metrics, session, clock)
        if start:
            watched.tasks.append(asyncio.create_task(monitor.run()))
            if watchdog:
                watched.tasks.append(asyncio.create_task(monitor.watch_staleness()))
            if loops and watched.canary is not None:
                watched.tasks.append(asyncio.create_task(watched.canary.run()))
        made.append(watched)
        return watched

    yield make
    for watched in made:
        for task in watched.tasks:
            task.cancel()
        for task in watched.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await watched.session.close()
