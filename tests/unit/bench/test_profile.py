"""Profiles: load lists, stops, warm-ups and seeded Poisson arrivals."""

from __future__ import annotations

import random
import re

import pytest

from ttft_exporter.bench.profile import (
    Stop,
    Warmup,
    parse_loads,
    parse_stop,
    parse_warmup,
    poisson_arrivals,
)


def test_parse_loads() -> None:
    assert parse_loads("1, 8,32", "--concurrency", integer=True) == (1.0, 8.0, 32.0)
    assert parse_loads("0.5,2", "--rate", integer=False) == (0.5, 2.0)
    with pytest.raises(ValueError, match=re.escape("--concurrency: '1.5' is not a number")):
        parse_loads("1.5", "--concurrency", integer=True)
    with pytest.raises(ValueError, match="--rate: 0 is out of range"):
        parse_loads("0", "--rate", integer=False)


def test_stop_and_warmup() -> None:
    assert parse_stop(None, None) == Stop(requests=100)
    assert parse_stop(None, "30s") == Stop(duration=30.0)
    with pytest.raises(ValueError, match="--requests and --duration"):
        parse_stop(5, "1s")
    assert parse_warmup("10") == Warmup(requests=10)
    assert parse_warmup("1500ms") == Warmup(duration=1.5)
    with pytest.raises(ValueError, match="--warmup"):
        parse_warmup("soon")


def test_poisson_arrivals_are_seeded_and_have_the_rate() -> None:
    def first(n: int, seed: int) -> list[float]:
        it = poisson_arrivals(4.0, random.Random(seed))
        return [next(it) for _ in range(n)]

    assert first(5, 1) == first(5, 1) and first(5, 1) != first(5, 2)
    times = first(20_000, 3)
    assert times == sorted(times)
    # 20,000 exponential gaps of mean 0.25 s: the mean is within 2 % (about 7 sigma).
    assert times[-1] / len(times) == pytest.approx(0.25, rel=0.02)
