"""The supervisor of long-lived loops (issue #8 item 4): failures counted by component,
logged once with a redacted traceback, restarted with capped backoff, reported down
after the restart budget (and /-/ready with them), up again after a healthy run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import SimFactory, make_config, make_state
from tests.helpers import ManualClock
from ttft_exporter.catalogue import BACKGROUND_COMPONENTS
from ttft_exporter.logs import fields_of
from ttft_exporter.redact import Redactor
from ttft_exporter.scheduler import TargetRunner
from ttft_exporter.selfmetrics import ExporterMetrics
from ttft_exporter.server import create_app
from ttft_exporter.supervise import Component, RestartPolicy, Supervisor

POLICY = RestartPolicy(initial=0.01, max=0.04, budget=4, healthy_after=5.0)


class Recorder:
    """The supervisor's sleep: records each backoff, then really waits (briefly)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(seconds)


def failing(times: int | None, then: Callable[[], Awaitable[None]] | None = None) -> Any:
    """A loop body that raises on its first `times` runs (None: always), then runs `then`
    (default: forever)."""
    runs = {"n": 0}

    async def loop() -> None:
        runs["n"] += 1
        if times is None or runs["n"] <= times:
            raise RuntimeError(f"loop bug #{runs['n']}")
        await (then() if then is not None else asyncio.Event().wait())

    loop.runs = runs  # type: ignore[attr-defined]
    return loop


def errors(metrics: ExporterMetrics, component: str) -> float:
    value = metrics.registry.get_sample_value(
        "ttft_exporter_background_errors_total", {"component": component}
    )
    return 0.0 if value is None else value


def down_gauge(metrics: ExporterMetrics, component: str) -> float | None:
    return metrics.registry.get_sample_value(
        "ttft_exporter_background_down", {"component": component}
    )


async def wait_until(predicate: Callable[[], bool], what: str, cap: float = 10.0) -> None:
    # Generous cap: the backoffs sum to well under a second, the cap holds under load.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cap
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {cap}s waiting for {what}")
        await asyncio.sleep(0.01)


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_components_match_the_catalogue() -> None:
    assert tuple(c.value for c in Component) == BACKGROUND_COMPONENTS


def test_every_component_series_starts_at_zero() -> None:
    metrics = ExporterMetrics()
    Supervisor(metrics)
    for component in BACKGROUND_COMPONENTS:
        assert errors(metrics, component) == 0.0
        assert down_gauge(metrics, component) == 0.0


def test_backoff_doubles_to_the_cap() -> None:
    policy = RestartPolicy(initial=1.0, max=60.0)
    assert [policy.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.delay(10_000) == 60.0


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0.0}, {"initial": 2.0, "max": 1.0}, {"budget": 0}, {"healthy_after": 0.0}],
)
def test_invalid_policy_fails_loudly(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="invalid restart policy"):
        RestartPolicy(**kwargs)


async def test_repeated_failures_counted_backed_off_logged_once_then_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = ExporterMetrics()
    sleep = Recorder()
    supervisor = Supervisor(metrics, policy=POLICY, sleep=sleep)
    loop = failing(None)
    task = asyncio.create_task(
        supervisor.run(
            Component.FLUX_CANARY, "main", loop, redactor=lambda: Redactor(["s3cr3t-tok"])
        )
    )
    await wait_until(lambda: len(sleep.delays) >= 6, "six restarts")
    await cancel(task)
    runs = loop.runs["n"]
    assert errors(metrics, "flux_canary") == runs
    assert errors(metrics, "probe") == 0.0
    # Exponential from `initial`, capped at `max`.
    assert sleep.delays[:6] == [0.01, 0.02, 0.04, 0.04, 0.04, 0.04]
    records = [r for r in caplog.records if r.name == "ttft_exporter.supervise"]
    assert len(records) == runs
    traces = [r for r in records if "Traceback" in fields_of(r)["err"]]
    assert len(traces) == 1  # once per streak; the rest is one line each
    assert "RuntimeError: loop bug #1" in fields_of(traces[0])["err"]
    assert fields_of(records[1])["err"] == "RuntimeError: loop bug #2"
    assert [fields_of(r)["failures"] for r in records] == list(range(1, runs + 1))
    assert "reported down" in records[POLICY.budget - 1].getMessage()
    assert all(fields_of(r)["component"] == "flux_canary" for r in records)
    # Cancelled: the loop is gone, so it is not down any more.
    assert supervisor.down() == []


async def test_down_after_the_budget_and_up_after_a_healthy_run() -> None:
    clock = ManualClock()
    metrics = ExporterMetrics()
    supervisor = Supervisor(metrics, clock=clock, policy=POLICY, sleep=Recorder())
    loop = failing(POLICY.budget)  # fails `budget` times, then runs
    task = asyncio.create_task(supervisor.run(Component.PROBE, "t", loop))
    await wait_until(lambda: loop.runs["n"] > POLICY.budget, "the restart after the budget")
    [down] = supervisor.down()
    assert (down.component, down.name, down.failures) == (Component.PROBE, "t", POLICY.budget)
    assert down_gauge(metrics, "probe") == 1.0
    assert down_gauge(metrics, "flux_monitor") == 0.0
    clock.advance(POLICY.healthy_after - 0.001)
    assert len(supervisor.down()) == 1
    clock.advance(0.002)  # the restart has now run healthy_after without failing
    assert supervisor.down() == []
    assert down_gauge(metrics, "probe") == 0.0
    await cancel(task)


async def test_a_failure_after_a_healthy_run_starts_a_new_streak() -> None:
    clock = ManualClock()
    sleep = Recorder()
    supervisor = Supervisor(ExporterMetrics(), clock=clock, policy=POLICY, sleep=sleep)
    release = asyncio.Event()

    async def wait_for_release() -> None:
        await release.wait()

    loop = failing(2, then=wait_for_release)  # fails twice, then runs until released
    task = asyncio.create_task(supervisor.run(Component.PROBE, "t", loop))
    await wait_until(lambda: loop.runs["n"] == 3, "the third run")
    clock.advance(POLICY.healthy_after)
    release.set()  # the long run returns: a failure, the first of a new streak
    await wait_until(lambda: len(sleep.delays) == 3, "the third backoff")
    assert sleep.delays == [0.01, 0.02, 0.01]
    await cancel(task)


async def test_return_counts_as_a_failure() -> None:
    metrics = ExporterMetrics()
    sleep = Recorder()
    supervisor = Supervisor(metrics, policy=POLICY, sleep=sleep)

    async def returns() -> None:
        return None

    task = asyncio.create_task(supervisor.run(Component.CONFIG_RELOAD, "sighup", returns))
    await wait_until(lambda: len(sleep.delays) >= 2, "two restarts")
    await cancel(task)
    assert errors(metrics, "config_reload") >= 2


async def test_cancellation_is_not_a_failure() -> None:
    metrics = ExporterMetrics()
    supervisor = Supervisor(metrics, policy=POLICY)
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervisor.run(Component.FLUX_MONITOR, "main", forever))
    await started.wait()
    await cancel(task)
    assert errors(metrics, "flux_monitor") == 0.0


async def test_secrets_are_redacted_from_the_logged_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "flux-SENTINEL-91c2"
    sleep = Recorder()
    supervisor = Supervisor(ExporterMetrics(), policy=POLICY, sleep=sleep)

    async def leaks() -> None:
        raise RuntimeError(f"header was Bearer {secret}")

    task = asyncio.create_task(
        supervisor.run(Component.FLUX_CANARY, "main", leaks, redactor=lambda: Redactor([secret]))
    )
    await wait_until(lambda: len(sleep.delays) >= 2, "two failures")
    await cancel(task)
    texts = [str(fields_of(r)) + r.getMessage() for r in caplog.records]
    assert any("Bearer <secret>" in t for t in texts)
    assert not any("SENTINEL" in t for t in texts)


async def test_probe_loop_bug_is_supervised(
    make_llm_sim: SimFactory, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler's per-target loop itself failing (here: its first two runs raise,
    standing in for a bug): counted as `probe`, restarted, and the target is probed."""
    sim = await make_llm_sim()
    real_loop = TargetRunner._scenario_loop
    runs = {"n": 0}

    async def buggy(self: TargetRunner, state: Any) -> None:
        runs["n"] += 1
        if runs["n"] <= 2:
            raise RuntimeError("loop bug")
        await real_loop(self, state)

    monkeypatch.setattr(TargetRunner, "_scenario_loop", buggy)
    config = make_config(
        {"name": "t", "url": sim.url + "/v1", "interval": "1s", "timeout": "500ms"}
    )
    state = make_state(config, restart_policy=POLICY)
    client = await aiohttp_client(create_app(state))
    await wait_until(
        lambda: (
            (state.store.series["t", "default"].get("ttft_probe_requests_total", ("success",)) or 0)
            >= 1
        ),
        "a successful probe after the restarts",
    )
    assert errors(state.metrics, "probe") == 2.0
    assert (await client.get("/-/ready")).status == 200


async def test_readiness_reports_a_component_down_for_good(aiohttp_client: Any) -> None:
    """A component whose coroutine raises every time, run by the app's own supervisor:
    /-/ready is 503 naming it once it failed its budget, and the gauge says so."""
    state = make_state(make_config(), restart_policy=POLICY)

    async def broken_component(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(
            state.supervisor.run(Component.FLUX_READ_CHECK, "main", failing(None))
        )
        yield
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    state.extra_contexts.append(broken_component)
    client = await aiohttp_client(create_app(state))
    await wait_until(lambda: bool(state.supervisor.down()), "the component to be down")
    response = await client.get("/-/ready")
    assert response.status == 503
    body = await response.text()
    assert body.startswith("Not ready\n")
    assert "flux_read_check main: down after" in body
    metrics = await (await client.get("/metrics")).text()
    assert 'ttft_exporter_background_down{component="flux_read_check"} 1.0' in metrics
    assert errors(state.metrics, "flux_read_check") >= POLICY.budget
    assert (await client.get("/-/healthy")).status == 200  # liveness is another matter


async def test_ready_when_every_loop_runs(aiohttp_client: Any) -> None:
    state = make_state(make_config())
    client = await aiohttp_client(create_app(state))
    response = await client.get("/-/ready")
    assert response.status == 200
    assert await response.text() == "Ready\n"
