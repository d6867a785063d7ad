"""Benchmark 4: /metrics render time with 100 targets.

Builds an ExporterState with 100 configured targets (three static labels each, the
default histograms: 79 series per target) whose series hold realistic data
(record_result of 50 successful 40-token probes with 19 inter-chunk gaps each, and
three failures of different reasons), then times:
- `MetricStore.render()` (classic text) and `render(openmetrics=True)`, and the classic
  render with every optional histogram on (`histograms:` all true, 143 per target);
- the `handle_metrics` handler called directly (exporter registry + store + encode);
- the whole `/metrics` request over a real TCP connection to an AppRunner/TCPSite
  serving `handle_metrics` (client time to read the full body included), classic,
  OpenMetrics and gzip;
- with tracing on (every probe carrying a trace id, so the TTFT and duration buckets
  carry exemplars): the OpenMetrics and classic renders again.
The background probe loops are not started (no lifecycle), so nothing else runs.

Usage: ``python -m benchmarks.bench_render [--quick] [--json PATH]``
"""

from __future__ import annotations

import gzip
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from benchmarks.common import bench_main, build_config, log, pct
from ttft_exporter.catalogue import OPTIONAL_HISTOGRAMS
from ttft_exporter.config import ConfigHolder
from ttft_exporter.errors import FailureReason
from ttft_exporter.probes.base import GapHistogram, ProbeResult
from ttft_exporter.server import EXPORTER, ExporterState, handle_metrics
from ttft_exporter.sinks.prometheus.record import record_result
from ttft_exporter.targets import target_labels

TARGETS = 100
SUCCESSES = 50
FAILURES = (FailureReason.TIMEOUT, FailureReason.HTTP_STATUS, FailureReason.CONNECT)
MS = 1000.0


def _histogram(gaps: tuple[float, ...]) -> GapHistogram:
    hist = GapHistogram()
    for gap in gaps:
        hist.observe(gap)
    return hist


def _success(rng: random.Random, traced: bool = False) -> ProbeResult:
    ttft = rng.uniform(0.25, 0.9)
    gaps = tuple(rng.uniform(0.012, 0.04) for _ in range(19))
    duration = ttft + sum(gaps)
    return ProbeResult(
        success=True,
        started_at=time.time(),
        phases={"dns": 0.0, "connect": 0.0004, "tls": 0.0, "headers": rng.uniform(0.001, 0.01)},
        http_status=200,
        time_to_first_byte=rng.uniform(0.001, 0.01),
        time_to_first_chunk=rng.uniform(0.001, 0.3),
        time_to_first_token=ttft,
        time_to_first_output_token=ttft,
        duration=duration,
        inter_chunk_gaps=_histogram(gaps),
        time_per_output_token=(duration - ttft) / 39,
        output_tokens=40,
        decode_tokens=39,
        usage_source="usage",
        input_tokens=12,
        reasoning_tokens=0,
        token_chunks=20,
        elapsed=duration,
        trace_id=rng.getrandbits(128) | 1 if traced else None,
        span_id=rng.getrandbits(64) | 1 if traced else None,
    )


def build_state(
    targets: int = TARGETS, histograms: dict[str, bool] | None = None, traced: bool = False
) -> ExporterState:
    """An exporter state with `targets` targets, each with realistic recorded data
    (and the given `histograms:` switches, default: the defaults; `traced`: every
    probe with a trace id, as with `otel.traces` on)."""
    switches = {"histograms": histograms} if histograms is not None else {}
    config = build_config(
        [
            {
                "name": f"target-{i:03d}",
                "url": f"http://llm-{i:03d}.inference.svc.cluster.local:8000/v1",
                "model": f"org/model-{i % 7}-instruct",
                "labels": {"env": "prod", "region": f"region-{i % 4}", "team": "serving"},
                **switches,
            }
            for i in range(targets)
        ]
    )
    state = ExporterState(holder=ConfigHolder(None, config), start_jitter=False)
    rng = random.Random(42)
    for target in config.targets:
        series = state.store.ensure(target.name, target_labels(target))
        for _ in range(SUCCESSES):
            record_result(series, _success(rng, traced), timeout=target.timeout)
        for reason in FAILURES:
            failed = ProbeResult(False, reason, "benchmark", started_at=time.time())
            record_result(series, failed, timeout=target.timeout)
        # The last one succeeded.
        record_result(series, _success(rng, traced), timeout=target.timeout)
    return state


def _touch_all(state: ExporterState, rng: random.Random, traced: bool = False) -> None:
    """Record one more probe for every target: the worst case, where every target
    changed since the last scrape and no cached rendering can be reused."""
    for target in state.holder.config.targets:
        series = state.store.ensure(target.name, target_labels(target))
        record_result(series, _success(rng, traced), timeout=target.timeout)


async def _time_async(
    runs: int, call: Callable[[], Awaitable[Any]], before: Callable[[], None] | None = None
) -> list[float]:
    for _ in range(3):
        await call()
    out = []
    for _ in range(runs):
        if before is not None:
            before()
        start = time.perf_counter()
        await call()
        out.append(time.perf_counter() - start)
    return out


def _time_sync(
    runs: int, call: Callable[[], Any], before: Callable[[], None] | None = None
) -> list[float]:
    for _ in range(3):
        call()
    out = []
    for _ in range(runs):
        if before is not None:
            before()
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def _stats(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": pct(times, 50) * MS,
        "p99_ms": pct(times, 99) * MS,
        "max_ms": max(times) * MS,
        "runs": len(times),
    }


async def main_async(quick: bool) -> dict[str, Any]:
    """Time render, the handler and the HTTP request."""
    runs = 20 if quick else 50
    state = build_state()
    store = state.store
    out: dict[str, Any] = {"quick": quick, "targets": TARGETS}
    rng = random.Random(7)

    def touch() -> None:
        _touch_all(state, rng)

    # Cold: every target probed since the last scrape (the steady state when the
    # scrape interval equals the probe interval). Cached: nothing changed (HA pairs).
    out["render_classic"] = _stats(_time_sync(runs, store.render, touch))
    out["render_openmetrics"] = _stats(
        _time_sync(runs, lambda: store.render(openmetrics=True), touch)
    )
    out["render_classic_cached"] = _stats(_time_sync(runs, store.render))
    every = build_state(histograms=dict.fromkeys(OPTIONAL_HISTOGRAMS, True))

    def touch_every() -> None:
        _touch_all(every, rng)

    out["render_classic_all_histograms"] = _stats(_time_sync(runs, every.store.render, touch_every))
    out["store_lines_all_histograms"] = every.store.render().count("\n")
    traced = build_state(traced=True)

    def touch_traced() -> None:
        _touch_all(traced, rng, traced=True)

    out["render_openmetrics_exemplars"] = _stats(
        _time_sync(runs, lambda: traced.store.render(openmetrics=True), touch_traced)
    )
    out["render_classic_traced"] = _stats(_time_sync(runs, traced.store.render, touch_traced))
    out["store_exemplars"] = traced.store.render(openmetrics=True).count(" # {")

    app = web.Application()
    app[EXPORTER] = state
    app.router.add_get("/metrics", handle_metrics)

    async def direct() -> web.StreamResponse:
        return await handle_metrics(make_mocked_request("GET", "/metrics", app=app))

    out["handler_direct"] = _stats(await _time_async(runs, direct, touch))

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sizes: dict[str, int] = {}
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
        variants = {
            "http_classic": {"Accept-Encoding": "identity"},
            "http_openmetrics": {
                "Accept": "application/openmetrics-text; version=1.0.0",
                "Accept-Encoding": "identity",
            },
            "http_gzip": {"Accept-Encoding": "gzip"},
        }
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            for name, headers in variants.items():

                async def fetch(headers: dict[str, str] = headers, name: str = name) -> None:
                    async with session.get(url, headers=headers) as response:
                        body = await response.read()
                        if response.status != 200:
                            raise RuntimeError(f"/metrics returned {response.status}")
                        sizes[name] = len(body)

                out[name] = _stats(await _time_async(runs, fetch, touch))
    finally:
        await runner.cleanup()
    classic = store.render()
    out["body_bytes"] = sizes
    out["store_body_bytes"] = len(classic.encode())
    out["store_gzip_bytes"] = len(gzip.compress(classic.encode()))
    out["store_lines"] = classic.count("\n")
    for key in (
        "render_classic",
        "render_openmetrics",
        "render_classic_cached",
        "render_classic_all_histograms",
        "render_openmetrics_exemplars",
        "render_classic_traced",
        "handler_direct",
        *variants,
    ):
        log(f"render {key:29} p50 {out[key]['p50_ms']:7.2f} ms  p99 {out[key]['p99_ms']:7.2f} ms")
    log(f"render body sizes {sizes}, {out['store_lines']} lines from the store")
    log(f"render {out['store_lines_all_histograms']} lines with every histogram on")
    return out


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    bench_main(__doc__, main_async, argv)


if __name__ == "__main__":
    main()
