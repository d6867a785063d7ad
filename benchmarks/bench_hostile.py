"""Hostile inputs (issue #8): cost of a 200 MB SSE line and of a probe against servers
that stream without end, measured on the real parser and probe engine.

- parser: a 200 MB line without end fed in 64 KiB reads to `SSEFramer` with the line
  limit raised (the whole line is buffered; linear work) and with the default 1 MiB
  limit (fails at once); total time and worst single `feed()`.
- probe: one probe against `tests/hostile_server.py` (its own process) in `long-line`
  and `huge-stream` modes: time to the bounded failure, bytes read, RSS growth.

Figures before the fix (the former parser re-joined and re-scanned its whole buffer on
every read; quiet 2-core machine): 16 MB line 2.0 s (worst feed 21 ms), 32 MB 9.9 s
(50 ms), 64 MB 42 s (136 ms); 200 MB extrapolates to about 7 minutes with a worst feed
well above 400 ms. Against the long-line server a probe read until its deadline, grew
RSS by ~72 MiB in 5 s and held the event loop for up to 260 ms at a time.

Before, the old probe engine against the same servers (20 s deadline): long-line timed
out after 20 s, RSS +90 MiB, event loop held up to 431 ms; huge-stream read all 200 MB
(3.7 M token chunks) in 9.4 s, RSS +35 MiB, and recording 1.6 M gaps took 0.43 s on the
loop. After (this benchmark, same machine): the 200 MB line parses in 0.32 s with the
limit raised (worst feed 2.4 ms) and fails after 1 MiB in 1 ms by default; the probes
fail with `protocol` after 1.7 MB in 10 ms (RSS +0.7 MiB) and 4.8 MB in 0.37 s
(RSS +4.8 MiB).

Usage: ``python -m benchmarks.bench_hostile [--json PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ttft_exporter.clock import SystemClock
from ttft_exporter.config import parse_config
from ttft_exporter.errors import ProbeFailure
from ttft_exporter.probes import create_session, get_prober
from ttft_exporter.probes.framing import MAX_LINE_CHARS, SSEFramer

ROOT = Path(__file__).resolve().parents[1]
READ = 1 << 16
LINE = 200 << 20


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bench_parser(max_line: int) -> dict[str, Any]:
    """Feed `data: ` and 200 MB of `x` in 64 KiB reads."""
    parser = SSEFramer(max_line=max_line)
    piece = b"x" * READ
    worst = 0.0
    fed = 0
    outcome = "buffered"
    started = time.perf_counter()
    parser.feed(b"data: ")
    try:
        while fed < LINE:
            t = time.perf_counter()
            parser.feed(piece)
            worst = max(worst, time.perf_counter() - t)
            fed += READ
    except ProbeFailure as exc:
        outcome = exc.detail
    return {
        "max_line": max_line,
        "fed_bytes": fed,
        "seconds": round(time.perf_counter() - started, 4),
        "worst_feed_ms": round(worst * 1000, 3),
        "outcome": outcome,
    }


async def bench_probe(mode: str) -> dict[str, Any]:
    """One probe against the hostile server in `mode`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.hostile_server",
        mode,
        "200",
        stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
    )
    try:
        if proc.stdout is None:
            raise SystemExit("no stdout from the hostile server")
        port = int(await proc.stdout.readline())
        config = parse_config(
            {
                "targets": [
                    {
                        "name": "hostile",
                        "protocol": "openai-chat",
                        "url": f"http://127.0.0.1:{port}/v1",
                        "model": "m",
                        "prompt": "hi",
                        "interval": "60s",
                        "timeout": "30s",
                        # The body limit out of the way for the line: the line limit holds.
                        "max_response_bytes": (1 << 30) if mode == "long-line" else 4 << 20,
                    }
                ]
            }
        )
        target = config.targets[0]
        rss = _rss()
        async with create_session(target.tls, reuse_connections=False) as session:
            prepared = get_prober(target.protocol)(target, session, SystemClock())
            started = time.perf_counter()
            try:
                async with asyncio.timeout(target.timeout):
                    await prepared.run()
            except Exception as exc:  # noqa: BLE001 - the executor's boundary
                result = prepared.failure(exc, target.timeout)
            else:
                raise SystemExit("the hostile probe succeeded")
            elapsed = time.perf_counter() - started
        return {
            "mode": mode,
            "reason": result.reason.value if result.reason else None,
            "detail": result.detail,
            "seconds": round(elapsed, 4),
            "bytes_read": result.bytes_received,
            "rss_growth_mib": round((_rss() - rss) / (1 << 20), 1),
        }
    finally:
        proc.kill()
        await proc.wait()


def main() -> None:
    """Run every measurement; JSON to stdout or --json PATH."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out = {
        "parser_200mb_line_buffered": bench_parser(1 << 30),
        "parser_200mb_line_default_limit": bench_parser(MAX_LINE_CHARS),
        "probe_long_line": asyncio.run(bench_probe("long-line")),
        "probe_huge_stream": asyncio.run(bench_probe("huge-stream")),
    }
    text = json.dumps(out, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
