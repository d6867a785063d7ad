"""Tests for ttft_exporter.limiter: a cap that can change while slots are held. No
clocks: every step is driven by awaiting the event loop, so load cannot matter."""

from __future__ import annotations

import asyncio

import pytest

from ttft_exporter.limiter import CapacityLimiter


async def settle() -> None:
    """Let every runnable task take its next step."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_holds_at_most_capacity_and_serves_in_order() -> None:
    limiter = CapacityLimiter(2)
    order: list[int] = []
    release = asyncio.Event()

    async def worker(n: int) -> None:
        async with limiter:
            order.append(n)
            await release.wait()

    tasks = [asyncio.create_task(worker(n)) for n in range(5)]
    await settle()
    assert (limiter.in_use, limiter.waiting, order) == (2, 3, [0, 1])
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert limiter.in_use == 0


async def test_lowering_the_capacity_never_adds_up_old_and_new_holders() -> None:
    # The reload case: 3 probes hold slots under cap 3, the cap drops to 1. No new
    # probe may start until the holders are down to 0; then one at a time.
    limiter = CapacityLimiter(3)
    gates = [asyncio.Event() for _ in range(6)]
    running: list[int] = []
    peak = 0

    async def worker(n: int) -> None:
        nonlocal peak
        async with limiter:
            running.append(n)
            peak = max(peak, len(running))
            await gates[n].wait()
            running.remove(n)

    old = [asyncio.create_task(worker(n)) for n in range(3)]
    await settle()
    limiter.capacity = 1
    new = [asyncio.create_task(worker(n)) for n in range(3, 6)]
    await settle()
    assert running == [0, 1, 2]
    gates[0].set()
    await settle()
    assert running == [1, 2]  # two old holders left, over the new cap: nothing new
    gates[1].set()
    await settle()
    assert running == [2]  # still one old holder: nothing new starts
    gates[2].set()
    await settle()
    assert running == [3]
    for n in (3, 4, 5):
        gates[n].set()
        await settle()
        assert len(running) <= 1
    await asyncio.gather(*old, *new)
    assert peak == 3  # the old holders, never old + new


async def test_raising_the_capacity_wakes_waiters() -> None:
    limiter = CapacityLimiter(1)
    await limiter.acquire()
    waiters = [asyncio.create_task(limiter.acquire()) for _ in range(2)]
    await settle()
    assert limiter.waiting == 2
    limiter.capacity = 3
    await asyncio.gather(*waiters)
    assert limiter.in_use == 3


async def test_a_cancelled_waiter_gives_its_slot_back() -> None:
    limiter = CapacityLimiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await settle()
    # Hand the slot over and cancel in the same turn: the slot must not leak.
    limiter.release()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.in_use == 0
    await asyncio.wait_for(limiter.acquire(), 1.0)


async def test_a_waiter_cancelled_while_waiting_leaves_the_queue() -> None:
    limiter = CapacityLimiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.waiting == 0
    limiter.release()
    assert limiter.in_use == 0


def test_misuse_fails_loudly() -> None:
    with pytest.raises(ValueError, match="capacity must be at least 1"):
        CapacityLimiter(0)
    limiter = CapacityLimiter(1)
    with pytest.raises(RuntimeError, match="more often than acquire"):
        limiter.release()
