"""The exporter under soak, in a process of its own: the real `cli.serve` path
(`load_state`, the fd limit, `GatedSite` with the connection cap and header deadline,
the accept-error handler, SIGHUP/SIGTERM) plus one sampler hooked in through
`ExporterState.extra_contexts`, the lifecycle hook the app already has.

A separate process so RSS, descriptors and threads are the exporter's alone (not the
benchmark's hostile servers and clients); in-process sampling because the asyncio task
count and the per-probe results can only be read from inside.

Every `--sample-interval` seconds it writes one JSON line on stdout: VmRSS, VmHWM,
threads, open descriptors, `len(asyncio.all_tasks())`, the worst event-loop lag, and
the probes finished since the last line (per target: successes, failures by reason,
TTFT of the successful ones). Logs go to stderr as `cli` sets them up.

Usage: ``python -m benchmarks.soak_exporter --config.file F --web.listen-address
127.0.0.1:PORT [--nofile 1024] [--sample-interval 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from ttft_exporter.cli import parse_listen, serve
from ttft_exporter.listener import ListenerLimits
from ttft_exporter.logs import setup_logging
from ttft_exporter.server import EXPORTER, ExporterState, load_state

LAG_STEP = 0.05


def proc_status() -> dict[str, int]:
    """VmRSS, VmHWM (kB) and Threads from /proc/self/status."""
    out: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(value.split()[0])
    return out


def open_fds() -> int:
    """Open descriptors of this process (the listing's own descriptor excluded)."""
    return len(os.listdir("/proc/self/fd")) - 1


class LagMonitor:
    """Sleeps LAG_STEP at a time and keeps each overshoot: how long the event loop
    answered late. On a busy machine part of that is the OS running other processes,
    so each step also records the CPU time this thread used meanwhile: `held` (the
    overshoot, at most that CPU time) is the part the exporter's own code held the
    loop."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.held: list[float] = []

    async def run(self) -> None:
        """Measure until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            before, cpu = loop.time(), time.thread_time()
            await asyncio.sleep(LAG_STEP)
            lag = loop.time() - before - LAG_STEP
            self.lags.append(lag)
            self.held.append(min(lag, time.thread_time() - cpu))

    def take(self) -> dict[str, float]:
        """Worst and 99th-percentile lag (ms) since the last call, how many steps were
        late by more than 50 ms, and the worst part of a lag the loop was on CPU."""
        lags, self.lags = sorted(self.lags), []
        held, self.held = self.held, []
        if not lags:
            return {"lag_max_ms": 0.0, "lag_p99_ms": 0.0, "lag_over_50ms": 0, "held_max_ms": 0.0}
        return {
            "lag_max_ms": round(lags[-1] * 1000, 2),
            "lag_p99_ms": round(lags[int(0.99 * (len(lags) - 1))] * 1000, 2),
            "lag_over_50ms": sum(1 for lag in lags if lag > 0.05),
            "held_max_ms": round(max(held) * 1000, 2),
        }


class Sampler:
    """Builds one sample line from the process and the exporter's probe history."""

    def __init__(self, state: ExporterState, lag: LagMonitor) -> None:
        self.state = state
        self.lag = lag
        self.started = time.monotonic()
        self.last_id = 0
        self.cpu0 = time.process_time()

    def sample(self) -> dict[str, Any]:
        """One line's worth; the probe records since the last call."""
        records = [r for r in self.state.history.records() if r.id > self.last_id]
        records.sort(key=lambda r: r.id)
        # Records that left the history unread (its limit too small for the window).
        missed = (records[0].id - self.last_id - 1) if records else 0
        if records:
            self.last_id = records[-1].id
        targets: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"ok": 0, "failed": Counter(), "ttft_ms": []}
        )
        for record in records:
            row = targets[record.target]
            result = record.result
            if result.success:
                row["ok"] += 1
                if result.time_to_first_token is not None:
                    row["ttft_ms"].append(round(result.time_to_first_token * 1000, 2))
            else:
                row["failed"][str(result.reason)] += 1
        status = proc_status()
        registry = self.state.metrics.registry
        return {
            "t": round(time.monotonic() - self.started, 3),
            "rss_kb": status.get("VmRSS", 0),
            "hwm_kb": status.get("VmHWM", 0),
            "threads": status.get("Threads", 0),
            "fds": open_fds(),
            "tasks": len(asyncio.all_tasks()),
            **self.lag.take(),
            "http_connections": registry.get_sample_value("ttft_exporter_http_connections"),
            "cpu_s": round(time.process_time() - self.cpu0, 3),
            "ready": self.state.ready and not self.state.supervisor.down(),
            "history_missed": missed,
            "targets": {
                name: {**row, "failed": dict(row["failed"])} for name, row in targets.items()
            },
        }


def sampler_context(
    interval: float,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup_ctx that writes a sample line every `interval` seconds."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        state = app[EXPORTER]
        lag = LagMonitor()
        sampler = Sampler(state, lag)

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                sys.stdout.write(json.dumps(sampler.sample()) + "\n")
                sys.stdout.flush()

        tasks = [asyncio.create_task(lag.run()), asyncio.create_task(loop())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return context


def main(argv: list[str] | None = None) -> None:
    """Load the config as `cli.run` does, hook the sampler in, serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config.file", dest="config_file", required=True)
    parser.add_argument("--web.listen-address", dest="listen", required=True)
    parser.add_argument("--history.limit", dest="history_limit", type=int, default=2000)
    parser.add_argument(
        "--nofile", type=int, default=0, help="open-files limit (soft and hard); 0 keeps it"
    )
    parser.add_argument("--sample-interval", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.nofile > 0:
        # Both limits: serve() raises the soft limit to the hard one, as in production.
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))
    setup_logging("info", "logfmt")
    host, port = parse_listen(args.listen)
    state = load_state(Path(args.config_file), history_limit=args.history_limit)
    state.extra_contexts.append(sampler_context(args.sample_interval))
    sys.exit(serve(state, host, port, ListenerLimits()))


if __name__ == "__main__":
    main()
