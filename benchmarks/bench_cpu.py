"""Benchmark 2: client CPU seconds per 1M streamed tokens.

A token-bound load against the simulator in a child process: `streams` concurrent
probes of `tokens` tokens, one token per chunk, usage on, through the production path
(ProbeExecutor.run, record_result included), one session per target. Two pacings with
the same token count (itl=0: the simulator writes as fast as it can and many events
share a read; itl=4 ms and 8 ms: one event per read, the second run lasting twice as
long) show whether cost follows tokens or wall time; an idle
window with the sessions open shows the cost of doing nothing. CPU is this process's
`time.process_time()` (getrusage user/system split alongside); the simulator's CPU is
read from /proc and reported separately.

Usage: ``python -m benchmarks.bench_cpu [--quick] [--json PATH]``
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.common import (
    BenchExecutor,
    SimProcess,
    bench_main,
    build_config,
    log,
    self_cpu_seconds,
    sim_process,
)
from ttft_exporter.probes import create_session

# Same tokens, different pacing: "burst" lets TCP coalesce many events per read;
# "paced" and "slow" deliver one event per read and differ only in wall time (2x).
PACINGS = {"burst": 0.0, "paced": 0.004, "slow": 0.008}
# One row per protocol on the "paced" model (issue #10): the protocol's base URL on the
# simulator, relative to its root.
PROTOCOL_BASES = {
    "openai-chat": "/v1",
    "ollama-chat": "",
    "ollama-generate": "",
    "tgi": "",
    "anthropic": "",
    "openai-responses": "/v1",
}


def _models(tokens: int) -> dict[str, dict[str, Any]]:
    common = {"ttft": 0.05, "tokens": tokens, "tokens_per_chunk": 1, "usage": "always"}
    models = {name: {**common, "itl": itl} for name, itl in PACINGS.items()}
    models["warm"] = {**common, "tokens": 50, "itl": 0.0}
    return models


def _pick_model(protocol: str, model: str) -> dict[str, Any]:
    # TGI serves one model and names none in its requests: the simulator's TGI mode
    # takes it from X-Sim-Model (the other modes read the body's model).
    if protocol != "tgi":
        return {}
    return {"headers": {"X-Sim-Model": {"value": model, "secret": False}}}


async def _round(
    sim: SimProcess,
    model: str,
    streams: int,
    tokens: int,
    budget: float,
    protocol: str = "openai-chat",
) -> dict[str, Any]:
    """`streams` concurrent probes of `model`; CPU measured around the probes only."""
    root = sim.url.removesuffix("/v1")
    config = build_config(
        [
            {
                "name": f"{model}-{i}",
                "protocol": protocol,
                "url": f"{root}{PROTOCOL_BASES[protocol]}",
                "model": model,
                **_pick_model(protocol, model),
                "max_tokens": tokens,
                "timeout": budget,
                "interval": budget + 1,
            }
            for i in range(streams)
        ],
        concurrency=streams,
    )
    runner = BenchExecutor(streams)
    sessions = [create_session(t.tls, reuse_connections=False) for t in config.targets]
    try:
        cpu0, sim0, wall0 = self_cpu_seconds(), sim.cpu_seconds(), time.perf_counter()
        results = await asyncio.gather(
            *(
                runner.probe(target, session)
                for target, session in zip(config.targets, sessions, strict=True)
            )
        )
        cpu1, sim1, wall1 = self_cpu_seconds(), sim.cpu_seconds(), time.perf_counter()
    finally:
        for session in sessions:
            await session.close()
    ok = [r for r in results if r.success]
    counted = sum(r.output_tokens or 0 for r in ok)
    chunks = sum(r.token_chunks for r in ok)
    cpu = cpu1["process_time"] - cpu0["process_time"]
    wall = wall1 - wall0
    return {
        "model": model,
        "protocol": protocol,
        "itl_ms": PACINGS.get(model, 0.0) * 1000,
        "streams": streams,
        "ok": len(ok),
        "failures": [f"{r.reason}: {r.detail}" for r in results if not r.success][:5],
        "tokens": counted,
        "token_chunks": chunks,
        "wall_s": wall,
        "cpu_s": cpu,
        "user_s": cpu1["user"] - cpu0["user"],
        "sys_s": cpu1["sys"] - cpu0["sys"],
        "cpu_s_per_1m_tokens": cpu / counted * 1e6 if counted else float("nan"),
        "client_cores": cpu / wall if wall > 0 else 0.0,
        "sim_cores": (sim1 - sim0) / wall if wall > 0 else 0.0,
    }


async def _idle(sim: SimProcess, streams: int, seconds: float) -> dict[str, Any]:
    """CPU of an idle window with `streams` sessions holding warm connections."""
    config = build_config(
        [
            {"name": f"idle-{i}", "url": sim.url, "model": "warm", "reuse_connections": True}
            for i in range(streams)
        ],
        concurrency=streams,
    )
    runner = BenchExecutor(streams)
    sessions = [create_session(t.tls, reuse_connections=True) for t in config.targets]
    try:
        await asyncio.gather(
            *(runner.probe(t, s) for t, s in zip(config.targets, sessions, strict=True))
        )
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
    finally:
        for session in sessions:
            await session.close()
    return {"sessions": streams, "wall_s": wall, "cpu_s": cpu, "cores": cpu / wall}


async def main_async(quick: bool) -> dict[str, Any]:
    """Warm up, then measure each pacing and the idle window."""
    streams, tokens, idle = (50, 300, 1.0) if quick else (50, 1000, 3.0)
    budget = 30.0 if quick else 60.0
    async with sim_process(_models(tokens)) as sim:
        await _round(sim, "warm", streams, 50, budget)
        rows = []
        for model in PACINGS:
            row = await _round(sim, model, streams, tokens, budget)
            log(
                f"cpu {model:5} itl {row['itl_ms']:.0f} ms: {row['tokens']} tokens in "
                f"{row['wall_s']:.2f}s, client {row['cpu_s']:.2f} CPU s = "
                f"{row['cpu_s_per_1m_tokens']:.1f} s/1M tokens "
                f"({row['client_cores']:.2f} cores; sim {row['sim_cores']:.2f} cores)"
            )
            rows.append(row)
        protocol_rows = []
        for protocol in PROTOCOL_BASES:
            row = await _round(sim, "paced", streams, tokens, budget, protocol)
            log(
                f"cpu {protocol:15} paced: {row['tokens']} tokens, {row['ok']}/{streams} ok, "
                f"client {row['cpu_s_per_1m_tokens']:.1f} s/1M tokens"
            )
            protocol_rows.append(row)
        idle_row = await _idle(sim, streams, idle)
        log(f"cpu idle: {idle_row['cores'] * 100:.2f}% of a core with {streams} sessions")
    by_model = {r["model"]: r for r in rows}
    per = [r["cpu_s_per_1m_tokens"] for r in rows]
    return {
        "quick": quick,
        "rounds": rows,
        "protocols": protocol_rows,
        "idle": idle_row,
        "cpu_s_per_1m_tokens_max": max(per),
        # One event per read in both, twice the wall time in "slow": if cost followed
        # wall time this would be ~2.
        "slow_over_paced_cost": by_model["slow"]["cpu_s_per_1m_tokens"]
        / by_model["paced"]["cpu_s_per_1m_tokens"],
        "slow_over_paced_wall": by_model["slow"]["wall_s"] / by_model["paced"]["wall_s"],
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    bench_main(__doc__, main_async, argv)


if __name__ == "__main__":
    main()
