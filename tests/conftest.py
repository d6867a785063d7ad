"""Shared fixtures: the built-in LLM simulator, target configs and a probe runner."""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.helpers import LOGGING_ERRORS
from ttft_exporter.clock import Clock, SystemClock
from ttft_exporter.config import Config, ConfigHolder, TargetConfig, parse_config
from ttft_exporter.listener import ConnectionGuard, GatedSite, ListenerLimits
from ttft_exporter.probes import create_session, get_prober
from ttft_exporter.probes.base import ProbeResult
from ttft_exporter.server import ExporterState, create_app
from ttft_exporter.sim.llm import (
    LLM_SIM_STATE,
    LLMSimConfig,
    LLMSimState,
    ModelBehaviour,
    create_llm_app,
    run_llm_sim,
)
from ttft_exporter.sinks.prometheus.record import record_result
from ttft_exporter.sinks.prometheus.series import MetricStore

# --- markers ---------------------------------------------------------------------------

# Fixtures that run a Prometheus binary (tests/unit/rules/conftest.py): their tests get
# the `tools` marker, so `make test` (-m "not integration and not slow and not tools")
# needs no Prometheus package.
_TOOL_FIXTURES = frozenset({"promtool", "amtool"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _TOOL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.tools)


# --- no test leaks logging state ----------------------------------------------------
# `cli.run()` configures logging for a real process: the root logger gets one handler
# bound to the sys.stderr of that moment, which under pytest is a capture file closed
# at the end of the test. Left in place, every later log line raised "--- Logging
# error ---" (21 tracebacks per run before this guard). Logging state is saved around
# each test's whole protocol (setup, call, teardown), outside pytest's own per-phase
# capture handlers, and restored after it.


def _logger_levels() -> dict[str, int]:
    loggers = logging.Logger.manager.loggerDict.values()
    return {lg.name: lg.level for lg in loggers if isinstance(lg, logging.Logger)}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    root = logging.getLogger()
    handlers, level, levels = root.handlers[:], root.level, _logger_levels()
    disabled = logging.root.manager.disable
    try:
        return (yield)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, saved in levels.items():
            logging.getLogger(name).setLevel(saved)
        logging.disable(disabled)


def pytest_configure(config: pytest.Config) -> None:
    """Record every "--- Logging error ---" (a handler failing to emit) instead of only
    printing it to a stderr nobody reads; `_no_logging_errors` fails the test."""
    original = logging.Handler.handleError

    def handle_error(self: logging.Handler, record: logging.LogRecord) -> None:
        LOGGING_ERRORS.append(f"{type(self).__name__}: {record.getMessage()!r}")
        original(self, record)

    logging.Handler.handleError = handle_error  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _no_logging_errors() -> Iterator[None]:
    """A test during which a log handler failed to emit fails (in its teardown)."""
    LOGGING_ERRORS.clear()
    yield
    if LOGGING_ERRORS:
        found = list(LOGGING_ERRORS)
        LOGGING_ERRORS.clear()
        pytest.fail(f"--- Logging error --- during this test: {found}")


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


SimClient = TestClient[web.Request, web.Application]


async def sim_client(
    aiohttp_client: Callable[[web.Application], Awaitable[SimClient]],
    api_key: str | None = None,
    **knobs: Any,
) -> SimClient:
    """A test client of a simulator app serving model `m` with `knobs`, instant unless
    they say otherwise (ttft and itl 0)."""
    behaviour = ModelBehaviour(**{"ttft": 0.0, "itl": 0.0, **knobs})
    config = LLMSimConfig(models={"m": behaviour}, api_key=api_key)
    return await aiohttp_client(create_llm_app(config))


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


async def probe_once(
    target: TargetConfig, timeout: float | None = None, clock: Clock | None = None
) -> ProbeResult:
    """Run one probe the way the executor does, without recording; `clock` is the
    probe's clock (the system's unless a test injects one)."""
    import asyncio

    async with create_session(target.tls, reuse_connections=target.reuse_connections) as session:
        prepared = get_prober(target.protocol)(target, session, clock or SystemClock())
        deadline = target.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(deadline):
                return await prepared.run()
        except Exception as exc:  # noqa: BLE001 - mirrors the executor's boundary
            return prepared.failure(exc, deadline)


def within(measured: float | None, injected: float, *, slack: float = 2.0) -> bool:
    """A measured duration against the simulator's injected one: never early (1 ms
    off for clock rounding), late by up to `slack` (scheduling on a loaded shared box,
    `stress-ng --cpu 2`)."""
    return measured is not None and injected - 0.001 <= measured <= injected + slack


def recorded(result: ProbeResult) -> MetricStore:
    """The metric store after recording one probe result for target `t`."""
    store = MetricStore()
    record_result(store.ensure("t", {"target": "t"}), result, timeout=5.0)
    return store


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
