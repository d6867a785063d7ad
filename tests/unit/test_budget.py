"""Tests for ttft_exporter.budget, the cost guard (#10): exact cost arithmetic on
hand-made usage, the ledger's UTC day on an injected wall clock (no sleeping, no
tolerance), and a real scheduler against the real simulator pausing one target while
its neighbour keeps probing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiojobs
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient, AiohttpServer

from tests.conftest import (
    RunningSim,
    SimFactory,
    make_config,
    make_state,
    make_target,
    probe_once,
)
from tests.helpers import ManualClock, probe_scheduler, running_rig
from ttft_exporter.budget import (
    CostConfig,
    ProbeBudget,
    ProbeCharge,
    probe_charge,
    probe_cost,
)
from ttft_exporter.config import TargetConfig
from ttft_exporter.errors import FailureReason
from ttft_exporter.executor import ProbeExecutor
from ttft_exporter.history import History
from ttft_exporter.logs import fields_of
from ttft_exporter.probes.base import ProbeResult
from ttft_exporter.scheduler import ProbeScheduler
from ttft_exporter.selfmetrics import ExporterMetrics
from ttft_exporter.server import create_app
from ttft_exporter.sim.llm import ModelBehaviour
from ttft_exporter.sinks.prometheus.series import MetricStore, SeriesSet
from ttft_exporter.targets import target_labels

# 2026-02-14 00:00:00 UTC, a whole number of days since the epoch.
MIDNIGHT = 1_771_027_200.0
DAY = 86_400.0
TRIPPED = "probe budget exhausted; probing paused until 00:00 UTC"
RESUMED = "probe budget available again; probing resumes"


def usage_result(
    input_tokens: int | None = 1200, output_tokens: int = 64, **overrides: Any
) -> ProbeResult:
    """A successful probe whose server reported usage (reasoning folded into output,
    as every decoder does)."""
    values: dict[str, Any] = {
        "success": True,
        "http_status": 200,
        "output_tokens": output_tokens,
        "usage_source": "usage",
        "input_tokens": input_tokens,
        "token_chunks": output_tokens,
    }
    values.update(overrides)
    return ProbeResult(**values)


def failed(status: int | None, chunks: int = 0) -> ProbeResult:
    return ProbeResult(
        False, FailureReason.TIMEOUT, "deadline", http_status=status, token_chunks=chunks
    )


def cost(input_price: str, output_price: str, currency: str = "USD") -> CostConfig:
    return CostConfig(
        input_per_million=Decimal(input_price),
        output_per_million=Decimal(output_price),
        currency=currency,
    )


# --- arithmetic ----------------------------------------------------------------------


def test_cost_of_server_usage_is_exact() -> None:
    charge = probe_charge(usage_result(1200, 64), last_input=None)
    assert charge == ProbeCharge(1200, 64, estimated=False)
    # (1200 x 3 + 64 x 15) / 1e6 = 0.00456, exactly.
    assert probe_cost(charge, cost("3", "15")) == Decimal("0.00456")
    # Prices with cents: 0.15 and 0.60 per 1M; binary floats would give 9.6e-05 + noise.
    assert probe_cost(ProbeCharge(0, 160, False), cost("0.15", "0.60")) == Decimal("0.000096")


def test_reasoning_is_billed_as_output_because_usage_counts_it_there() -> None:
    # OpenAI's completion_tokens, Anthropic's output_tokens and Gemini's candidates +
    # thoughts all count the reasoning: the charge takes output_tokens as reported.
    result = usage_result(100, 300, reasoning_tokens=250)
    charge = probe_charge(result, last_input=None)
    assert charge == ProbeCharge(100, 300, estimated=False)
    assert probe_cost(charge, cost("1", "10")) == Decimal("0.0031")


def test_estimated_usage_is_still_charged_and_marked() -> None:
    # No usage: output is the chunk count, input the last prompt count the server gave.
    chunks = usage_result(None, 40, usage_source="chunks")
    assert probe_charge(chunks, last_input=None) == ProbeCharge(0, 40, estimated=True)
    assert probe_charge(chunks, last_input=900) == ProbeCharge(900, 40, estimated=True)
    # A failed probe that got a stream: the chunks it streamed, and the prompt.
    assert probe_charge(failed(200, chunks=7), last_input=900) == ProbeCharge(900, 7, True)
    # Refused (a status) or never answered: providers bill nothing.
    assert probe_charge(failed(429), last_input=900).tokens == 0
    assert probe_charge(failed(None), last_input=900).tokens == 0


# --- the ledger on an injected wall clock ----------------------------------------------


@dataclass
class Ledger:
    clock: ManualClock = field(default_factory=lambda: ManualClock(wall=MIDNIGHT + DAY - 60))
    store: MetricStore = field(default_factory=MetricStore)
    budget: ProbeBudget = field(init=False)

    def __post_init__(self) -> None:
        self.budget = ProbeBudget(self.clock)

    def series(self, target: TargetConfig) -> SeriesSet:
        return self.store.ensure(target.name, target_labels(target))

    def admit(self, target: TargetConfig) -> bool:
        return self.budget.admit(target, self.series(target))

    def charge(self, target: TargetConfig, result: ProbeResult) -> None:
        self.budget.charge(target, result, self.series(target))


def paid(**fields: Any) -> TargetConfig:
    fields.setdefault("cost", {"input_per_million": "3", "output_per_million": "15"})
    fields.setdefault("budget", {"daily_tokens": 1000})
    return make_target(name="paid", url="http://127.0.0.1:9/v1", **fields)


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ttft_exporter.budget"]


def test_budget_trips_once_counts_the_probe_in_flight_and_resets_at_midnight(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ttft_exporter.budget")
    ledger = Ledger()
    target = paid()
    series = ledger.series(target)
    assert ledger.admit(target)
    assert series.get("ttft_probe_budget_exhausted") == 0.0
    assert series.get("ttft_probe_budget_skipped_total") == 0.0
    # 600 + 400 = 1000 tokens: the budget is spent exactly at its limit.
    ledger.charge(target, usage_result(600, 0, token_chunks=1))
    assert ledger.admit(target)
    ledger.charge(target, usage_result(None, 400, usage_source="chunks"))
    assert series.get("ttft_probe_budget_exhausted") == 1.0
    assert series.get("ttft_probe_budget_spent_tokens") == 1600.0  # 600 + (600 + 400)
    # A probe that was in flight when it tripped lands afterwards: counted all the same.
    ledger.charge(target, usage_result(10, 5))
    assert series.get("ttft_probe_budget_spent_tokens") == 1615.0
    # Every later tick is refused and counted, never logged again.
    for _ in range(5):
        assert not ledger.admit(target)
    assert series.get("ttft_probe_budget_skipped_total") == 5.0
    assert messages(caplog) == [TRIPPED]
    record = next(r for r in caplog.records if r.getMessage() == TRIPPED)
    assert record.levelno == logging.WARNING
    assert fields_of(record) == {
        "target": "paid",
        "resumes_at": "2026-02-15T00:00:00Z",
        "spent_tokens": 1600,
        "spent_cost": "0.0096",  # (1200 x 3 + 400 x 15) / 1e6 (the in-flight one came after)
        "daily_tokens": 1000,
    }
    assert ledger.budget.seconds_to_reset() == 60.0  # the injected clock: exact

    # One second to midnight: still paused. At 00:00:00 UTC it resumes, logged once.
    ledger.clock.advance(59)
    assert not ledger.admit(target)
    ledger.clock.advance(1)
    assert ledger.admit(target)
    assert ledger.admit(target)
    assert messages(caplog) == [TRIPPED, RESUMED]
    assert series.get("ttft_probe_budget_exhausted") == 0.0
    assert series.get("ttft_probe_budget_spent_tokens") == 0.0
    assert series.get("ttft_probe_budget_skipped_total") == 6.0  # a counter: never reset
    # The cost counter is not a daily figure: it keeps every probe, the late one too.
    assert series.get("ttft_probe_cost_total", ("USD",)) == float(
        Decimal("0.0096") + Decimal("0.000105")
    )


def test_spend_survives_a_reload_that_changes_the_target() -> None:
    # A changed target restarts its runner with a new TargetConfig; the ledger is keyed
    # by name, so a reload cannot reset what the target spent today.
    ledger = Ledger()
    ledger.charge(paid(), usage_result(900, 100))
    assert not ledger.admit(paid(interval="20s"))
    # Raising the limit on reload resumes at once (one line), lowering trips again.
    assert ledger.admit(paid(budget={"daily_tokens": 5000}))
    assert not ledger.admit(paid(budget={"daily_tokens": 999}))
    # Removing the budget resumes and drops the budget series; the cost stays.
    target = paid(budget=None)
    assert ledger.admit(target)
    series = ledger.series(target)
    assert series.get("ttft_probe_budget_exhausted") is None
    assert series.get("ttft_probe_cost_total", ("USD",)) == 0.0042
    # Taking both away drops every cost guard series of the target.
    assert ledger.admit(make_target(name="paid", url="http://127.0.0.1:9/v1"))
    assert not [x for x in ledger.store.render().splitlines() if x.startswith("ttft_probe_cost")]


def test_cost_budget_trips_on_money_and_the_counter_sums_exactly() -> None:
    ledger = Ledger()
    # 0.1 per 1M input tokens, 1M tokens a probe: 0.1 per probe. Three binary-float
    # additions give 0.30000000000000004; the exact sum is 0.3.
    target = paid(
        cost={"input_per_million": "0.1", "output_per_million": "0", "currency": "EUR"},
        budget={"daily_cost": "0.3"},
    )
    for _ in range(2):
        ledger.charge(target, usage_result(1_000_000, 0, token_chunks=1))
        assert ledger.admit(target)
    ledger.charge(target, usage_result(1_000_000, 0, token_chunks=1))
    assert not ledger.admit(target)
    assert ledger.series(target).get("ttft_probe_cost_total", ("EUR",)) == 0.3


def test_a_target_without_cost_or_budget_has_no_account_and_no_series() -> None:
    ledger = Ledger()
    target = make_target(name="free", url="http://127.0.0.1:9/v1")
    assert ledger.admit(target)
    ledger.charge(target, usage_result())
    lines = ledger.store.render().splitlines()
    assert not [x for x in lines if "budget" in x and not x.startswith("#")]
    assert not [x for x in lines if x.startswith("ttft_probe_cost_total")]


def test_configured_budget_and_cost_add_exactly_four_series() -> None:
    ledger = Ledger()
    free = make_target(name="free", url="http://127.0.0.1:9/v1")
    target = paid()
    for each in (free, target):
        ledger.admit(each)
        ledger.charge(each, usage_result())

    def samples(name: str) -> list[str]:
        return [
            x
            for x in ledger.store.render().splitlines()
            if not x.startswith("#") and f'target="{name}"' in x
        ]

    extra = sorted(
        {x.split("{")[0] for x in samples("paid")} - {x.split("{")[0] for x in samples("free")}
    )
    assert extra == [
        "ttft_probe_budget_exhausted",
        "ttft_probe_budget_skipped_total",
        "ttft_probe_budget_spent_tokens",
        "ttft_probe_cost_total",
    ]
    assert len(samples("paid")) - len(samples("free")) == 4


# --- a real scheduler against the real simulator ---------------------------------------

# As tests/unit/test_scheduler.py: a 0.25 s timeout holds for an instant simulator
# answer on a starved 2-core box (stress-ng --cpu 2), so every probe here succeeds.
INTERVAL = 0.3
FAST = ModelBehaviour(ttft=0.0, itl=0.0, tokens=2)


@dataclass
class Rig:
    jobs: aiojobs.Scheduler
    wall: ManualClock
    metrics: ExporterMetrics = field(default_factory=ExporterMetrics)
    store: MetricStore = field(default_factory=MetricStore)
    executor: ProbeExecutor = field(init=False)
    scheduler: ProbeScheduler = field(init=False)

    def __post_init__(self) -> None:
        # Probes time on the system clock; only the budget's UTC day is injected.
        self.executor, self.scheduler = probe_scheduler(
            self.jobs,
            self.metrics,
            self.store,
            history=History(1000),
            budget=ProbeBudget(self.wall),
        )

    def get(self, target: str, name: str, child: tuple[str, ...] = ()) -> float:
        series = self.store.get(target)
        return (series.get(name, child) if series else None) or 0.0


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with running_rig(lambda jobs: Rig(jobs, ManualClock(wall=MIDNIGHT + DAY - 3600))) as made:
        yield made


def requests(sim: RunningSim, model: str) -> int:
    return sum(1 for r in sim.state.requests if r.body["model"] == model)


async def wait_for(predicate: Callable[[], bool], what: str, cap: float = 10.0) -> None:
    # Bounds in probe counts, not time: the cap only ends a test that hangs, and is
    # wide enough for a starved 2-core box (stress-ng --cpu 2).
    deadline = time.monotonic() + cap
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {cap}s waiting for {what}")
        await asyncio.sleep(0.01)


async def test_a_spent_budget_stops_requests_while_neighbours_keep_probing(
    rig: Rig, make_llm_sim: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ttft_exporter.budget")
    sim = await make_llm_sim(paid=FAST, free=FAST)
    common = {"url": f"{sim.url}/v1", "interval": INTERVAL, "timeout": 0.25}
    config = make_config(
        {
            "name": "paid",
            "model": "paid",
            **common,
            # A few probes' worth: the simulator reports usage (prompt words + 2).
            "budget": {"daily_tokens": 12},
            "cost": {"input_per_million": "3", "output_per_million": "15"},
        },
        {"name": "free", "model": "free", **common},
    )
    await rig.scheduler.apply(config)

    await wait_for(
        lambda: rig.get("paid", "ttft_probe_budget_exhausted") == 1.0, "the budget to trip"
    )
    sent = requests(sim, "paid")
    assert sent >= 1
    free_before = rig.get("free", "ttft_probe_requests_total", ("success",))
    # Five more ticks of both: the free target probes on each, the paid one sends none.
    await wait_for(
        lambda: (
            rig.get("paid", "ttft_probe_budget_skipped_total") >= 5
            and rig.get("free", "ttft_probe_requests_total", ("success",)) >= free_before + 5
        ),
        "five skipped ticks and five probes of the neighbour",
    )
    assert requests(sim, "paid") == sent
    # Every request that reached the simulator was a finished, counted probe.
    assert rig.get("paid", "ttft_probe_requests_total", ("success",)) == sent
    # Charged from the server's usage: exactly the token counters' sum, and its price.
    in_tokens = rig.get("paid", "ttft_probe_input_tokens_total")
    out_tokens = rig.get("paid", "ttft_probe_output_tokens_total", ("usage",))
    assert in_tokens > 0 and out_tokens == 2 * sent
    assert rig.get("paid", "ttft_probe_budget_spent_tokens") == in_tokens + out_tokens >= 12
    price = (Decimal(int(in_tokens)) * 3 + Decimal(int(out_tokens)) * 15) / 1_000_000
    assert rig.get("paid", "ttft_probe_cost_total", ("USD",)) == float(price)
    # The busy-skip counter is not the budget's.
    assert (
        rig.metrics.registry.get_sample_value(
            "ttft_exporter_probes_skipped_total", {"target": "paid"}
        )
        == 0.0
    )
    assert [r.getMessage() for r in caplog.records if r.name == "ttft_exporter.budget"] == [TRIPPED]

    # A reload of the changed target (new interval restarts its runner) keeps it paused.
    await rig.scheduler.apply(
        make_config(
            {
                "name": "paid",
                "model": "paid",
                **common,
                "interval": 0.35,
                "budget": {"daily_tokens": 12},
                "cost": {"input_per_million": "3", "output_per_million": "15"},
            },
            {"name": "free", "model": "free", **common},
        )
    )
    skipped = rig.get("paid", "ttft_probe_budget_skipped_total")
    await wait_for(
        lambda: rig.get("paid", "ttft_probe_budget_skipped_total") >= skipped + 2,
        "two skipped ticks after the reload",
    )
    assert requests(sim, "paid") == sent

    # The wall clock reaches 00:00 UTC: the next tick probes again, logged once.
    rig.wall.advance(3600)
    await wait_for(lambda: requests(sim, "paid") > sent, "a probe after midnight")
    assert [r.getMessage() for r in caplog.records if r.name == "ttft_exporter.budget"][:2] == [
        TRIPPED,
        RESUMED,
    ]


async def test_probe_endpoint_refuses_a_spent_target_until_midnight(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient
) -> None:
    # /probe spends tokens too: it is charged, and refused while the budget is spent.
    sim = await make_llm_sim(paid=FAST)
    config = make_config(
        {
            "name": "paid",
            "model": "paid",
            "url": f"{sim.url}/v1",
            "interval": "1h",  # one scheduled probe, at start
            "budget": {"daily_tokens": 1},
        }
    )
    state = make_state(config)
    wall = ManualClock(wall=MIDNIGHT + DAY - 3600)
    state.executor.budget = ProbeBudget(wall)
    client = await aiohttp_client(create_app(state))
    series = state.store.series["paid", "default"]
    await wait_for(
        lambda: series.get("ttft_probe_budget_exhausted") == 1.0, "the scheduled probe to trip it"
    )

    resp = await client.get("/probe", params={"target": "paid"})
    assert resp.status == 429
    assert await resp.text() == (
        "the daily budget of target 'paid' is spent; probing resumes at 00:00 UTC\n"
    )
    assert resp.headers["Retry-After"] == "3600"  # the injected clock: exact
    assert requests(sim, "paid") == 1
    assert (
        state.metrics.registry.get_sample_value(
            "ttft_exporter_adhoc_probes_rejected_total", {"reason": "budget_exhausted"}
        )
        == 1.0
    )
    metrics = await (await client.get("/metrics")).text()
    assert (
        'ttft_probe_budget_exhausted{target="paid",model="paid",protocol="openai-chat",scenario="default"} 1.0'
        in (metrics)
    )

    wall.advance(3600)
    resp = await client.get("/probe", params={"target": "paid"})
    assert resp.status == 200, await resp.text()
    assert requests(sim, "paid") == 2
    # Charged to the ledger: the new day's budget is spent again by this one probe.
    assert state.executor.budget.exhausted(state.holder.config.targets[0])


async def test_scenarios_share_the_budget_and_count_their_own_cost(
    rig: Rig, make_llm_sim: SimFactory
) -> None:
    # One probe per scenario (interval 1h): the simulator reports usage, prompt words as
    # input tokens and 2 output tokens (FAST).
    sim = await make_llm_sim(paid=FAST)
    config = make_config(
        {
            "name": "paid",
            "model": "paid",
            "url": f"{sim.url}/v1",
            "interval": "1h",
            "cache_bust": False,
            "cost": {"input_per_million": "1000000", "output_per_million": "0"},
            "budget": {"daily_tokens": 1_000_000},
            "scenarios": [
                {"name": "short", "prompt": "one two"},
                {"name": "long", "prompt_tokens": 100},
            ],
        }
    )
    await rig.scheduler.apply(config)

    def value(scenario: str, name: str, child: tuple[str, ...] = ()) -> float | None:
        series = rig.store.get("paid", scenario)
        return series.get(name, child) if series is not None else None

    await wait_for(
        lambda: all(
            value(s, "ttft_probe_requests_total", ("success",)) == 1.0 for s in ("short", "long")
        ),
        "one probe per scenario",
    )
    await wait_for(
        lambda: value("short", "ttft_probe_budget_spent_tokens") == 2 + 2 + 100 + 2,
        "both charged",
    )
    # 1 per input token: each scenario's own prompt, not the target's total.
    assert value("short", "ttft_probe_cost_total", ("USD",)) == 2.0
    assert value("long", "ttft_probe_cost_total", ("USD",)) == 100.0
    # The budget is the target's: the same spend on every scenario's series.
    assert value("long", "ttft_probe_budget_spent_tokens") == 106.0


# --- a never-ending stream is charged at most the plausible output (issue #10) --------


async def test_a_stream_without_end_is_charged_at_most_the_plausible_output(
    aiohttp_server: AiohttpServer,
) -> None:
    # A hostile (or broken) server: 5,000 one-token chunks at once, never a finish or
    # [DONE], the connection held open until the probe's deadline. Uncapped, the failed
    # probe was charged its 5,000 chunks for max_tokens 64.
    released = asyncio.Event()
    chunk = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(chunk * 5000)
        with contextlib.suppress(asyncio.CancelledError):
            await released.wait()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    server = await aiohttp_server(app)
    target = make_target(
        name="paid",
        url=f"http://127.0.0.1:{server.port}/v1",
        max_tokens=64,
        cost={"input_per_million": "3", "output_per_million": "15"},
        budget={"daily_tokens": 100_000},
        timeout="3s",
    )
    try:
        # 3 s: the 290 KB arrive and parse in well under that on a loaded 2-core box
        # (stress-ng --cpu 2); the count below shows they all did.
        result = await probe_once(target)
    finally:
        released.set()
    assert result.reason is FailureReason.TIMEOUT, result.detail
    assert result.token_chunks == 5000 and result.http_status == 200

    # Charged the bound the usage check uses, 2 x 64 + 16, and the prompt it knows.
    assert probe_charge(result, last_input=20) == ProbeCharge(20, 144, estimated=True)
    ledger = Ledger()
    ledger.charge(target, result)
    assert ledger.series(target).get("ttft_probe_budget_spent_tokens") == 144.0
    # (0 x 3 + 144 x 15) / 1e6, exactly.
    assert ledger.series(target).get("ttft_probe_cost_total", ("USD",)) == 0.00216


def test_the_cap_follows_the_limit_the_request_carried() -> None:
    # extra_body's larger limit (max_completion_tokens: 4096) is what the request asked:
    # a failed probe of a reasoning model is charged up to its bound, not max_tokens'.
    big = ProbeResult(
        False,
        FailureReason.TIMEOUT,
        "deadline",
        http_status=200,
        token_chunks=9000,
        max_tokens=4096,
    )
    assert probe_charge(big, last_input=None).output_tokens == 2 * 4096 + 16
    # Below the bound, the chunks as streamed; without a known limit, uncapped.
    assert probe_charge(failed(200, chunks=100), last_input=None).output_tokens == 100
    within = dataclasses.replace(big, token_chunks=500)
    assert probe_charge(within, last_input=None).output_tokens == 500
    # A success counted by chunks is capped the same way.
    chunky = usage_result(None, 9000, usage_source="chunks", max_tokens=64)
    assert probe_charge(chunky, last_input=None) == ProbeCharge(0, 144, estimated=True)
