"""Summary statistics from records: interpolated percentiles, pooled ITL from bucket
counts, throughput over the wall span, errors by reason, connect separately."""

from __future__ import annotations

import itertools

import pytest

from tests.unit.bench.factory import make_record
from ttft_exporter.bench.records import ITL_BOUNDS
from ttft_exporter.bench.stats import histogram_percentile, percentile, summarize


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == pytest.approx(3.97)
    assert percentile([], 50) is None


def test_histogram_percentile_is_within_its_bucket() -> None:
    # 100 gaps in the bucket (b[44], b[45]]: every percentile lies inside it.
    counts = {45: 100}
    for q in (1, 50, 99):
        value = histogram_percentile(counts, q)
        assert value is not None and ITL_BOUNDS[44] <= value <= ITL_BOUNDS[45]
    # Two buckets: the median is at the boundary between them.
    assert histogram_percentile({10: 50, 20: 50}, 50) == pytest.approx(ITL_BOUNDS[10])
    assert histogram_percentile({}, 50) is None


def test_itl_bounds_are_ten_percent_apart() -> None:
    assert ITL_BOUNDS[0] == 0.0001 and ITL_BOUNDS[-1] > 60
    ratios = {round(b / a, 3) for a, b in itertools.pairwise(ITL_BOUNDS)}
    assert ratios <= {1.1, 1.099, 1.101}


def test_summary_of_a_step() -> None:
    records = [
        make_record(start=1000.0, ttft=0.1, elapsed=1.0, output_tokens=10, connect=0.004),
        make_record(start=1000.5, ttft=0.3, elapsed=1.5, output_tokens=30),
        make_record(start=1001.0, success=False, reason="http_status", elapsed=0.1),
        make_record(start=999.0, warmup=True, ttft=9.0, elapsed=1.0),
    ]
    stats = summarize(records, {})
    assert stats.requests == 3 and stats.succeeded == 2
    assert stats.errors == {"http_status": 1}
    # 1000.0 to 1002.0 (the second one ends at 1000.5 + 1.5): 2 s; warm-up excluded.
    assert stats.duration == pytest.approx(2.0)
    assert stats.output_tokens == 40
    assert stats.output_tokens_per_second == pytest.approx(20.0)
    assert stats.requests_per_second == pytest.approx(1.0)
    assert stats.ttft.p50 == pytest.approx(0.2) and stats.ttft.max == pytest.approx(0.3)
    # Connect is reported apart from TTFT: one new connection in this step.
    assert stats.connect.count == 1 and stats.connect.p50 == pytest.approx(0.004)
