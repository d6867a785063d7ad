"""`bench compare`: two runs' steps side by side, matched by load, with B - A."""

from __future__ import annotations

from tests.unit.bench.factory import results_of, spread_records
from ttft_exporter.bench.compare import compare


def test_compare_output() -> None:
    a = results_of(spread_records(0, 11, ttft0=0.1) + spread_records(1, 11), [1, 8])
    b = results_of(spread_records(0, 11, ttft0=0.15) + spread_records(1, 11), [1, 32])
    text = compare(a, b, names=("old.json", "new.json"))
    lines = text.splitlines()
    assert lines[0] == "A: old.json (t, m)" and lines[1] == "B: new.json (t, m)"
    # c=1 in both: TTFT p50 went from 105 to 155 ms, +50 ms (+48 %).
    row = next(line for line in lines if line.strip().startswith("ttft p50 ms"))
    assert row.split()[3:] == ["105.0", "155.0", "+50.0", "(+48%)"]
    assert "c=8: only in A" in text and "c=32: only in B" in text


def test_compare_flags_client_bound_steps() -> None:
    a = results_of(spread_records(0, 3), [4])
    watch = a.steps[0].self_watch.model_copy(update={"client_bound": True})
    b = a.model_copy(update={"steps": [a.steps[0].model_copy(update={"self_watch": watch})]})
    assert "c=4 (B client-bound)" in compare(a, b)
