"""The simulator's load knobs for `ttft-exporter bench`: a model's capacity
(`max_concurrency`: streams beyond it wait in line, their TTFT growing by the wait)
and a fixed output length on request (`ignore_eos`, `min_tokens`)."""

from __future__ import annotations

import asyncio
import random

from tests.conftest import SimFactory, make_target, probe_once
from ttft_exporter.sim.llm import ModelBehaviour, SimRequest, plan_generation


def test_ignore_eos_answers_max_tokens_and_min_tokens_raises_the_answer() -> None:
    behaviour = ModelBehaviour(tokens=3)
    rng = random.Random(0)

    def answer(**request: object) -> tuple[int, str | None]:
        plan = plan_generation(behaviour, SimRequest(api="chat", model="m", **request), rng)  # type: ignore[arg-type]
        return plan.answer_tokens, plan.finish_reason

    assert answer() == (3, "stop")
    assert answer(max_tokens=8, ignore_eos=True) == (8, "stop")
    assert answer(max_tokens=8, min_tokens=5) == (5, "stop")
    assert answer(max_tokens=4, min_tokens=6) == (4, "length")  # capped by max_tokens
    assert answer(ignore_eos=True) == (3, "stop")  # no max_tokens: nothing to fill up to


async def test_streams_beyond_capacity_wait_in_line(make_llm_sim: SimFactory) -> None:
    # Capacity 2, generations of 200 ms (first token at 200 ms, one token): of three
    # probes started together, two get a first token after >= 200 ms and the third
    # after >= 400 ms (the simulator's own sleeps: lower bounds hold under any load).
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.2, tokens=1, max_concurrency=2))
    target = make_target(url=sim.url + "/v1", max_tokens=1)
    results = await asyncio.gather(*(probe_once(target) for _ in range(3)))
    assert all(r.success for r in results)
    ttfts = sorted(r.time_to_first_token or 0.0 for r in results)
    assert ttfts[0] >= 0.2 and ttfts[1] >= 0.2
    assert ttfts[2] >= 0.4
