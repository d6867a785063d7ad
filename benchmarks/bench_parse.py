"""Benchmark: the per-event CPU of the probe engine's own read path (issue #14), with no
network and no event loop: bytes of a stream, one read per event as a paced server
delivers them, through the probe the registry builds for an `openai-chat` target and its
`_consume` (SSE framer, protocol decoder, timeline), then the timeline's result.

Two streams, each the wire shape of the simulator's OpenAI chunks (`usage: null` on
every chunk, a role-only chunk, keep-alive comments, the finish chunk, the usage chunk,
`[DONE]`):
- `reference`: the performance.md stream, 20 chunks of 2 tokens (40 tokens);
- `per_token`: bench_cpu's shape, 1000 chunks of one token.

CPU is `time.process_time()`, the best of several repeats, so the figure holds on a
loaded machine (other processes take wall time, not this process's CPU). It is the part
of the client's CPU that is this project's code; bench_cpu and bench_load measure the
whole client (aiohttp, asyncio, the kernel's socket calls).

Usage: ``python -m benchmarks.bench_parse [--quick] [--json PATH]``
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

from benchmarks.common import bench_main, build_config, log
from ttft_exporter.bench.records import ITL_BOUNDS
from ttft_exporter.clock import SystemClock
from ttft_exporter.probes import get_prober
from ttft_exporter.probes.base import StreamTimeline

_HEAD = {
    "id": "chatcmpl-0123456789abcdef0123456789abcdef",
    "object": "chat.completion.chunk",
    "created": 1764000000,
    "model": "ref",
}


def _event(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return _event({**_HEAD, "choices": [choice], "usage": None})


def stream_reads(chunks: int, tokens_per_chunk: int) -> list[bytes]:
    """The reads of one stream, one event (or comment) each."""
    reads = [_chunk({"role": "assistant", "content": ""})]
    reads += [b": keep-alive\n\n"] * 3
    word = " tok" * tokens_per_chunk
    reads += [_chunk({"content": word}) for _ in range(chunks)]
    reads.append(_chunk({}, "stop"))
    usage = {
        "prompt_tokens": 64,
        "completion_tokens": chunks * tokens_per_chunk,
        "total_tokens": 64 + chunks * tokens_per_chunk,
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    reads.append(_event({**_HEAD, "choices": [], "usage": usage}))
    reads.append(b"data: [DONE]\n\n")
    return reads


def _one(target: Any, reads: list[bytes], max_tokens: int) -> int:
    """One stream through the engine's read path; its output tokens."""
    clock = SystemClock()
    # The registry's prober builds the probe as the exporter does (the protocol's
    # framer and decoder); the session is never used: no request is sent.
    probe: Any = get_prober(target.protocol)(target, cast(Any, None), clock, gap_bounds=ITL_BOUNDS)
    start = clock.monotonic_ns()
    timeline = StreamTimeline(start, gap_bounds=ITL_BOUNDS, max_tokens=max_tokens)
    framer = probe._framer
    t_ns = start
    for data in reads:
        t_ns += 20_000_000  # 20 ms apart: never a burst
        if probe._consume(framer, data, t_ns, timeline):
            break
    result = timeline.result(
        phases={}, http_status=200, headers_ns=start, started_at=0.0, end_ns=t_ns
    )
    return result.output_tokens or 0


def _measure(name: str, chunks: int, per_chunk: int, streams: int, repeats: int) -> dict[str, Any]:
    reads = stream_reads(chunks, per_chunk)
    events = len(reads)
    config = build_config(
        [{"name": name, "url": "http://127.0.0.1:9/v1", "model": "ref", "max_tokens": chunks}]
    )
    target = config.targets[0]
    best = float("inf")
    tokens = 0
    for _ in range(repeats):
        cpu0 = time.process_time()
        for _ in range(streams):
            tokens = _one(target, reads, chunks * per_chunk)
        best = min(best, (time.process_time() - cpu0) / streams)
    row = {
        "stream": name,
        "reads_per_stream": events,
        "tokens_per_stream": tokens,
        "us_per_stream": best * 1e6,
        "us_per_read": best / events * 1e6,
        "cpu_s_per_1m_tokens": best / tokens * 1e6,
    }
    log(
        f"parse {name:9}: {row['us_per_stream']:8.1f} us/stream, {row['us_per_read']:.2f} us/read,"
        f" {row['cpu_s_per_1m_tokens']:.2f} CPU s per 1M tokens"
    )
    return row


async def main_async(quick: bool) -> dict[str, Any]:
    """Both streams, best of `repeats` runs each."""
    repeats = 3 if quick else 7
    return {
        "quick": quick,
        "rows": [
            _measure("reference", 20, 2, 500 if quick else 2000, repeats),
            _measure("per_token", 1000, 1, 10 if quick else 40, repeats),
        ],
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    bench_main(__doc__, main_async, argv)


if __name__ == "__main__":
    main()
