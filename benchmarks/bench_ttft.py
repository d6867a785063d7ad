"""Benchmark 1: TTFT fidelity and the five streaming traps.

Probes the performance.md reference stream (simulator in a child process) through the
production path (`ProbeExecutor.run`: get_prober, StreamProbe under asyncio.timeout,
record_result), one aiohttp session per target as the scheduler does, at 1, 100, 200
and 500 concurrent streams, with fresh connections (the default) and with
reuse_connections=true. Each stream is a closed-loop worker; its first probe is a
warm-up and is not counted.

Errors are reported against two references:
- injected: measured TTFT - 300 ms (the simulator's configured first-text delay);
- truth: measured TTFT - (simulator first-text write - simulator request arrival) for
  the same request, matched by an X-Bench-Id header the simulator records; and, at the
  distribution level, measured p50/p99 - server-side p50/p99.

Usage: ``python -m benchmarks.bench_ttft [--quick] [--json PATH]``
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp

from benchmarks.common import (
    REFERENCE,
    REFERENCE_TTFT,
    BenchExecutor,
    SimProcess,
    StampingClock,
    bench_main,
    build_config,
    log,
    pct,
    sim_process,
)
from ttft_exporter.config import TargetConfig
from ttft_exporter.probes import create_session
from ttft_exporter.probes.base import ProbeResult

MS = 1000.0
BENCH_HEADER = "X-Bench-Id"

TRAP_MODELS: dict[str, dict[str, Any]] = {
    # A role-only chunk right with the headers, 300 ms before the first text.
    "trap_role": {"ttft": 0.3, "itl": 0.02, "tokens": 40, "tokens_per_chunk": 2},
    # Keep-alive comments during the wait and between chunks 150 ms apart.
    "trap_keepalive": {
        "ttft": 0.3,
        "itl": 0.15,
        "tokens": 8,
        "tokens_per_chunk": 2,
        "keepalive_interval": 0.05,
    },
    # The server keeps the connection open after [DONE].
    "trap_open": {**REFERENCE, "keep_open_after_done": True},
    # No usage chunk at all: the count must come from chunks (1 token per chunk here).
    "trap_nousage": {
        "ttft": 0.3,
        "itl": 0.02,
        "tokens": 40,
        "tokens_per_chunk": 1,
        "usage": "never",
    },
    # 20 reasoning tokens (10 chunks) before 20 answer tokens: TTFT 300 ms, TTFOT 500 ms.
    "trap_reasoning": {
        "ttft": 0.3,
        "itl": 0.02,
        "tokens": 20,
        "reasoning_tokens": 20,
        "tokens_per_chunk": 2,
    },
}


@dataclass(frozen=True)
class Level:
    """One concurrency level: `streams` closed-loop workers of `probes` probes each
    (the first of each is a warm-up), bounded by `budget` seconds."""

    streams: int
    probes: int
    budget: float


FULL_LEVELS = (Level(1, 26, 40.0), Level(100, 4, 25.0), Level(200, 4, 30.0), Level(500, 3, 40.0))
# --quick skips 500 streams: opening 500 sessions alone costs ~9 s of CPU.
QUICK_LEVELS = (Level(1, 5, 10.0), Level(100, 2, 10.0), Level(200, 2, 10.0))


@dataclass
class Sample:
    """One probe, its request id and the absolute (CLOCK_MONOTONIC) start stamp."""

    bench_id: str
    warmup: bool
    result: ProbeResult
    start_ns: int | None


@dataclass
class Truth:
    """What the simulator saw of one request (perf_counter seconds)."""

    arrival: float
    first_text_written: float

    @property
    def ttft(self) -> float:
        """Server-side TTFT: request arrival to the first text write."""
        return self.first_text_written - self.arrival


async def _worker(
    runner: BenchExecutor,
    clock: StampingClock,
    target: TargetConfig,
    session: aiohttp.ClientSession,
    probes: int,
    deadline: float,
    out: list[Sample],
) -> None:
    loop = asyncio.get_running_loop()
    for index in range(probes):
        if loop.time() > deadline:
            break
        bench_id = f"{target.name}-{index}"
        probe_target = target.model_copy(update={"headers": {BENCH_HEADER: bench_id}})
        result = await runner.probe(probe_target, session)
        out.append(Sample(bench_id, index == 0, result, clock.take_start()))


class SendStamps:
    """Stamps the moment each request's bytes are handed to the transport
    (perf_counter), keyed by its X-Bench-Id: one extra trace config on each target
    session, so the pre-arrival part of the error splits into client side and
    simulator side. aiohttp buffers the headers and writes them with the body from a
    separate writer task, so the stamp is taken in `on_request_chunk_sent` (right
    before the write), with the id picked up in `on_request_headers_sent`."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_headers_sent.append(self._on_headers)
        self.trace.on_request_chunk_sent.append(self._on_chunk)
        self.trace.freeze()

    async def _on_headers(
        self,
        _session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestHeadersSentParams,
    ) -> None:
        ctx.bench_id = params.headers.get(BENCH_HEADER)

    async def _on_chunk(
        self,
        _session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        _params: aiohttp.TraceRequestChunkSentParams,
    ) -> None:
        bench_id = getattr(ctx, "bench_id", None)
        if bench_id is not None and bench_id not in self.sent:
            self.sent[bench_id] = time.perf_counter()

    def attach(self, session: aiohttp.ClientSession) -> None:
        """Add the hook to a session created by create_session()."""
        session.trace_configs.append(self.trace)


def _server_truth(records: list[dict[str, Any]]) -> dict[str, Truth]:
    """bench id -> the simulator's stamps of that request."""
    truth: dict[str, Truth] = {}
    for record in records:
        headers = {k.lower(): v for k, v in record["headers"].items()}
        bench_id = headers.get(BENCH_HEADER.lower())
        written = record.get("first_text_written")
        if bench_id is not None and written is not None:
            truth[bench_id] = Truth(record["arrival"], written)
    return truth


def _ms(values: list[float], q: float) -> float:
    return pct(values, q) * MS


async def run_level(sim: SimProcess, level: Level, *, reuse: bool) -> dict[str, Any]:
    """Probe the reference model with `level.streams` concurrent workers."""
    mode = "reuse" if reuse else "fresh"
    config = build_config(
        [
            {
                "name": f"c{level.streams}-{mode}-{i}",
                "url": sim.url,
                "model": "ref",
                "reuse_connections": reuse,
            }
            for i in range(level.streams)
        ],
        concurrency=level.streams,
    )
    clock = StampingClock()
    runner = BenchExecutor(level.streams, clock)
    # Sessions first, as the scheduler opens them before its loops probe; creating one
    # is costly (see the session_create figures) and must not stall running streams.
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sessions = [create_session(t.tls, reuse_connections=reuse) for t in config.targets]
    session_cpu = time.process_time() - cpu0
    session_wall = time.perf_counter() - wall0
    stamps = SendStamps()
    for session in sessions:
        stamps.attach(session)
    samples: list[Sample] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + level.budget
    try:
        cpu0, sim0, wall0 = time.process_time(), sim.cpu_seconds(), time.perf_counter()
        async with asyncio.timeout(level.budget + 15):
            await asyncio.gather(
                *(
                    _worker(runner, clock, target, session, level.probes, deadline, samples)
                    for target, session in zip(config.targets, sessions, strict=True)
                )
            )
        cpu1, sim1, wall1 = time.process_time(), sim.cpu_seconds(), time.perf_counter()
    finally:
        for session in sessions:
            await session.close()
    truth = _server_truth(await sim.requests(len(samples) + 10))
    warmup_failures = sum(1 for s in samples if s.warmup and not s.result.success)
    measured = [s for s in samples if not s.warmup]
    ok = [s for s in measured if s.result.success]
    failures = Counter(
        s.result.reason.value if s.result.reason else "unknown"
        for s in measured
        if not s.result.success
    )
    ttft = [s.result.time_to_first_token or 0.0 for s in ok]
    matched = [(s, truth[s.bench_id]) for s in ok if s.bench_id in truth]
    server = [t.ttft for _, t in matched]
    errors = [(s.result.time_to_first_token or 0.0) - t.ttft for s, t in matched]
    # Where the error sits: before the simulator saw the request, split at the moment
    # the request bytes were written (client side: connect and client queueing;
    # simulator side: kernel, accept, parsing and the simulator's own queue), and after
    # its first text write (delivery and the client's read path).
    # (start in seconds, sample, truth) of the samples whose start was stamped.
    stamped = [(s.start_ns * 1e-9, s, t) for s, t in matched if s.start_ns is not None]
    pre = [t.arrival - start for start, s, t in stamped]
    client_send = [
        stamps.sent[s.bench_id] - start for start, s, t in stamped if s.bench_id in stamps.sent
    ]
    server_queue = [
        t.arrival - stamps.sent[s.bench_id] for start, s, t in stamped if s.bench_id in stamps.sent
    ]
    post = [
        start + (s.result.time_to_first_token or 0.0) - t.first_text_written
        for start, s, t in stamped
    ]
    # What-if: the error if TTFT were measured from the moment the request bytes were
    # written instead of from the probe's start (connect and client queueing excluded).
    from_send = [
        start + (s.result.time_to_first_token or 0.0) - stamps.sent[s.bench_id] - t.ttft
        for start, s, t in stamped
        if s.bench_id in stamps.sent
    ]
    correct_counts = sum(
        1
        for s in ok
        if s.result.output_tokens == REFERENCE["tokens"]
        and s.result.usage_source == "usage"
        and s.result.token_chunks == REFERENCE["tokens"] // REFERENCE["tokens_per_chunk"]
    )
    wall = wall1 - wall0
    row = {
        "streams": level.streams,
        "mode": mode,
        "probes": len(measured),
        "ok": len(ok),
        "failures": dict(failures),
        "warmup_failures": warmup_failures,
        "correct_token_counts": correct_counts,
        "err_p50_ms": (pct(ttft, 50) - REFERENCE_TTFT) * MS,
        "err_p99_ms": (pct(ttft, 99) - REFERENCE_TTFT) * MS,
        "server_late_p50_ms": (pct(server, 50) - REFERENCE_TTFT) * MS,
        "server_late_p99_ms": (pct(server, 99) - REFERENCE_TTFT) * MS,
        "matched": len(matched),
        "err_vs_truth_p50_ms": _ms(errors, 50),
        "err_vs_truth_p99_ms": _ms(errors, 99),
        "p50_minus_true_p50_ms": (pct(ttft, 50) - pct(server, 50)) * MS,
        "p99_minus_true_p99_ms": (pct(ttft, 99) - pct(server, 99)) * MS,
        "pre_arrival_p50_ms": _ms(pre, 50),
        "pre_arrival_p99_ms": _ms(pre, 99),
        "client_send_p50_ms": _ms(client_send, 50),
        "client_send_p99_ms": _ms(client_send, 99),
        "server_queue_p50_ms": _ms(server_queue, 50),
        "server_queue_p99_ms": _ms(server_queue, 99),
        "from_send_vs_truth_p50_ms": _ms(from_send, 50),
        "from_send_vs_truth_p99_ms": _ms(from_send, 99),
        "post_write_p50_ms": _ms(post, 50),
        "post_write_p99_ms": _ms(post, 99),
        "ttfb_p50_ms": _ms([s.result.time_to_first_byte or 0.0 for s in ok], 50),
        "connect_p50_ms": _ms([s.result.phases.get("connect", 0.0) for s in ok], 50),
        "connect_p99_ms": _ms([s.result.phases.get("connect", 0.0) for s in ok], 99),
        "ttfc_p50_ms": _ms([s.result.time_to_first_chunk or 0.0 for s in ok], 50),
        "wall_s": wall,
        "client_cpu_s": cpu1 - cpu0,
        "client_cores": (cpu1 - cpu0) / wall if wall > 0 else 0.0,
        "sim_cpu_s": sim1 - sim0,
        "sim_cores": (sim1 - sim0) / wall if wall > 0 else 0.0,
        "session_create_cpu_ms": session_cpu / len(sessions) * MS,
        "session_create_wall_s": session_wall,
    }
    log(
        f"ttft {level.streams:>3} streams {mode:5}: n={len(ok)}/{len(measured)} "
        f"err p50 {row['err_p50_ms']:+.2f} p99 {row['err_p99_ms']:+.2f} ms | vs truth "
        f"p50 {row['err_vs_truth_p50_ms']:+.2f} p99 {row['err_vs_truth_p99_ms']:+.2f} ms "
        f"(client send {row['client_send_p50_ms']:.2f}, sim queue "
        f"{row['server_queue_p50_ms']:.2f}, delivery {row['post_write_p50_ms']:.2f}) | "
        f"server late p99 {row['server_late_p99_ms']:+.2f} ms | "
        f"client {row['client_cores']:.2f} cores, sim {row['sim_cores']:.2f} cores"
    )
    return row


class _Checks:
    """Collects the assertions of one trap; the trap passes if every one holds."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def that(self, condition: bool, message: str) -> None:
        if not condition:
            self.failed.append(message)


def _near(value: float | None, expected: float, tolerance: float = 0.03) -> bool:
    return value is not None and abs(value - expected) <= tolerance


def _check_trap(name: str, result: ProbeResult, wall: float) -> list[str]:
    """The assertions of each trap; returns the failed ones."""
    c = _Checks()
    c.that(result.success, f"probe failed: {result.reason} {result.detail}")
    if name == "trap_role":
        c.that(_near(result.time_to_first_token, 0.3), f"TTFT {result.time_to_first_token}")
        c.that(
            (result.time_to_first_chunk or 1.0) < 0.1,
            f"role chunk not seen first (TTFC {result.time_to_first_chunk})",
        )
        c.that(result.token_chunks == 20, f"token chunks {result.token_chunks} != 20")
    elif name == "trap_keepalive":
        c.that(_near(result.time_to_first_token, 0.3), f"TTFT {result.time_to_first_token}")
        c.that(result.token_chunks == 4, f"token chunks {result.token_chunks} != 4")
        c.that(result.output_tokens == 8, f"tokens {result.output_tokens} != 8")
        gaps = result.inter_chunk_gaps
        c.that(
            gaps is not None and gaps.count == 3 and gaps.min > 0.12,
            f"keep-alives counted or reset gaps: {gaps and (gaps.count, gaps.min)}",
        )
    elif name == "trap_open":
        c.that(wall < 1.5, f"probe waited {wall:.2f}s for EOF after [DONE]")
        c.that(result.output_tokens == 40, f"tokens {result.output_tokens} != 40")
    elif name == "trap_nousage":
        c.that(result.usage_source == "chunks", f"usage_source {result.usage_source}")
        c.that(result.output_tokens == 40, f"tokens {result.output_tokens} != 40 (max_tokens 64)")
    elif name == "trap_reasoning":
        c.that(_near(result.time_to_first_token, 0.3), f"TTFT {result.time_to_first_token}")
        c.that(
            _near(result.time_to_first_output_token, 0.5),
            f"TTFOT {result.time_to_first_output_token} != ~0.5",
        )
        c.that(result.output_tokens == 40, f"tokens {result.output_tokens} != 40")
        c.that(result.reasoning_tokens == 20, f"reasoning tokens {result.reasoning_tokens}")
    return c.failed


async def _trap(runner: BenchExecutor, target: TargetConfig) -> dict[str, Any]:
    async with create_session(target.tls, reuse_connections=False) as session:
        await runner.probe(target, session)  # warm-up
        start = time.perf_counter()
        result = await runner.probe(target, session)
        wall = time.perf_counter() - start
    failed = _check_trap(target.name, result, wall)
    log(f"{target.name}: {'PASS' if not failed else 'FAIL ' + '; '.join(failed)}")
    return {
        "trap": target.name,
        "passed": not failed,
        "failed_checks": failed,
        "ttft_ms": (result.time_to_first_token or 0.0) * MS,
        "output_tokens": result.output_tokens,
        "usage_source": result.usage_source,
        "wall_s": wall,
    }


async def run_traps(sim: SimProcess) -> list[dict[str, Any]]:
    """Probe each trap model (a warm-up, then the checked probe; the five traps run
    side by side) and check the results."""
    config = build_config(
        [{"name": name, "url": sim.url, "model": name, "timeout": "3s"} for name in TRAP_MODELS]
    )
    runner = BenchExecutor(len(TRAP_MODELS))
    return list(await asyncio.gather(*(_trap(runner, target) for target in config.targets)))


async def main_async(quick: bool) -> dict[str, Any]:
    """Run the traps and every level in both connection modes."""
    levels = QUICK_LEVELS if quick else FULL_LEVELS
    models = {"ref": REFERENCE, **TRAP_MODELS}
    records = sum(level.streams * level.probes for level in levels) + 100
    async with sim_process(models, record_requests=records) as sim:
        traps = await run_traps(sim)
        rows = []
        for level in levels:
            for reuse in (False, True):
                rows.append(await run_level(sim, level, reuse=reuse))
                await asyncio.sleep(0.5)  # let closed connections drain
    return {"traps": traps, "levels": rows, "quick": quick}


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    bench_main(__doc__, main_async, argv)


if __name__ == "__main__":
    main()
