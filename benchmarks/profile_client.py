"""Profile the probe client under a streaming load with cProfile (a diagnosis tool,
not part of run.py).

Runs one warm-up round and one profiled round of `--streams` concurrent probes of
`--tokens` tokens (`--tokens-per-chunk`, `--itl`, reference TTFT 300 ms by default)
against the simulator in a child process, through ProbeExecutor.run, then prints the
hottest functions by own time and by cumulative time, grouped into coarse buckets
(event loop / aiohttp / SSE parser / JSON decode / timeline+record / other).

Usage: ``python -m benchmarks.profile_client [--streams 50] [--tokens 1000] [--itl 0.004]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time
from typing import Any

from benchmarks.common import (
    BenchExecutor,
    build_config,
    log,
    setup_logs,
    sim_process,
)
from ttft_exporter.probes import create_session

# (bucket, substring of "file:function") in match order.
_BUCKETS = (
    ("JSON decode (orjson)", "orjson"),
    ("framer (SSE/NDJSON)", "probes/framing.py"),
    ("chunk decoder", "probes/openai.py"),
    ("timeline", "probes/base.py"),
    ("StreamProbe engine", "probes/engine.py"),
    ("sessions/TLS", "probes/session.py"),
    ("record_result/metrics", "ttft_exporter/sinks/prometheus/"),
    ("executor/history", "ttft_exporter/executor.py"),
    ("aiohttp", "aiohttp/"),
    ("asyncio event loop", "asyncio/"),
    ("selectors/epoll", "select"),
    ("socket I/O", "_socket"),
    ("ssl", "ssl"),
)


def _bucket(key: tuple[str, int, str]) -> str:
    filename, _line, function = key
    text = f"{filename}:{function}"
    for name, needle in _BUCKETS:
        if needle in text:
            return name
    return "other"


def summarize(stats: pstats.Stats, total_cpu: float) -> list[tuple[str, float]]:
    """Own time per bucket, scaled to the measured CPU (cProfile inflates it)."""
    raw: dict[str, float] = {}
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for key, (_cc, _nc, tottime, _ct, _callers) in entries.items():
        name = _bucket(key)
        raw[name] = raw.get(name, 0.0) + tottime
    whole = sum(raw.values()) or 1.0
    return sorted(
        ((name, value / whole * total_cpu) for name, value in raw.items()),
        key=lambda item: -item[1],
    )


async def profile(args: argparse.Namespace) -> None:
    """Run the load and print the profile."""
    model = {
        "ttft": args.ttft,
        "itl": args.itl,
        "tokens": args.tokens,
        "tokens_per_chunk": args.tokens_per_chunk,
        "usage": "always",
        "keepalive_interval": 0.1,
    }
    async with sim_process({"m": model}) as sim:
        config = build_config(
            [
                {
                    "name": f"p{i}",
                    "url": sim.url,
                    "model": "m",
                    "max_tokens": args.tokens,
                    "reuse_connections": args.reuse,
                    "timeout": 60,
                    "interval": 61,
                }
                for i in range(args.streams)
            ],
            concurrency=args.streams,
        )
        runner = BenchExecutor(args.streams)
        sessions = [create_session(t.tls, reuse_connections=args.reuse) for t in config.targets]
        pairs = list(zip(config.targets, sessions, strict=True))
        try:
            await asyncio.gather(*(runner.probe(t, s) for t, s in pairs))
            # A CPU timer: the default wall timer would bill the idle wait in epoll.
            profiler = cProfile.Profile(time.process_time)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            profiler.enable()
            results = await asyncio.gather(*(runner.probe(t, s) for t, s in pairs))
            profiler.disable()
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
        finally:
            for session in sessions:
                await session.close()
    tokens = sum(r.output_tokens or 0 for r in results if r.success)
    chunks = sum(r.token_chunks for r in results if r.success)
    print(
        f"{sum(r.success for r in results)}/{len(results)} ok, {tokens} tokens in {chunks} "
        f"chunks, wall {wall:.2f}s, CPU {cpu:.2f}s (under cProfile; ~2x the unprofiled cost)"
    )
    stats = pstats.Stats(profiler)
    print("\nown CPU time by bucket (scaled to the profiled CPU):")
    for name, seconds in summarize(stats, cpu):
        share = seconds / cpu * 100 if cpu else 0.0
        per_chunk = seconds / chunks * 1e6 if chunks else 0.0
        print(f"  {name:26} {seconds:7.3f}s {share:5.1f}%  {per_chunk:6.1f} us/chunk")
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(args.top)
        print(f"\n--- top {args.top} by {order} ---")
        print(out.getvalue().split("\n", 6)[-1])


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--tokens-per-chunk", type=int, default=1)
    parser.add_argument("--itl", type=float, default=0.004)
    parser.add_argument("--ttft", type=float, default=0.05)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    setup_logs()
    log(f"profiling {args.streams} streams x {args.tokens} tokens, itl {args.itl}s")
    asyncio.run(profile(args))


if __name__ == "__main__":
    main()
