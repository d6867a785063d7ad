"""Tests for ttft_exporter.cold: the cold probe's hold, its wait for idleness and the
idle time it reports, run by the real scheduler and executor against the simulator.
The cold cycle's minutes pass on an injected ManualTimer (the executor's clock too, so
probe ends are stamped on it); the regular probes keep real 0.3 s intervals."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiojobs
import pytest

from tests.conftest import RunningSim, SimFactory, make_config
from tests.helpers import ManualTimer, probe_scheduler, running_rig
from ttft_exporter.executor import ProbeExecutor
from ttft_exporter.history import History
from ttft_exporter.probes import create_session
from ttft_exporter.scheduler import ProbeScheduler
from ttft_exporter.selfmetrics import ExporterMetrics
from ttft_exporter.sim.llm import ModelBehaviour
from ttft_exporter.sinks.prometheus.series import MetricStore
from ttft_exporter.sinks.prometheus.sink import PrometheusSink

FAST = ModelBehaviour(ttft=0.0, itl=0.0, tokens=2)
IDLE = 15 * 60.0
EVERY = 3600.0
# Bounds for what real time must show, generous for a starved 2-core box: how long a
# poll waits for something that must happen (a probe, a loop reaching its sleep).
CAP = 20.0


@dataclass
class ColdRig:
    jobs: aiojobs.Scheduler
    timer: ManualTimer = field(default_factory=ManualTimer)
    metrics: ExporterMetrics = field(default_factory=ExporterMetrics)
    store: MetricStore = field(default_factory=MetricStore)
    executor: ProbeExecutor = field(init=False)
    scheduler: ProbeScheduler = field(init=False)

    def __post_init__(self) -> None:
        self.executor, self.scheduler = probe_scheduler(
            self.jobs,
            self.metrics,
            self.store,
            history=History(100),
            clock=self.timer,
            sleeper=self.timer,
        )

    def value(self, name: str, scenario: str, child: tuple[str, ...] = ()) -> float | None:
        series = self.store.get("t", scenario)
        return series.get(name, child) if series is not None else None

    def successes(self, scenario: str) -> float:
        return self.value("ttft_probe_requests_total", scenario, ("success",)) or 0.0


@pytest.fixture
async def rig() -> AsyncIterator[ColdRig]:
    async with running_rig(ColdRig) as made:
        yield made


async def until(predicate: Callable[[], bool], what: str, cap: float = CAP) -> None:
    deadline = time.monotonic() + cap
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {cap}s waiting for {what}")
        await asyncio.sleep(0.005)


def requests(sim: RunningSim) -> int:
    return sum(1 for r in sim.state.requests if r.path == "/v1/chat/completions")


async def adhoc_probe(rig: ColdRig) -> None:
    """One /probe-style probe of target t, through the executor's ad-hoc pool."""
    target = rig.scheduler.runners["t"].target
    async with (
        create_session(target.tls, reuse_connections=False) as session,
        rig.executor.adhoc_slot(target, 5.0) as left,
    ):
        await rig.executor.run_adhoc(
            target, session, PrometheusSink(MetricStore()), deadline=5.0, left=left
        )


def cold_target(sim: RunningSim, **cold: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "url": f"{sim.url}/v1",
        "interval": 0.3,
        "timeout": 0.25,
        "cold": {"idle": "15m", "every": "1h", **cold},
    }


async def test_the_cold_probe_holds_the_others_off_until_the_target_was_idle(
    rig: ColdRig, make_llm_sim: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ttft_exporter.scheduler")
    sim = await make_llm_sim(m=FAST)
    await rig.scheduler.apply(make_config(cold_target(sim)))
    runner = rig.scheduler.runners["t"]
    await until(lambda: rig.successes("default") >= 2, "regular probes")
    assert rig.store.get("t", "cold") is None  # no cold probe before its first hold

    # 45 minutes on: the hold begins, `idle` before the cold probe is due.
    rig.timer.advance(EVERY - IDLE)
    await until(lambda: runner.gate.held and rig.timer.sleeping == 1, "the hold")
    held_at = requests(sim)
    skipped = rig.metrics.registry.get_sample_value(
        "ttft_exporter_probes_skipped_total", {"target": "t"}
    )

    def held_ticks() -> int:
        return sum(1 for r in caplog.records if r.getMessage() == "probe held for the cold probe")

    # The regular loop keeps ticking (real 0.3 s) but sends nothing; a held tick is
    # not a skip.
    await until(lambda: held_ticks() >= 3, "three held ticks")
    assert requests(sim) == held_at
    assert (
        rig.metrics.registry.get_sample_value("ttft_exporter_probes_skipped_total", {"target": "t"})
        == skipped
    )

    # An ad-hoc probe 50 minutes in: the target is busy again, so the cold probe,
    # due at 60 minutes, must wait until 50 + 15 = 65 minutes.
    rig.timer.advance(5 * 60.0)
    await adhoc_probe(rig)
    assert requests(sim) == held_at + 1
    rig.timer.advance(10 * 60.0)  # 60 minutes: due, but idle for only 10
    await until(lambda: rig.timer.sleeping == 1, "the cold cycle waiting for idleness")
    await asyncio.sleep(0.3)  # real time for a wrongly sent probe to arrive
    assert requests(sim) == held_at + 1
    assert runner.gate.held

    rig.timer.advance(5 * 60.0)  # 65 minutes: idle for exactly 15
    await until(lambda: rig.successes("cold") == 1, "the cold probe")
    assert rig.value("ttft_probe_idle_before_seconds", "cold") == IDLE
    # The cold probe is its own series, with the cold timeout.
    assert rig.value("ttft_probe_timeout_seconds", "cold") == 60.0
    text = rig.store.render()
    assert (
        'ttft_probe_idle_before_seconds{target="t",model="m",protocol="openai-chat",scenario="cold"} 900.0'
        in text
    )
    # Only the cold series has it.
    assert text.count("\nttft_probe_idle_before_seconds{") == 1
    # Released: regular probes resume.
    await until(lambda: not runner.gate.held, "the release")
    resumed = rig.successes("default")
    await until(lambda: rig.successes("default") > resumed, "a regular probe after the release")


async def test_the_hold_is_bounded_when_other_probes_keep_the_target_busy(
    rig: ColdRig, make_llm_sim: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sim = await make_llm_sim(m=FAST)
    await rig.scheduler.apply(make_config(cold_target(sim)))
    runner = rig.scheduler.runners["t"]
    await until(lambda: rig.successes("default") >= 1, "a regular probe")
    rig.timer.advance(EVERY - IDLE)  # the hold begins at 45 minutes
    await until(lambda: runner.gate.held and rig.timer.sleeping == 1, "the hold")
    # Ad-hoc probes at 55 and 65 minutes: the target never gets 15 quiet minutes.
    for _ in range(2):
        rig.timer.advance(10 * 60.0)
        await until(lambda: rig.timer.sleeping == 1, "the cold cycle asleep")
        await adhoc_probe(rig)
    assert rig.store.get("t", "cold") is None
    # 75 minutes: 30 minutes (2 x idle) into the hold, the cold probe goes anyway and
    # reports the 10 minutes it got since the last ad-hoc probe.
    rig.timer.advance(10 * 60.0)
    await until(lambda: rig.successes("cold") == 1, "the cold probe")
    assert rig.value("ttft_probe_idle_before_seconds", "cold") == 600.0
    warned = [r for r in caplog.records if r.getMessage().startswith("cold probe sent before")]
    assert len(warned) == 1
    await until(lambda: not runner.gate.held, "the release")
