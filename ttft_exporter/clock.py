"""Clocks: a monotonic one for every interval, a wall one only for timestamps."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["AsyncioSleeper", "Clock", "Sleeper", "SystemClock"]


class Clock(Protocol):
    """What measurement code needs from time; injectable so tests can fake it."""

    def monotonic_ns(self) -> int:
        """Monotonic nanoseconds, for every duration."""
        ...

    def wall(self) -> float:
        """Unix seconds, only for `*_timestamp_seconds` metrics."""
        ...


class SystemClock:
    """The real clocks: `perf_counter_ns` for durations, `time.time` for timestamps."""

    def monotonic_ns(self) -> int:
        return time.perf_counter_ns()

    def wall(self) -> float:
        return time.time()


class Sleeper(Protocol):
    """Waiting on the clock; injectable so tests can move a fake clock on instead of
    sleeping for real (the cold probe waits minutes)."""

    async def sleep(self, seconds: float) -> None:
        """Return after `seconds` (at once when not above 0)."""
        ...


class AsyncioSleeper:
    """The real wait: `asyncio.sleep`."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))
