"""Shared fixtures: the built-in LLM simulator, target configs and a probe runner."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from ttft_exporter.clock import SystemClock
from ttft_exporter.config import Config, ConfigHolder, TargetConfig, parse_config
from ttft_exporter.listener import ConnectionGuard, GatedSite, ListenerLimits
from ttft_exporter.metrics import MetricStore
from ttft_exporter.probes import create_session, get_prober
from ttft_exporter.probes.base import ProbeResult
from ttft_exporter.server import ExporterState, create_app
from ttft_exporter.sim.llm import (
    LLM_SIM_STATE,
    LLMSimConfig,
    LLMSimState,
    ModelBehaviour,
    run_llm_sim,
)


@dataclass
class RunningSim:
    """A simulator listening on 127.0.0.1."""

    runner: web.AppRunner
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> LLMSimState:
        return self.runner.app[LLM_SIM_STATE]


SimFactory = Callable[..., Awaitable[RunningSim]]


@pytest.fixture
async def make_llm_sim() -> AsyncIterator[SimFactory]:
    """Start simulators: `await make_llm_sim(m=ModelBehaviour(...), api_key=...)`."""
    started: list[RunningSim] = []

    async def make(api_key: str | None = None, **models: ModelBehaviour) -> RunningSim:
        config = LLMSimConfig(models=models or {"m": ModelBehaviour()}, api_key=api_key)
        runner, port = await run_llm_sim(config)
        sim = RunningSim(runner, port)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.runner.cleanup()


def make_config(*targets: dict[str, Any], **top: Any) -> Config:
    """A validated Config from target dicts; fills in sensible test defaults."""
    full = []
    for target in targets:
        full.append(
            {
                "protocol": "openai-chat",
                "model": "m",
                "prompt": "hello",
                "interval": "10s",
                "timeout": "5s",
                **target,
            }
        )
    return parse_config({"targets": full, **top})


def make_target(**fields: Any) -> TargetConfig:
    """One validated target: `make_target(name="a", url=sim.url + "/v1")`."""
    fields.setdefault("name", "t")
    return make_config(fields).targets[0]


async def probe_once(target: TargetConfig, timeout: float | None = None) -> ProbeResult:
    """Run one probe the way the executor does, without recording."""
    import asyncio

    async with create_session(target.tls, reuse_connections=target.reuse_connections) as session:
        prepared = get_prober(target.protocol)(target, session, SystemClock())
        deadline = target.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(deadline):
                return await prepared.run()
        except Exception as exc:  # noqa: BLE001 - mirrors the executor's boundary
            return prepared.failure(exc, deadline)


def make_state(config: Config, **kwargs: Any) -> ExporterState:
    """Exporter state for in-process app tests (no start jitter by default)."""
    kwargs.setdefault("start_jitter", False)
    return ExporterState(holder=ConfigHolder(kwargs.pop("path", None), config), **kwargs)


@pytest.fixture
def fresh_store() -> MetricStore:
    """A metric store that no other test touches."""
    return MetricStore()


@contextlib.asynccontextmanager
async def served(
    state: ExporterState,
    limits: ListenerLimits | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[int]:
    """The exporter app on 127.0.0.1 behind the real listener (connection cap, header
    deadline, TLS), as `serve()` runs it; yields the port."""
    limits = limits or ListenerLimits()
    runner = web.AppRunner(
        create_app(state), access_log=None, keepalive_timeout=limits.idle_timeout
    )
    await runner.setup()
    site = GatedSite(
        runner,
        "127.0.0.1",
        0,
        guard=ConnectionGuard(limits, state.metrics),
        ssl_context=ssl_context,
    )
    try:
        await site.start()
        yield site.port
    finally:
        await runner.cleanup()
