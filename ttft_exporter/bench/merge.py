"""`bench merge`: the results of several workers (a Kubernetes Indexed Job) as one
run. Steps are matched by index; loads add up; every statistic is computed again
from the merged records (percentiles of all requests, never averages of
percentiles). Durations and rates use the records' wall-clock starts, so workers'
clocks must agree (NTP) to within a small share of a step."""

from __future__ import annotations

from collections.abc import Sequence

from ttft_exporter.bench.results import BenchResults, StepResult
from ttft_exporter.bench.runner import sweep_verdict
from ttft_exporter.bench.selfwatch import SelfWatchStats
from ttft_exporter.bench.stats import summarize

__all__ = ["merge_results"]


def _watch(parts: Sequence[SelfWatchStats], requests: int) -> SelfWatchStats:
    """Every worker's client figures together: a merged step is client-bound when
    any worker was."""
    lags = [p.loop_lag_max for p in parts if p.loop_lag_max is not None]
    p99s = [p.loop_lag_p99 for p in parts if p.loop_lag_p99 is not None]
    suspect = sum(p.suspect for p in parts)
    return SelfWatchStats(
        # The worst worker's p99: lag samples are not kept per request.
        loop_lag_p99=max(p99s) if p99s else None,
        loop_lag_max=max(lags) if lags else None,
        loop_lag_events=sum(p.loop_lag_events for p in parts),
        cpu_seconds=sum(p.cpu_seconds for p in parts),
        cpu_cores=max(p.cpu_cores for p in parts),
        max_rss_mb=max(p.max_rss_mb for p in parts),
        suspect=suspect,
        suspect_share=suspect / requests if requests else 0.0,
        client_bound=any(p.client_bound for p in parts),
        why=[why for p in parts for why in p.why],
    )


def merge_results(parts: Sequence[BenchResults]) -> BenchResults:
    """One results file from several; ValueError if they are not parts of one run."""
    if not parts:
        raise ValueError("nothing to merge")
    first = parts[0]
    for other in parts[1:]:
        for key in ("target", "protocol", "model", "profile", "slo"):
            if getattr(other.run, key) != getattr(first.run, key):
                raise ValueError(f"cannot merge: runs differ in {key}")
        if [(s.index, s.kind) for s in other.steps] != [(s.index, s.kind) for s in first.steps]:
            raise ValueError("cannot merge: runs have different steps")
    slo = first.run.slo
    records = [r for part in parts for r in part.records]
    records.sort(key=lambda r: (r.step, r.start))
    steps = []
    for index, step in enumerate(first.steps):
        same = [part.steps[index] for part in parts]
        mine = [r for r in records if r.step == step.index]
        stats = summarize(mine, slo)
        slo_met = None
        if slo:
            slo_met = stats.requests > 0 and (stats.goodput or 0.0) >= first.run.min_goodput
        steps.append(
            StepResult(
                index=step.index,
                kind=step.kind,
                load=sum(s.load for s in same),
                stats=stats,
                self_watch=_watch([s.self_watch for s in same], stats.requests),
                slo_met=slo_met,
            )
        )
    run = first.run.model_copy(
        update={
            "workers": sum(p.run.workers for p in parts),
            "started_at": min(p.run.started_at for p in parts),
        }
    )
    sweep = None
    if first.run.profile == "sweep":
        _, sweep = sweep_verdict(steps, finished=True)
    return BenchResults(run=run, steps=steps, sweep=sweep, records=records)
