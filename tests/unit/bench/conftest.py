"""Shared by the bench tests: the simulator, in a thread of its own (the command under
test runs its own event loop, or runs in another process)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from ttft_exporter.sim.llm import LLMSimConfig, ModelBehaviour, run_llm_sim


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """The simulator on its own loop in a thread, for the module's runs."""
    loop = asyncio.new_event_loop()
    config = LLMSimConfig(models={"m": ModelBehaviour(ttft=0.02, itl=0.005, tokens=2)})
    runner, port = loop.run_until_complete(run_llm_sim(config))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/v1"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=30)
    loop.close()
