"""Run the built-in LLM simulator in its own process, for the benchmarks.

Usage: ``python -m benchmarks.sim_server --config '{"models": {...}}' [--port 0]``.
Prints the bound port on the first line of stdout, then serves until stdin closes,
SIGTERM/SIGINT arrives or ``--max-seconds`` pass (a bound, so a forgotten simulator
cannot outlive its benchmark). On exit it prints its own CPU seconds on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time

from ttft_exporter.sim.llm import LLMSimConfig, run_llm_sim


async def _watch_stdin(stop: asyncio.Event) -> None:
    """Read stdin until EOF (the parent closed the pipe or died), then stop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        while await reader.read(4096):
            pass
    finally:
        transport.close()
        stop.set()


async def _serve(config: LLMSimConfig, port: int, max_seconds: float) -> None:
    runner, bound = await run_llm_sim(config, host="127.0.0.1", port=port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_watch_stdin(stop))
    print(bound, flush=True)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_seconds):
                await stop.wait()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await watcher
        await runner.cleanup()
    print(f"cpu {time.process_time():.3f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="LLMSimConfig as JSON")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    config = LLMSimConfig.model_validate(json.loads(args.config))
    asyncio.run(_serve(config, args.port, args.max_seconds))


if __name__ == "__main__":
    main()
