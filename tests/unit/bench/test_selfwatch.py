"""The client watches itself: a step during which a CPU-hogging coroutine starves the
event loop for real is flagged client-bound, in the step and its verdict, and a sweep
does not count it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from tests.conftest import SimFactory, make_target
from ttft_exporter.bench.profile import Step, Stop, Warmup
from ttft_exporter.bench.prompts import SyntheticPrompts
from ttft_exporter.bench.runner import BenchPlan, Runner
from ttft_exporter.bench.selfwatch import SelfWatch
from ttft_exporter.sim.llm import ModelBehaviour


@contextlib.asynccontextmanager
async def hogging_the_loop(spin: float = 0.05) -> AsyncIterator[None]:
    """A coroutine that holds the event loop `spin` seconds at a time (busy, no await),
    yielding once between spins: every wake-up due meanwhile runs up to `spin` late."""
    stop = asyncio.Event()

    async def hog() -> None:
        while not stop.is_set():
            end = time.perf_counter() + spin
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0)

    task = asyncio.create_task(hog())
    try:
        yield
    finally:
        stop.set()
        await task


async def test_a_starved_loop_flags_the_step_client_bound(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.05, itl=0.01, tokens=5))
    target = make_target(url=sim.url + "/v1", max_tokens=5, reuse_connections=True)
    steps = tuple(
        Step(i, "concurrency", c, Stop(requests=6), Warmup(requests=1))
        for i, c in enumerate((2, 4))
    )
    plan = BenchPlan(
        target=target,
        steps=steps,
        prompts=SyntheticPrompts(5, seed=1),
        slo={"ttft": 10.0},  # met whatever the lag: only the client can stop this sweep
        sweep=True,
    )
    runner = Runner(plan, SelfWatch())
    async with runner.watch:
        # Let the lag monitor find its cgroup file and start sampling first.
        await asyncio.sleep(0.3)
        async with hogging_the_loop():
            steps_run = await runner.run()
    (step,) = steps_run  # the sweep stopped at the client-bound step
    watch = step.self_watch
    assert watch.client_bound
    # Each request of >= 90 ms overlapped 50 ms stalls: the exporter's own suspect
    # check (loop lag above 10 ms) caught them, and the lag was measured.
    assert watch.suspect >= 1 and watch.loop_lag_events >= 1
    assert watch.loop_lag_max is not None and watch.loop_lag_max > 0.01
    assert any("suspect" in why or "CPU" in why for why in watch.why)
    assert any(r.suspect for r in runner.records if not r.warmup)
    assert runner.sweep is not None
    assert (runner.sweep.max_load, runner.sweep.stopped_by) == (None, "client")
