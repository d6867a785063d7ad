"""`bench merge`: workers' results as one run, every statistic computed again from the
merged records (never percentiles averaged)."""

from __future__ import annotations

import pytest

from tests.unit.bench.factory import results_of, spread_records
from ttft_exporter.bench.merge import merge_results


def test_merge_equals_a_single_run_on_the_same_records() -> None:
    slo = {"ttft": 0.12}
    records = spread_records(0, 40) + spread_records(1, 30, ttft0=0.2)
    single = results_of(records, [4, 8], slo=slo)
    # The same requests as two workers, each running half the streams.
    halves = [
        results_of(
            [r.model_copy(update={"worker": w}) for i, r in enumerate(records) if i % 2 == w],
            [2, 4],
            slo=slo,
        )
        for w in (0, 1)
    ]
    merged = merge_results(halves)
    assert [s.load for s in merged.steps] == [4, 8]
    for ours, theirs in zip(merged.steps, single.steps, strict=True):
        assert ours.stats == theirs.stats
        assert ours.slo_met == theirs.slo_met
    assert merged.run.workers == 2
    assert sorted(r.ttft or 0 for r in merged.records) == sorted(r.ttft or 0 for r in records)


def test_merge_is_not_an_average_of_percentiles() -> None:
    # Worker 0: 99 fast requests; worker 1: one slow one. The merged p99 is a
    # percentile of all 100 (between the fast ones and the slow one), not the mean of
    # the workers' p99s (which would be about (0.1 + 5) / 2).
    fast = results_of(spread_records(0, 99, ttft0=0.1), [1])
    slow = results_of(spread_records(0, 1, ttft0=5.0, worker=1), [1])
    merged = merge_results([fast, slow])
    ttft = merged.steps[0].stats.ttft
    assert ttft.count == 100
    assert ttft.p50 == pytest.approx(0.1 + 0.001 * 49.5)
    assert ttft.p99 is not None and ttft.p99 < 0.2 + 0.05 * 5  # far below 2.5


def test_merge_refuses_different_runs() -> None:
    a = results_of(spread_records(0, 3), [1])
    b = results_of(spread_records(0, 3), [1], model="other")
    with pytest.raises(ValueError, match="differ in model"):
        merge_results([a, b])
    c = results_of(spread_records(0, 3) + spread_records(1, 3), [1, 2])
    with pytest.raises(ValueError, match="different steps"):
        merge_results([a, c])


def test_a_merged_step_is_client_bound_when_any_worker_was() -> None:
    a = results_of(spread_records(0, 3), [1])
    b = results_of(spread_records(0, 3, worker=1), [1])
    bound = b.steps[0].self_watch.model_copy(update={"client_bound": True, "why": ["cpu"]})
    b = b.model_copy(update={"steps": [b.steps[0].model_copy(update={"self_watch": bound})]})
    merged = merge_results([a, b])
    assert merged.steps[0].self_watch.client_bound
    assert merged.steps[0].self_watch.why == ["cpu"]
