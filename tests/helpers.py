"""Small helpers shared by tests: free loopback ports, the real binaries the test
command installs, and bounded polling."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

__all__ = ["ManualClock", "free_port", "poll", "require_tool"]


class ManualClock:
    """A Clock that moves only when told to: `advance(seconds)`."""

    def __init__(self, wall: float = 1_771_065_045.0) -> None:
        self.now_ns = 0
        self._wall = wall

    def advance(self, seconds: float) -> None:
        self.now_ns += int(seconds * 1e9)

    def monotonic_ns(self) -> int:
        return self.now_ns

    def wall(self) -> float:
        return self._wall + self.now_ns * 1e-9


def free_port() -> int:
    """A loopback port that was free a moment ago (for servers that need a fixed one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def require_tool(tool: str, package: str) -> str:
    """The path of a real binary; fails (never skips) when it is missing, because the
    test command (.ci/run) installs it."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"{tool} is not on PATH: install Debian's {package} package "
            f"(apt-get install -y --no-install-recommends {package}), as .ci/run does"
        )
    return path


async def poll(
    check: Callable[[], Awaitable[Any]], what: str, cap: float, step: float = 0.1
) -> Any:
    """Await `check()` until it returns something truthy; fail after `cap` seconds."""
    deadline = time.monotonic() + cap
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {cap}s waiting for {what}")
        await asyncio.sleep(step)
