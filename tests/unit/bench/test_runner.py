"""The runner against the built-in simulator with known timing (real sockets, the
exporter's own probe engine). Bounds: lower bounds come from the simulator's own
sleeps (absolute deadlines from each request's arrival), so they hold however loaded
the machine is; upper bounds leave 60-80 ms of room for a busy 2-core machine
(`stress-ng --cpu 2`), where event-loop wake-ups run tens of ms late at worst. The
client-bound flag is switched off here (tests/unit/bench/test_selfwatch.py covers it):
on a loaded machine it may rightly fire and would stop the sweep early."""

from __future__ import annotations

from tests.conftest import SimFactory, make_target
from ttft_exporter.bench.profile import Step, Stop, Warmup
from ttft_exporter.bench.prompts import SyntheticPrompts
from ttft_exporter.bench.runner import BenchPlan, Runner, ramp_seconds
from ttft_exporter.bench.selfwatch import ClientBound, SelfWatch
from ttft_exporter.sim.llm import ModelBehaviour

NEVER_BOUND = ClientBound(max_suspect_share=1.0, max_cpu=float("inf"))


def _steps(*levels: tuple[int, int]) -> tuple[Step, ...]:
    return tuple(
        Step(i, "concurrency", c, Stop(requests=n), Warmup(requests=c))
        for i, (c, n) in enumerate(levels)
    )


async def test_sweep_finds_the_capacity_of_a_server_with_known_timing(
    make_llm_sim: SimFactory,
) -> None:
    # First token at 100 ms, then 10 ms per token; 4 streams generate at once, the
    # rest wait in line. 5 output tokens (the model alone would answer 3: the runner's
    # ignore_eos/min_tokens fix the length): a generation takes 140 ms, so at 8
    # streams every request waits one generation: TTFT = 140 + 100 ms.
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.1, itl=0.01, tokens=3, max_concurrency=4))
    target = make_target(url=sim.url + "/v1", max_tokens=5, reuse_connections=True)
    plan = BenchPlan(
        target=target,
        steps=_steps((1, 8), (2, 8), (4, 12), (8, 16), (16, 16)),
        prompts=SyntheticPrompts(20, seed=1),
        slo={"ttft": 0.18},
        min_goodput=0.9,
        sweep=True,
        timeout=10.0,
    )
    runner = Runner(plan, SelfWatch(thresholds=NEVER_BOUND))
    async with runner.watch:
        steps = await runner.run()
    assert runner.sweep is not None
    assert (runner.sweep.max_load, runner.sweep.stopped_by) == (4, "slo")
    assert len(steps) == 4  # stopped at the first step missing the SLO: 16 never ran
    for step in steps[:3]:
        stats = step.stats
        assert stats.requests == stats.succeeded == {1: 8, 2: 8, 4: 12}[int(step.load)]
        assert stats.ttft.p50 is not None and 0.1 <= stats.ttft.p50 < 0.18
        assert stats.ttft.p99 is not None and stats.ttft.p99 < 0.18
        assert step.slo_met is True
    over = steps[3].stats
    assert over.ttft.p50 is not None and over.ttft.p50 >= 0.2
    assert steps[3].slo_met is False
    ok = [r for r in runner.records if r.success]
    assert len(ok) == len(runner.records)
    # Fixed output length, and TPOT and ITL near the simulator's 10 ms.
    assert {r.output_tokens for r in ok} == {5}
    assert all(r.tpot is not None and 0.005 <= r.tpot < 0.05 for r in ok)
    assert all(sum(n for _, n in r.itl) == 4 for r in ok)
    itl = steps[0].stats.itl
    assert itl.p50 is not None and 0.005 <= itl.p50 < 0.05


async def test_first_connections_are_spread_and_reported_apart(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.05, itl=0.005, tokens=3))
    target = make_target(url=sim.url + "/v1", max_tokens=3, reuse_connections=True)
    plan = BenchPlan(target=target, steps=_steps((8, 8)), prompts=SyntheticPrompts(5, seed=1))
    runner = Runner(plan, SelfWatch(thresholds=NEVER_BOUND))
    async with runner.watch:
        (step,) = await runner.run()
    warm = [r for r in runner.records if r.warmup]
    assert len(warm) == 8
    # Each stream's first request opened a connection, one every ~5 ms (a lower bound:
    # the ramp's sleeps).
    assert all(r.connect is not None for r in warm)
    starts = sorted(r.start for r in warm)
    assert starts[-1] - starts[0] >= 0.9 * ramp_seconds(8)
    # Measured requests reuse them: no connect in the measured TTFTs.
    assert step.stats.connect.count == 0 and step.stats.requests == 8


async def test_rate_steps_follow_poisson_arrivals(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.02, itl=0.005, tokens=2))
    target = make_target(url=sim.url + "/v1", max_tokens=2, reuse_connections=True)
    step = Step(0, "rate", 40.0, Stop(requests=12), Warmup(requests=2))
    plan = BenchPlan(target=target, steps=(step,), prompts=SyntheticPrompts(5, seed=1), seed=3)
    runner = Runner(plan, SelfWatch(thresholds=NEVER_BOUND))
    async with runner.watch:
        (result,) = await runner.run()
    assert result.kind == "rate" and result.stats.requests == result.stats.succeeded == 12
    assert sum(r.warmup for r in runner.records) == 2
    # Every request knows how late it started after its arrival time.
    assert all(r.schedule_lag is not None and r.schedule_lag >= 0 for r in runner.records)


async def test_a_duration_step_measures_for_that_long(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.02, itl=0.005, tokens=2))
    target = make_target(url=sim.url + "/v1", max_tokens=2, reuse_connections=True)
    step = Step(0, "concurrency", 2, Stop(duration=0.4), Warmup())
    plan = BenchPlan(target=target, steps=(step,), prompts=SyntheticPrompts(5, seed=1))
    runner = Runner(plan, SelfWatch(thresholds=NEVER_BOUND))
    async with runner.watch:
        (result,) = await runner.run()
    # 2 streams of requests of >= 25 ms for 0.4 s: at most 2 x 0.4 / 0.025 + 2 started.
    assert 1 <= result.stats.requests <= 34
    assert result.stats.duration >= 0.4
