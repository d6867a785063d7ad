"""Summary statistics of one step from its records: percentiles of TTFT, TPOT, ITL
(pooled gaps) and e2e, throughput, errors, connect, goodput. A pure function of the
records, so a merged run is summarised exactly like a single one."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from ttft_exporter.bench.goodput import count_good
from ttft_exporter.bench.records import ITL_BOUNDS, RequestRecord

__all__ = [
    "PERCENTILES",
    "Distribution",
    "StepStats",
    "histogram_percentile",
    "percentile",
    "summarize",
]

PERCENTILES = (50, 90, 95, 99)


class Distribution(BaseModel):
    """Percentiles, mean and extremes of one figure, in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int
    mean: float | None
    min: float | None
    max: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None


class StepStats(BaseModel):
    """What a step measured, from its non-warm-up records."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int
    succeeded: int
    errors: dict[str, int]
    duration: float  # seconds from the first start to the last end (wall clock)
    requests_per_second: float
    output_tokens: int
    output_tokens_per_second: float
    ttft: Distribution
    ttfot: Distribution
    tpot: Distribution
    itl: Distribution
    e2e: Distribution
    connect: Distribution
    goodput: float | None  # share of requests meeting every SLO; None without SLOs
    goodput_per_second: float | None
    suspect: int  # requests whose figures the client itself may have delayed


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) of sorted values, linear interpolation (numpy's
    default); None for no values."""
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _distribution(values: Iterable[float | None]) -> Distribution:
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return Distribution(
            count=0, mean=None, min=None, max=None, p50=None, p90=None, p95=None, p99=None
        )
    p50, p90, p95, p99 = (percentile(ordered, q) for q in PERCENTILES)
    return Distribution(
        count=len(ordered),
        mean=math.fsum(ordered) / len(ordered),
        min=ordered[0],
        max=ordered[-1],
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
    )


def histogram_percentile(counts: Mapping[int, int], q: float) -> float | None:
    """The q-th percentile of gaps counted over ITL_BOUNDS, interpolated linearly
    inside the bucket it falls in (bucket i holds gaps in (bound[i-1], bound[i]])."""
    total = sum(counts.values())
    if total == 0:
        return None
    rank = q / 100.0 * total
    seen = 0
    for index in sorted(counts):
        n = counts[index]
        if seen + n >= rank:
            if index >= len(ITL_BOUNDS):
                return ITL_BOUNDS[-1]  # the +Inf bucket: its lower bound
            low = ITL_BOUNDS[index - 1] if index > 0 else 0.0
            return low + (ITL_BOUNDS[index] - low) * ((rank - seen) / n)
        seen += n
    return ITL_BOUNDS[-1]


def _itl(records: Sequence[RequestRecord]) -> Distribution:
    counts: Counter[int] = Counter()
    for record in records:
        for index, n in record.itl:
            counts[index] += n
    total = sum(counts.values())
    if total == 0:
        return _distribution(())
    p50, p90, p95, p99 = (histogram_percentile(counts, q) for q in PERCENTILES)
    low, high = min(counts), max(counts)
    return Distribution(
        count=total,
        mean=None,  # not kept: the buckets give percentiles, not the sum
        min=ITL_BOUNDS[low - 1] if low > 0 else 0.0,
        max=ITL_BOUNDS[min(high, len(ITL_BOUNDS) - 1)],
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
    )


def summarize(records: Iterable[RequestRecord], slo: Mapping[str, float]) -> StepStats:
    """The statistics of the measured (non-warm-up) records of one step."""
    measured = [r for r in records if not r.warmup]
    ok = [r for r in measured if r.success]
    errors = Counter(r.reason or "unknown" for r in measured if not r.success)
    if measured:
        first = min(r.start for r in measured)
        last = max(r.start + r.elapsed for r in measured)
        duration = max(last - first, 0.0)
    else:
        duration = 0.0
    tokens = sum(r.output_tokens or 0 for r in ok)
    good = count_good(measured, slo) if slo else None

    def rate(n: float) -> float:
        return n / duration if duration > 0 else 0.0

    return StepStats(
        requests=len(measured),
        succeeded=len(ok),
        errors=dict(sorted(errors.items())),
        duration=duration,
        requests_per_second=rate(len(ok)),
        output_tokens=tokens,
        output_tokens_per_second=rate(tokens),
        ttft=_distribution(r.ttft for r in ok),
        ttfot=_distribution(r.ttfot for r in ok),
        tpot=_distribution(r.tpot for r in ok),
        itl=_itl(ok),
        e2e=_distribution(r.e2e for r in ok),
        connect=_distribution(r.connect for r in measured),
        goodput=(good / len(measured) if measured else 0.0) if good is not None else None,
        goodput_per_second=rate(good) if good is not None else None,
        suspect=sum(1 for r in measured if r.suspect),
    )
