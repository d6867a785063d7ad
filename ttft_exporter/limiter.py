"""A counting limiter whose capacity can change while slots are held: one instance for
the life of the app, so a reload that changes the cap never lets probes started under
the old cap and probes started under the new one add up past it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from types import TracebackType

__all__ = ["CapacityLimiter"]


class CapacityLimiter:
    """Like `asyncio.Semaphore`, but `capacity` may be changed at any time.

    Lowering it never interrupts holders: new acquirers wait until the number of
    holders has dropped below the new capacity. Waiters are served first come, first
    served, so a stream of new arrivals cannot starve an early waiter.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._in_use = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def capacity(self) -> int:
        """Most holders at once."""
        return self._capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"capacity must be at least 1, got {value}")
        self._capacity = value
        self._wake()

    @property
    def in_use(self) -> int:
        """Holders now."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Acquirers waiting now."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    async def acquire(self) -> None:
        """Take a slot, waiting for one if all are held."""
        if self._in_use < self._capacity and not self._waiters:
            self._in_use += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as we were cancelled: give it back.
                self.release()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back."""
        if self._in_use <= 0:
            raise RuntimeError("CapacityLimiter.release() called more often than acquire()")
        self._in_use -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_use < self._capacity:
            waiter = self._waiters.popleft()
            if not waiter.done():
                # The slot is counted here, on the waiter's behalf, so nobody else
                # can take it between now and the moment the waiter resumes.
                self._in_use += 1
                waiter.set_result(None)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
