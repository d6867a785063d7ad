"""Hand-made bench records and results for the tests of tests/unit/bench."""

from __future__ import annotations

from typing import Any

from ttft_exporter.bench.records import RequestRecord
from ttft_exporter.bench.results import BenchResults, RunInfo, StepResult
from ttft_exporter.bench.selfwatch import SelfWatchStats
from ttft_exporter.bench.stats import summarize


def make_record(**fields: Any) -> RequestRecord:
    """A successful measured request of step 0 unless told otherwise."""
    base: dict[str, Any] = {
        "step": 0,
        "worker": 0,
        "warmup": False,
        "start": 1000.0,
        "success": True,
        "reason": None,
        "ttft": 0.1,
        "ttfot": 0.1,
        "ttfb": 0.01,
        "tpot": 0.02,
        "e2e": 0.5,
        "elapsed": 0.5,
        "connect": None,
        "schedule_lag": None,
        "output_tokens": 20,
        "input_tokens": 30,
        "prompt_tokens": 30,
        "usage_source": "usage",
        "itl": [],
        "suspect": [],
    }
    base.update(fields)
    if not base["success"]:
        for key in ("ttft", "ttfot", "tpot", "e2e", "output_tokens"):
            base[key] = fields.get(key)
        base.setdefault("reason", "timeout")
    return RequestRecord(**base)


def quiet_watch(requests: int = 0, **fields: Any) -> SelfWatchStats:
    """A client that was never the bottleneck."""
    base: dict[str, Any] = {
        "loop_lag_p99": 0.001,
        "loop_lag_max": 0.002,
        "loop_lag_events": 0,
        "cpu_seconds": 0.5,
        "cpu_cores": 0.1,
        "max_rss_mb": 50.0,
        "suspect": 0,
        "suspect_share": 0.0,
        "client_bound": False,
        "why": [],
    }
    base.update(fields)
    return SelfWatchStats(**base)


def run_info(**fields: Any) -> RunInfo:
    base: dict[str, Any] = {
        "tool": "ttft-exporter test",
        "target": "t",
        "protocol": "openai-chat",
        "model": "m",
        "url": "http://127.0.0.1:1/v1",
        "profile": "concurrency",
        "slo": {},
        "min_goodput": 0.99,
        "seed": 1,
        "workers": 1,
        "prompt_counting": "approximate",
        "fixed_output_tokens": 20,
        "reuse_connections": True,
        "started_at": 1000.0,
    }
    base.update(fields)
    return RunInfo(**base)


def results_of(
    records: list[RequestRecord],
    loads: list[float],
    *,
    slo: dict[str, float] | None = None,
    **run: Any,
) -> BenchResults:
    """Results whose step i has load loads[i] and the records of step i."""
    slo = slo or {}
    steps = []
    for index, load in enumerate(loads):
        stats = summarize([r for r in records if r.step == index], slo)
        steps.append(
            StepResult(
                index=index,
                kind="concurrency",
                load=load,
                stats=stats,
                self_watch=quiet_watch(stats.requests),
                slo_met=None if not slo else (stats.goodput or 0.0) >= 0.99,
            )
        )
    return BenchResults(run=run_info(slo=slo, **run), steps=steps, sweep=None, records=records)


def spread_records(
    step: int, count: int, *, ttft0: float = 0.1, worker: int = 0
) -> list[RequestRecord]:
    """`count` distinct successful records of a step, 0.1 s apart, TTFTs rising 1 ms
    each, with a few inter-token gaps."""
    return [
        make_record(
            step=step,
            worker=worker,
            start=1000.0 + 0.1 * i,
            ttft=ttft0 + 0.001 * i,
            e2e=ttft0 + 0.001 * i + 0.4,
            elapsed=ttft0 + 0.001 * i + 0.4,
            tpot=0.02 + 0.0001 * i,
            itl=[(45 + i % 3, 19)],
        )
        for i in range(count)
    ]
