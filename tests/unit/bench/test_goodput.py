"""Goodput as vLLM defines it, on hand-made records: the share of requests that
succeeded and met every SLO given, TPOT counting as 0 when not measured."""

from __future__ import annotations

import pytest

from tests.unit.bench.factory import make_record
from ttft_exporter.bench.goodput import count_good, is_good, parse_slo
from ttft_exporter.bench.stats import summarize


def test_parse_slo_reads_durations_and_vllm_spelling() -> None:
    assert parse_slo("ttft=800ms,tpot=60ms,e2el=10s") == {"ttft": 0.8, "tpot": 0.06, "e2e": 10.0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttft", "want key=duration"),
        ("itl=5ms", "want key=duration"),
        ("ttft=fast", "--slo: ttft: invalid duration"),
        ("ttft=0s", "must be above 0"),
        ("ttft=1s,ttft=2s", "given twice"),
    ],
    ids=["no-value", "unknown-key", "bad-duration", "zero", "twice"],
)
def test_bad_slo_names_the_flag(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="--slo") as info:
        parse_slo(text)
    assert message in str(info.value)


def test_goodput_arithmetic() -> None:
    slo = {"ttft": 0.5, "tpot": 0.05}
    records = [
        make_record(ttft=0.2, tpot=0.01),  # good
        make_record(ttft=0.5, tpot=0.05),  # good: the bounds are inclusive
        make_record(ttft=0.51, tpot=0.01),  # TTFT too high
        make_record(ttft=0.2, tpot=0.06),  # TPOT too high
        make_record(ttft=0.2, tpot=None, output_tokens=1),  # one token: TPOT counts as 0
        make_record(success=False, reason="timeout"),  # a failure is never good
        make_record(ttft=0.1, warmup=True),  # warm-up: not measured at all
        make_record(ttft=0.1, e2e=30.0),  # no e2e SLO given: its e2e does not matter
    ]
    assert [is_good(r, slo) for r in records] == [True, True, False, False, True, False, True, True]
    stats = summarize(records, slo)
    # 7 measured (the warm-up is out), 4 good.
    assert stats.requests == 7
    assert stats.goodput == pytest.approx(4 / 7)
    # Rate: good requests over the step's wall span (all start at 1000.0; the longest
    # one lasts 0.5 s).
    assert stats.goodput_per_second == pytest.approx(4 / 0.5)
    measured = [r for r in records if not r.warmup]
    assert count_good(measured, {"e2e": 1.0}) == 5  # the 30 s one and the failure are out


def test_no_slo_no_goodput() -> None:
    stats = summarize([make_record()], {})
    assert stats.goodput is None and stats.goodput_per_second is None
