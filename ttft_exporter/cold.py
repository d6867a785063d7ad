"""The cold probe of a target (issue #10): every `cold.every`, hold the target's other
probes off until it has been idle for `cold.idle`, send one probe labelled
`scenario="cold"`, then let the others resume. It measures what a user meets after a
quiet spell: a scale from zero, a model swapped out, a cold cache."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from ttft_exporter.clock import Clock, Sleeper
from ttft_exporter.logs import fields
from ttft_exporter.scenarios import ColdConfig

__all__ = ["MAX_HOLD_FACTOR", "ColdCycle", "HoldGate", "IdleSource"]

log = logging.getLogger("ttft_exporter.scheduler")

MAX_HOLD_FACTOR = 2.0
"""The longest hold is this many times `idle`: an ad-hoc probe of the target during
the hold restarts the wait for idleness, and a stream of them must not hold the
target's regular probes off for ever. Past it, the cold probe is sent anyway and its
`ttft_probe_idle_before_seconds` shows the shorter idle time it got."""


class IdleSource(Protocol):
    """What the cold cycle needs from the executor."""

    async def wait_idle(self, name: str) -> None:
        """Return once the target has no probe in flight."""
        ...

    def last_probe_end_ns(self, name: str) -> int | None:
        """When the target's last probe ended, on the cycle's clock."""
        ...


class HoldGate:
    """Whether a target's regular probes are held off (its cold probe is pending)."""

    def __init__(self) -> None:
        self.held = False


class ColdCycle:
    """The cold probe loop of one target. `probe(idle_seconds)` sends the cold probe
    and records the idle time it got; `clock` must be the executor's (the one that
    stamps the end of every probe) and `sleeper` waits on it."""

    def __init__(
        self,
        name: str,
        config: ColdConfig,
        *,
        gate: HoldGate,
        executor: IdleSource,
        clock: Clock,
        sleeper: Sleeper,
        probe: Callable[[float], Awaitable[object]],
    ) -> None:
        self._name = name
        self._config = config
        self._gate = gate
        self._executor = executor
        self._clock = clock
        self._sleeper = sleeper
        self._probe = probe

    async def _sleep_until(self, when_ns: int) -> None:
        await self._sleeper.sleep((when_ns - self._clock.monotonic_ns()) / 1e9)

    async def run(self) -> None:
        """Forever: hold, wait for idleness, probe, release. The first cold probe is
        due `every` after start (the exporter knows nothing of the time before)."""
        # Integer nanoseconds throughout: the idle time reported is exact.
        every, idle = _ns(self._config.every), _ns(self._config.idle)
        started = self._clock.monotonic_ns()
        due = started + every
        while True:
            await self._sleep_until(due - idle)
            self._gate.held = True
            log.debug("holding probes for the cold probe", extra=fields(target=self._name))
            try:
                idle_for = await self._wait_for_idle(due, started)
                await self._probe(idle_for / 1e9)
            finally:
                self._gate.held = False
            due += every
            now = self._clock.monotonic_ns()
            if due - idle < now:
                # Fell behind (a hold that ran long, a suspended process): realign.
                due = now + every

    async def _wait_for_idle(self, due: int, started: int) -> int:
        """Wait until the cold probe is due and the target has been idle for `idle`
        (at most MAX_HOLD_FACTOR x idle past the start of the hold); the idle time
        reached, in nanoseconds."""
        idle = _ns(self._config.idle)
        give_up = self._clock.monotonic_ns() + _ns(MAX_HOLD_FACTOR * self._config.idle)
        while True:
            # The regular probe in flight when the hold began ends by its deadline.
            await self._executor.wait_idle(self._name)
            last = self._executor.last_probe_end_ns(self._name)
            # Never probed since the exporter started: idle, as far as it knows, since
            # this cycle started.
            quiet_since = last if last is not None else started
            now = self._clock.monotonic_ns()
            ready = max(due, quiet_since + idle)
            if now >= ready or now >= give_up:
                if now < ready:
                    log.warning(
                        "cold probe sent before the target was idle long enough: other "
                        "probes of it kept it busy",
                        extra=fields(
                            target=self._name, idle_seconds=round((now - quiet_since) / 1e9, 3)
                        ),
                    )
                return now - quiet_since
            await self._sleep_until(min(ready, give_up))


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)
