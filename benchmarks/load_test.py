"""`make load-test`: `ttft-exporter bench` against the built-in simulator.

Starts the simulator in a child process with a model of known timing (first token at
300 ms, 20 ms per token, 64 streams generating at once, the rest waiting in line),
then sweeps the concurrency for the highest load that meets the SLOs (it is 64: the
simulator's capacity). Extra arguments go to `ttft-exporter bench`, e.g.
``make load-test ARGS="--duration 30s"``.

Usage: ``python -m benchmarks.load_test [bench flags...]``
"""

from __future__ import annotations

import asyncio
import sys

from benchmarks.common import sim_process

MODEL = {"ttft": 0.3, "itl": 0.02, "tokens": 64, "tokens_per_chunk": 1, "max_concurrency": 64}


async def _main(extra: list[str]) -> int:
    async with sim_process({"sim": MODEL}, record_requests=0) as sim:
        argv = [
            sys.executable, "-m", "ttft_exporter", "bench",
            "--url", sim.url, "--model", "sim",
            "--profile", "sweep", "--concurrency", "1,8,32,64,128",
            "--duration", "5s", "--max-tokens", "32",
            "--slo", "ttft=500ms,tpot=40ms", "--slo.min-goodput", "95%",
            "--output-dir", "bench-results", "--seed", "1",
            *extra,
        ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(*argv)
        return await process.wait()


def main() -> None:
    """Entry point."""
    sys.exit(asyncio.run(_main(sys.argv[1:])))


if __name__ == "__main__":
    main()
