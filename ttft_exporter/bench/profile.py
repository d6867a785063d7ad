"""Load profiles: the steps of a run (fixed concurrency or a Poisson request rate),
how long each lasts and its warm-up, and the arrival times of a rate step."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from ttft_exporter.durations import parse_duration

__all__ = [
    "MAX_LOAD",
    "SWEEP_CONCURRENCY",
    "Step",
    "StepKind",
    "Stop",
    "Warmup",
    "parse_loads",
    "parse_stop",
    "parse_warmup",
    "poisson_arrivals",
]

StepKind = Literal["concurrency", "rate"]
# A bound on one step's load: concurrent streams, or requests per second.
MAX_LOAD = 10_000
# `--profile sweep` without `--concurrency`: doubling levels up to 256 streams.
SWEEP_CONCURRENCY: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True, slots=True)
class Stop:
    """When a step ends: after `requests` measured requests, or after `duration`
    seconds of measurement (in-flight requests then finish and count)."""

    requests: int | None = None
    duration: float | None = None


@dataclass(frozen=True, slots=True)
class Warmup:
    """Not measured, before each step: `requests` requests or `duration` seconds."""

    requests: int = 0
    duration: float = 0.0


@dataclass(frozen=True, slots=True)
class Step:
    """One load level of a run."""

    index: int
    kind: StepKind
    load: float  # concurrent streams, or requests per second
    stop: Stop
    warmup: Warmup

    @property
    def label(self) -> str:
        """`c=8` or `r=2.5/s`."""
        return f"c={self.load:g}" if self.kind == "concurrency" else f"r={self.load:g}/s"


def parse_loads(text: str, flag: str, *, integer: bool) -> tuple[float, ...]:
    """A comma-separated list of loads (`1,8,32`); ValueError naming `flag`."""
    values: list[float] = []
    for part in text.split(","):
        item = part.strip()
        try:
            value = float(int(item)) if integer else float(item)
        except ValueError:
            kind = "whole numbers" if integer else "numbers"
            raise ValueError(
                f"{flag}: {item!r} is not a number; want {kind} such as 1,8,32"
            ) from None
        if not 0 < value <= MAX_LOAD:
            raise ValueError(f"{flag}: {item} is out of range (above 0, at most {MAX_LOAD})")
        values.append(value)
    if not values:
        raise ValueError(f"{flag}: empty list")
    return tuple(values)


def parse_stop(requests: int | None, duration: str | None) -> Stop:
    """`--requests N` or `--duration 30s`; neither: 100 requests."""
    if requests is not None and duration is not None:
        raise ValueError("--requests and --duration: give one of them, not both")
    if duration is not None:
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            raise ValueError(f"--duration: {exc}") from None
        if seconds <= 0:
            raise ValueError("--duration: must be above 0")
        return Stop(duration=seconds)
    if requests is not None and requests < 1:
        raise ValueError("--requests: must be at least 1")
    return Stop(requests=100 if requests is None else requests)


def parse_warmup(text: str) -> Warmup:
    """`--warmup 10` (requests) or `--warmup 2s` (a duration)."""
    item = text.strip()
    if item.isdigit():
        return Warmup(requests=int(item))
    try:
        return Warmup(duration=parse_duration(item))
    except ValueError as exc:
        raise ValueError(f"--warmup: want a request count or a duration: {exc}") from None


def poisson_arrivals(rate: float, rng: random.Random) -> Iterator[float]:
    """Arrival offsets in seconds from the step start: a Poisson process of `rate`
    requests per second (exponential gaps), reproducible from the seeded `rng`."""
    at = 0.0
    while True:
        at += rng.expovariate(rate)
        yield at
