"""Drives the load: each step's closed-loop streams (fixed concurrency) or Poisson
arrivals (a request rate), with a warm-up whose first connections are spread over a
ramp, every request measured by the exporter's own probe engine through
`probes.measure` (no second streaming implementation), watched by `SelfWatch`."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ttft_exporter.bench.goodput import count_good
from ttft_exporter.bench.profile import Step, poisson_arrivals
from ttft_exporter.bench.prompts import Prompt, PromptSource
from ttft_exporter.bench.records import ITL_BOUNDS, RecordStore, RequestRecord, record_from_result
from ttft_exporter.bench.results import StepResult, SweepResult
from ttft_exporter.bench.selfwatch import SelfWatch
from ttft_exporter.bench.stats import summarize
from ttft_exporter.clock import Clock, SystemClock
from ttft_exporter.probes import create_session, measure
from ttft_exporter.targets import TargetBase

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "FIXED_OUTPUT_PROTOCOLS",
    "BenchPlan",
    "Runner",
    "ramp_seconds",
    "sweep_verdict",
]

# Protocols whose servers (vLLM, SGLang and other OpenAI-compatible ones) take
# `ignore_eos` and `min_tokens`, so every answer has exactly max_tokens tokens.
FIXED_OUTPUT_PROTOCOLS = frozenset({"openai-chat", "openai-completions", "azure-openai"})
# Rate steps: requests in flight at most; arrivals beyond wait (their lag is recorded).
DEFAULT_MAX_IN_FLIGHT = 1024
# Opening connections: one every 5 ms, all of them within a second at most.
_RAMP_PER_STREAM = 0.005
_RAMP_MAX = 1.0


def ramp_seconds(streams: int) -> float:
    """Over how long the first requests of `streams` streams are spread, so the
    client's own connect burst does not land in the TTFT tail."""
    return min(_RAMP_MAX, _RAMP_PER_STREAM * max(streams - 1, 0))


@dataclass(frozen=True)
class BenchPlan:
    """Everything a run needs, validated by the CLI."""

    target: TargetBase
    steps: tuple[Step, ...]
    prompts: PromptSource
    slo: dict[str, float] = field(default_factory=dict)
    min_goodput: float = 0.99
    sweep: bool = False
    fixed_output: bool = True
    timeout: float = 60.0
    worker: int = 0
    seed: int | None = None
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT


def sweep_verdict(results: list[StepResult], *, finished: bool) -> tuple[bool, SweepResult]:
    """Whether a sweep goes on after its last step, and its verdict so far: it stops at
    the first client-bound step (the client cannot measure beyond it) or the first
    that missed its SLOs; the highest load before that which met them is the answer."""
    best = None
    for result in results:
        if result.self_watch.client_bound:
            return False, SweepResult(max_load=best, stopped_by="client")
        if not result.slo_met:
            return False, SweepResult(max_load=best, stopped_by="slo")
        best = result.load
    return not finished, SweepResult(max_load=best, stopped_by="end")


class _Phase:
    """Hands out the requests of one step: warm-up first, then measured ones, until
    the step's stop; `measuring` is set when the first measured request is handed."""

    def __init__(
        self, step: Step, loop: asyncio.AbstractEventLoop, on_measure: Callable[[], None]
    ) -> None:
        self._step = step
        self._loop = loop
        self._on_measure = on_measure
        self._warm_left = step.warmup.requests
        self._warm_until = loop.time() + step.warmup.duration
        self._measured = 0
        self._measure_until: float | None = None

    def claim(self) -> bool | None:
        """True: a warm-up request; False: a measured one; None: the step is over."""
        now = self._loop.time()
        if self._measure_until is None and self._measured == 0:
            if self._warm_left > 0:
                self._warm_left -= 1
                return True
            if now < self._warm_until:
                return True
            self._on_measure()
            if self._step.stop.duration is not None:
                self._measure_until = now + self._step.stop.duration
        stop = self._step.stop
        if stop.requests is not None:
            if self._measured >= stop.requests:
                return None
        elif self._measure_until is not None and now >= self._measure_until:
            return None
        self._measured += 1
        return False


class Runner:
    """Runs a plan's steps; `on_record`/`on_step` feed the progress display."""

    def __init__(
        self,
        plan: BenchPlan,
        watch: SelfWatch,
        *,
        clock: Clock | None = None,
        on_step_start: Callable[[Step], None] = lambda _s: None,
        on_record: Callable[[RequestRecord], None] = lambda _r: None,
        on_step_end: Callable[[StepResult], None] = lambda _r: None,
    ) -> None:
        self._plan = plan
        self.watch = watch
        self._clock = clock or SystemClock()
        self._on_step_start = on_step_start
        self._on_record = on_record
        self._on_step_end = on_step_end
        self._rng = random.Random(plan.seed)
        self._targets: dict[tuple[str, int | None], TargetBase] = {}
        self.records = RecordStore()  # packed: a run's one growing thing (#14)
        self.steps: list[StepResult] = []
        self.sweep: SweepResult | None = None

    async def run(self) -> list[StepResult]:
        """Every step (a sweep stops early); the records are in `self.records`."""
        plan = self._plan
        target = plan.target
        async with create_session(
            target.tls, reuse_connections=target.reuse_connections
        ) as session:
            for step in plan.steps:
                self._on_step_start(step)
                result = await self._step(step, session)
                self.steps.append(result)
                self._on_step_end(result)
                if plan.sweep:
                    go_on, self.sweep = sweep_verdict(self.steps, finished=step is plan.steps[-1])
                    if not go_on:
                        break
        return self.steps

    async def _step(self, step: Step, session: aiohttp.ClientSession) -> StepResult:
        first = len(self.records)
        phase = _Phase(step, asyncio.get_running_loop(), self.watch.begin_step)
        if step.kind == "concurrency":
            await self._closed_loop(step, int(step.load), phase, session)
        else:
            await self._open_loop(step, phase, session)
        records = self.records[first:]
        measured = [r for r in records if not r.warmup]
        stats = summarize(measured, self._plan.slo)
        watch = self.watch.end_step(requests=stats.requests, suspect=stats.suspect)
        slo_met = None
        if self._plan.slo:
            good = count_good(measured, self._plan.slo)
            slo_met = bool(measured) and good / len(measured) >= self._plan.min_goodput
        return StepResult(
            index=step.index,
            kind=step.kind,
            load=step.load,
            stats=stats,
            self_watch=watch,
            slo_met=slo_met,
        )

    async def _closed_loop(
        self, step: Step, streams: int, phase: _Phase, session: aiohttp.ClientSession
    ) -> None:
        ramp = ramp_seconds(streams)

        async def stream(index: int) -> None:
            # Spread the first requests (and so the connections they open).
            await asyncio.sleep(ramp * index / max(streams - 1, 1))
            while (warmup := phase.claim()) is not None:
                await self._one(step, session, warmup=warmup)

        async with asyncio.TaskGroup() as group:
            for index in range(streams):
                group.create_task(stream(index))

    async def _open_loop(self, step: Step, phase: _Phase, session: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self._plan.max_in_flight)
        start = loop.time()
        arrivals = poisson_arrivals(step.load, random.Random(self._rng.random()))

        async def request(warmup: bool, due: float) -> None:
            try:
                await self._one(step, session, warmup=warmup, schedule_lag=loop.time() - due)
            finally:
                slots.release()

        async with asyncio.TaskGroup() as group:
            for offset in arrivals:
                due = start + offset
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                warmup = phase.claim()
                if warmup is None:
                    break
                await slots.acquire()
                group.create_task(request(warmup, due))

    def _target(self, prompt: Prompt) -> TargetBase:
        """The target of one request: the prompt, its output length and, where the
        protocol allows, the fixed output length."""
        plan = self._plan
        base = plan.target
        key = (base.name, prompt.max_tokens)
        target = self._targets.get(key)
        if target is None:
            update: dict[str, Any] = {}
            max_tokens = prompt.max_tokens or base.max_tokens
            update["max_tokens"] = max_tokens
            if plan.fixed_output and base.protocol in FIXED_OUTPUT_PROTOCOLS:
                update["extra_body"] = {
                    **base.extra_body,
                    "ignore_eos": True,
                    "min_tokens": max_tokens,
                }
            if "messages" in type(base).model_fields:
                update["messages"] = None
            target = self._targets[key] = base.model_copy(update=update)
        # model_copy is shallow and skips validation: cheap enough per request.
        return target.model_copy(update={"prompt": prompt.text})

    async def _one(
        self,
        step: Step,
        session: aiohttp.ClientSession,
        *,
        warmup: bool,
        schedule_lag: float | None = None,
    ) -> None:
        prompt = self._plan.prompts.next()
        target = self._target(prompt)
        mark = self.watch.mark()
        result = await measure(
            target, session, self._clock, timeout=self._plan.timeout, gap_bounds=ITL_BOUNDS
        )
        suspect = self.watch.suspect(mark)
        if suspect:
            result = dataclasses.replace(result, suspect=suspect)
        record = record_from_result(
            result,
            step=step.index,
            worker=self._plan.worker,
            warmup=warmup,
            prompt_tokens=prompt.tokens,
            schedule_lag=schedule_lag,
        )
        self.records.append(record)
        self._on_record(record)
