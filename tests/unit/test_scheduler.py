"""Tests for ttft_exporter.scheduler: the per-target loops against a real simulator, with
short intervals (0.3 s) and timeouts (0.25 s)."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import re
import socket
import time
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiojobs
import pytest

from tests.conftest import RunningSim, SimFactory, make_config
from tests.helpers import probe_scheduler, running_rig
from ttft_exporter.config import Config, OpenAIChatTarget
from ttft_exporter.errors import FailureReason
from ttft_exporter.executor import ProbeExecutor
from ttft_exporter.history import History
from ttft_exporter.logs import fields_of
from ttft_exporter.probes import get_prober
from ttft_exporter.scenarios import filler_prompt
from ttft_exporter.scheduler import ProbeScheduler, TargetRunner
from ttft_exporter.selfmetrics import ExporterMetrics
from ttft_exporter.sim.llm import ModelBehaviour
from ttft_exporter.sinks.prometheus.series import MetricStore

INTERVAL = 0.3
TIMEOUT = 0.25
# A probe of a SLOW model holds its connection (and the concurrency slot) this long.
SLOW_SECONDS = 0.2
SLOW = ModelBehaviour(ttft=SLOW_SECONDS, itl=0.0, tokens=1)
# Longer: a probe that must end well inside its deadline on a starved box.
HOLD_SECONDS = 1.0
HOLD = ModelBehaviour(ttft=HOLD_SECONDS, itl=0.0, tokens=1)
FAST = ModelBehaviour(ttft=0.0, itl=0.0, tokens=2)
# perf_counter at the simulator is read after the body: allow for that much skew.
SKEW = 0.005
# Timer rounding: asyncio may run a timer up to its clock resolution early.
EARLY = 0.001
# How late a probe may start after its tick on a starved 2-core box (stress-ng --cpu 2):
# connect, request and the loop's own lateness (measured under stress-ng: at most
# 0.09 s). A loop that skipped every other tick would be 1.8 s late by the 7th probe.
CADENCE_SLACK = 0.8
CADENCE_PROBES = 7


@dataclass
class Rig:
    """A scheduler with everything it needs, fresh per test."""

    jobs: aiojobs.Scheduler
    metrics: ExporterMetrics = field(default_factory=ExporterMetrics)
    store: MetricStore = field(default_factory=MetricStore)
    history: History = field(default_factory=lambda: History(1000))
    executor: ProbeExecutor = field(init=False)
    scheduler: ProbeScheduler = field(init=False)
    in_flight_seen: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.executor, self.scheduler = probe_scheduler(
            self.jobs, self.metrics, self.store, history=self.history
        )

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def skipped(self, target: str) -> float:
        return self.sample("ttft_exporter_probes_skipped_total", target=target) or 0.0

    def count(self, target: str, outcome: str) -> float:
        series = self.store.get(target)
        value = series.get("ttft_probe_requests_total", (outcome,)) if series else None
        return value or 0.0

    def failures(self, target: str, reason: FailureReason) -> float:
        series = self.store.series[target, "default"]
        return series.get("ttft_probe_failures_total", (reason.value,)) or 0.0

    async def wait_for(self, predicate: Callable[[], bool], what: str, cap: float = 5.0) -> None:
        """Poll `predicate`, sampling the in-flight gauge on the way."""
        deadline = time.monotonic() + cap
        while True:
            self.in_flight_seen.append(self.sample("ttft_exporter_probes_in_flight") or 0.0)
            if predicate():
                return
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {cap}s waiting for {what}")
            await asyncio.sleep(0.005)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with running_rig(Rig) as made:
        yield made


def targets(sim: RunningSim, *models: str, **fields: Any) -> list[dict[str, Any]]:
    """One target per model, named after it, probing every 0.3 s."""
    return [
        {
            "name": model,
            "model": model,
            "url": f"{sim.url}/v1",
            "interval": INTERVAL,
            "timeout": TIMEOUT,
            **fields,
        }
        for model in models
    ]


def arrivals(sim: RunningSim, model: str | None = None) -> list[float]:
    return sorted(
        r.arrival
        for r in sim.state.requests
        if r.path.startswith("/v1/") and (model is None or r.body["model"] == model)
    )


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def assert_cadence(times: list[float], since: float) -> None:
    """Probes start every INTERVAL from `since` (a perf_counter taken before the loop
    started), on fixed-rate ticks: the k-th probe starts k intervals after the first
    tick, however late an earlier one was.
    - Exact, on any machine: no probe starts before its tick (`since` precedes the
      first tick), so the loop never bursts ahead of its schedule.
    - Bound: no missed tick, i.e. each probe starts within CADENCE_SLACK of its tick.
      A starved loop starts late but keeps its schedule (it realigns only when a whole
      interval behind); a loop that skipped every other tick would start the 7th
      probe 6 intervals (1.8 s) late, far beyond the bound."""
    lateness = [t - (since + k * INTERVAL) for k, t in enumerate(times)]
    assert min(lateness) >= -EARLY, lateness
    assert max(lateness) <= CADENCE_SLACK, lateness


def assert_no_self_overlap(rig: Rig, target: str) -> None:
    records = sorted((r for r in rig.history.records() if r.target == target), key=lambda r: r.id)
    for before, after in itertools.pairwise(records):
        assert after.result.started_at >= before.result.started_at + before.result.elapsed - 0.001


async def test_loops_probe_on_their_interval(rig: Rig, make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(a=FAST)
    since = time.perf_counter()
    await rig.scheduler.apply(make_config(*targets(sim, "a")))

    await rig.wait_for(lambda: rig.count("a", "success") >= CADENCE_PROBES, "probes on seven ticks")

    times = arrivals(sim, "a")
    assert len(times) >= CADENCE_PROBES
    assert_cadence(times, since)
    assert rig.count("a", "failure") == 0.0
    assert rig.skipped("a") == 0.0
    assert set(rig.in_flight_seen) <= {0.0, 1.0}


async def test_a_target_never_overlaps_itself_and_skips_are_counted(
    rig: Rig, make_llm_sim: SimFactory
) -> None:
    # One slot for two targets whose probes take HOLD_SECONDS (1 s) each, every 1.45 s:
    # b's first probe waits for a's and runs until 2 s, past b's second tick (skipped);
    # a's second probe waits for it and runs until 3 s, past a's third tick at 2.9 s
    # (skipped). Ordering by the server's sleeps, so load only adds skips. The deadline
    # (counted from when the probe got the slot) leaves 0.4 s over the 1 s answer for a
    # starved box: 0.25 s for a 0.2 s answer timed a probe out under stress-ng.
    sim = await make_llm_sim(a=HOLD, b=HOLD)
    fields = {"interval": "1.45s", "timeout": "1.4s"}
    await rig.scheduler.apply(make_config(*targets(sim, "a", "b", **fields), concurrency=1))

    await rig.wait_for(
        lambda: rig.skipped("a") >= 1 and rig.skipped("b") >= 1, "a skip of both targets", cap=30
    )
    await rig.scheduler.close()

    times = arrivals(sim)
    assert len(times) >= 3
    # One slot: every request starts after the previous one was fully answered.
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= HOLD_SECONDS - SKEW, gaps
    assert max(rig.in_flight_seen) == 1.0
    for name in ("a", "b"):
        assert_no_self_overlap(rig, name)
        assert rig.count(name, "failure") == 0.0
    # A skipped tick sends nothing: every request is a finished probe, but for the one
    # that close() cancelled if it was on the wire (there is only one slot).
    finished = rig.count("a", "success") + rig.count("b", "success")
    assert len(times) - finished in (0, 1)
    assert rig.sample("ttft_exporter_probes_in_flight") == 0.0


@pytest.mark.parametrize("cap", [1, 2])
async def test_the_global_concurrency_cap_holds(
    rig: Rig, make_llm_sim: SimFactory, cap: int
) -> None:
    sim = await make_llm_sim(a=SLOW, b=SLOW, c=SLOW)
    await rig.scheduler.apply(make_config(*targets(sim, "a", "b", "c"), concurrency=cap))

    await rig.wait_for(lambda: len(arrivals(sim)) >= 8, "eight probes")

    times = arrivals(sim)
    # With at most `cap` requests open, each lasting 0.2 s, no 0.2 s window holds
    # cap + 1 request starts.
    windows = [times[i + cap] - times[i] for i in range(len(times) - cap)]
    assert min(windows) >= SLOW_SECONDS - SKEW, windows
    # The cap is reached: the first `cap` probes run together, i.e. the cap-th starts
    # before the first one's 0.2 s answer ends; one at a time, it could not start
    # earlier than that. Ordering against the server's own sleep, not a speed.
    assert times[cap - 1] - times[0] < SLOW_SECONDS
    assert max(rig.in_flight_seen) == float(cap)


@pytest.mark.parametrize("failure", ["connect", "internal"])
async def test_a_failing_target_does_not_disturb_its_neighbour(
    rig: Rig,
    make_llm_sim: SimFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    sim = await make_llm_sim(ok=FAST, broken=FAST)
    if failure == "connect":
        broken = targets(sim, "broken", url=f"http://127.0.0.1:{refused_port()}/v1")
        reason = FailureReason.CONNECT
    else:
        broken = targets(sim, "broken")
        reason = FailureReason.INTERNAL
        real = get_prober("openai-chat")

        async def explode() -> Any:
            raise RuntimeError("probe bug")

        def prober(protocol: str) -> Any:
            def prepare(target: Any, session: Any, clock: Any, **options: Any) -> Any:
                prepared = real(target, session, clock, **options)
                if target.name == "broken":
                    prepared.run = explode  # type: ignore[method-assign]
                return prepared

            return prepare

        monkeypatch.setattr("ttft_exporter.executor.get_prober", prober)
    since = time.perf_counter()
    await rig.scheduler.apply(make_config(*targets(sim, "ok"), *broken))
    runners = dict(rig.scheduler.runners)

    await rig.wait_for(
        lambda: (
            rig.count("ok", "success") >= CADENCE_PROBES
            and rig.count("broken", "failure") >= CADENCE_PROBES
        ),
        "probes of each target on seven ticks",
    )

    assert rig.count("ok", "failure") == 0.0
    assert rig.count("broken", "success") == 0.0
    assert rig.failures("broken", reason) == rig.count("broken", "failure")
    assert_cadence(arrivals(sim, "ok"), since)
    assert rig.scheduler.runners == runners
    for runner in runners.values():
        job = runner.loops["default"].job
        assert job is not None
        assert job.active
    if failure == "internal":
        errors = [r for r in caplog.records if r.getMessage() == "probe raised an unexpected error"]
        assert len(errors) == rig.count("broken", "failure")
        # The traceback is logged (redacted) in the record's `err` field.
        assert all("RuntimeError: probe bug" in fields_of(r)["err"] for r in errors)
        assert all("Traceback (most recent call last)" in fields_of(r)["err"] for r in errors)


# A runner probes at once when it starts, then every interval: with an interval far
# longer than the test, every probe after the first is a restart's, however slowly a
# starved machine runs the test (at INTERVAL, the next regular tick could land in it).
LONG = 60.0


def base_config(sim: RunningSim) -> Config:
    return make_config(*targets(sim, "stay", "edit", "drop", interval=LONG))


CHANGES: dict[str, Callable[[RunningSim], Config]] = {
    "unchanged": lambda sim: make_config(*targets(sim, "stay", "edit", "drop", interval=LONG)),
    "changed": lambda sim: make_config(
        *targets(sim, "stay", interval=LONG),
        *targets(sim, "edit", prompt="something else", interval=LONG),
        *targets(sim, "drop", interval=LONG),
    ),
    "removed": lambda sim: make_config(*targets(sim, "stay", "edit", interval=LONG)),
}


@pytest.mark.parametrize("change", list(CHANGES))
async def test_apply_restarts_only_what_changed(
    rig: Rig, make_llm_sim: SimFactory, change: str
) -> None:
    sim = await make_llm_sim(stay=FAST, edit=FAST, drop=FAST)
    await rig.scheduler.apply(base_config(sim))
    await rig.wait_for(
        lambda: all(rig.count(n, "success") >= 1 for n in ("stay", "edit", "drop")),
        "the first probes",
    )
    before: dict[str, TargetRunner] = dict(rig.scheduler.runners)
    loops_before = {name: r.loops["default"] for name, r in before.items()}

    await rig.scheduler.apply(CHANGES[change](sim))

    after = rig.scheduler.runners
    assert after["stay"] is before["stay"]
    assert before["stay"].session is not None and not before["stay"].session.closed
    if change == "unchanged":
        assert after == before
    if change == "changed":
        # A prompt change keeps the session: only the scenario's loop restarts.
        assert after["edit"] is before["edit"]
        assert after["edit"].loops["default"] is not loops_before["edit"]
        old_job = loops_before["edit"].job
        assert old_job is not None and old_job.closed
        edited = after["edit"].target
        assert isinstance(edited, OpenAIChatTarget) and edited.prompt == "something else"
        assert after["drop"] is before["drop"]
    if change == "removed":
        assert sorted(after) == ["edit", "stay"]
        assert rig.store.of_target("drop") == []
        assert 'target="drop"' not in rig.store.render()
        assert rig.sample("ttft_exporter_probes_skipped_total", target="drop") is None
    stopped = [r for name, r in before.items() if after.get(name) is not r]
    assert len(stopped) == {"unchanged": 0, "changed": 0, "removed": 1}[change]
    for runner in stopped:
        assert runner.session is not None and runner.session.closed
        job = runner.loops["default"].job
        assert job is not None and job.closed
    # The replacement starts at once; nothing else is restarted (a restart probes at once).
    if change == "changed":
        await rig.wait_for(lambda: len(arrivals(sim, "edit")) == 2, "the new loop's probe")
    assert len(arrivals(sim, "stay")) == 1


async def test_close_stops_everything(
    make_llm_sim: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    stall = ModelBehaviour(ttft=0.0, tokens=4, stall_after=1)
    sim = await make_llm_sim(a=FAST, b=stall)
    jobs = aiojobs.Scheduler(limit=None, close_timeout=5.0)
    rig = Rig(jobs)
    await rig.scheduler.apply(make_config(*targets(sim, "a", "b")))
    await rig.wait_for(
        lambda: rig.count("a", "success") >= 1 and len(arrivals(sim, "b")) == 1,
        "a probe in flight",
    )
    assert rig.sample("ttft_exporter_probes_in_flight") == 1.0  # b's, stalled
    runners = list(rig.scheduler.runners.values())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await rig.scheduler.close()
        await jobs.close()
        gc.collect()

    assert caught == []
    assert rig.scheduler.runners == {}
    assert len(jobs) == 0
    for runner in runners:
        assert runner.session is not None and runner.session.closed
        job = runner.loops["default"].job
        assert job is not None and job.closed
    assert rig.sample("ttft_exporter_probes_in_flight") == 0.0
    ours = [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and "ttft_exporter/sim/" not in task.get_coro().cr_code.co_filename  # type: ignore[union-attr]
        and "/aiohttp/" not in task.get_coro().cr_code.co_filename  # type: ignore[union-attr]
    ]
    assert ours == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    # Nothing runs any more: no new request reaches the simulator.
    count = len(sim.state.requests)
    await asyncio.sleep(INTERVAL * 1.5)
    assert len(sim.state.requests) == count


# Scenarios (#10): each probed as its own series, on its own cadence.
def scenario_target(sim: RunningSim, scenarios: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "t",
        "model": "m",
        "url": f"{sim.url}/v1",
        "interval": LONG,
        "timeout": 5.0,
        "scenarios": scenarios,
    }


def is_closed(session: Any) -> bool:
    # A call, not an attribute: mypy would keep the earlier `not closed` narrowing.
    return bool(session.closed)


def chat_requests(sim: RunningSim) -> list[Any]:
    return [r for r in sim.state.requests if r.path == "/v1/chat/completions"]


def prompt_of(request: Any) -> str:
    content: str = request.body["messages"][0]["content"]
    return content


async def test_scenarios_are_probed_as_their_own_series(rig: Rig, make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=FAST)
    scenarios = [
        {"name": "short", "prompt": "short one", "max_tokens": 1},
        {"name": "long-prompt", "prompt_tokens": 2000},
        # Probed every 0.3 s, the others once (LONG): identical requests every time.
        {
            "name": "cached",
            "prompt": "cached one",
            "cache_bust": False,
            "interval": INTERVAL,
            "timeout": TIMEOUT,
        },
    ]
    await rig.scheduler.apply(make_config(scenario_target(sim, scenarios)))

    def successes(scenario: str) -> float:
        series = rig.store.get("t", scenario)
        return (series.get("ttft_probe_requests_total", ("success",)) or 0.0) if series else 0.0

    await rig.wait_for(
        lambda: (
            successes("short") >= 1 and successes("long-prompt") >= 1 and successes("cached") >= 3
        ),
        "every scenario probed",
    )
    lines = [line for line in rig.store.render().splitlines() if line and not line.startswith("#")]
    labelled = {
        scenario: [line for line in lines if f'scenario="{scenario}"' in line]
        for scenario in ("short", "long-prompt", "cached", "default")
    }
    assert labelled["default"] == []
    assert all(labelled[s] for s in ("short", "long-prompt", "cached"))
    assert len(lines) == sum(len(v) for v in labelled.values())
    assert all(
        line.split("{", 1)[1].startswith(
            f'target="t",model="m",protocol="openai-chat",scenario="{s}"'
        )
        for s in ("short", "long-prompt", "cached")
        for line in labelled[s]
    )

    requests = chat_requests(sim)
    short = [r for r in requests if prompt_of(r).endswith(" short one")]
    assert len(short) == 1 and short[0].body["max_tokens"] == 1
    # The long prompt as the simulator received it: a nonce and 2000 words of 4
    # characters; the simulator counts words as prompt tokens and reports them.
    long = [r for r in requests if len(prompt_of(r)) > 1000]
    assert len(long) == 1
    filler = filler_prompt(2000)
    nonce = prompt_of(long[0]).removesuffix(" " + filler)
    # The cache-busting nonce of the engine, then the filler.
    assert re.fullmatch(r"\[probe [0-9a-f]{12}\]", nonce)
    assert len(filler.split(" ")) == 2000 and len(filler) == 4 * 2000 - 1
    assert long[0].body["max_tokens"] == 64
    series = rig.store.get("t", "long-prompt")
    counted = 2000 + len(nonce.split())
    assert series is not None and series.get("ttft_probe_input_tokens_total") == counted
    # cache_bust: false sends the very same request every time, with no nonce.
    cached = [r for r in requests if "cached one" in prompt_of(r)]
    assert len(cached) >= 3
    assert all(r.body == cached[0].body for r in cached)
    assert prompt_of(cached[0]) == "cached one"


async def test_a_reload_restarts_only_the_scenarios_that_changed(
    rig: Rig, make_llm_sim: SimFactory
) -> None:
    sim = await make_llm_sim(m=FAST)

    def config(*scenarios: dict[str, Any]) -> Config:
        return make_config(scenario_target(sim, list(scenarios)))

    await rig.scheduler.apply(
        config(
            {"name": "keep", "prompt": "keep"},
            {"name": "edit", "prompt": "edit"},
            {"name": "drop", "prompt": "drop"},
        )
    )
    await rig.wait_for(lambda: len(chat_requests(sim)) == 3, "one probe per scenario")
    await rig.wait_for(
        lambda: all(rig.store.get("t", s) is not None for s in ("keep", "edit", "drop")),
        "their series",
    )
    runner = rig.scheduler.runners["t"]
    loops = dict(runner.loops)
    assert runner.session is not None

    await rig.scheduler.apply(
        config(
            {"name": "keep", "prompt": "keep"},
            {"name": "edit", "prompt": "edit", "max_tokens": 3},
            {"name": "new", "prompt": "new"},
        )
    )

    assert rig.scheduler.runners["t"] is runner
    assert not runner.session.closed
    assert runner.loops["keep"] is loops["keep"]
    assert runner.loops["edit"] is not loops["edit"]
    assert sorted(runner.loops) == ["edit", "keep", "new"]
    for name in ("edit", "drop"):
        job = loops[name].job
        assert job is not None and job.closed
    assert rig.store.get("t", "drop") is None
    assert 'scenario="drop"' not in rig.store.render()
    # A (re)started loop probes at once; the kept one waits for its LONG interval.
    await rig.wait_for(lambda: len(chat_requests(sim)) == 5, "the restarted and new probes")
    prompts = sorted(prompt_of(r).rsplit(" ", 1)[1] for r in chat_requests(sim))
    assert prompts == ["drop", "edit", "edit", "keep", "new"]
    edited = [r for r in chat_requests(sim) if prompt_of(r).endswith(" edit")]
    assert edited[-1].body["max_tokens"] == 3

    # A new session (reuse_connections) restarts the whole target; the series of the
    # scenarios it dropped go with their loops.
    restarted = make_config(
        {**scenario_target(sim, [{"name": "keep", "prompt": "keep"}]), "reuse_connections": True}
    )
    await rig.scheduler.apply(restarted)
    assert rig.scheduler.runners["t"] is not runner
    assert is_closed(runner.session)
    assert [k for k in rig.store.series if k[0] == "t"] == [("t", "keep")]
