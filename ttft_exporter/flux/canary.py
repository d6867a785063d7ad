"""The active checks of a Flux instance: a canary event published every interval and
timed until its state_update comes back over the WebSocket, and a timed read."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

import aiohttp
import orjson

from ttft_exporter.clock import Clock
from ttft_exporter.errors import CanaryFailureError, FluxCanaryReason
from ttft_exporter.flux.config import FluxInstanceConfig
from ttft_exporter.flux.events import CanaryChecked, CanaryPublished, FluxEventSink, ReadChecked
from ttft_exporter.flux.monitor import FluxMonitor
from ttft_exporter.logs import fields

__all__ = ["CanaryFailureError", "CanaryOutcome", "FluxCanary", "FluxQuery", "classify_status"]

log = logging.getLogger("ttft_exporter.flux.canary")

_NS = 1e-9


@dataclass(frozen=True, slots=True)
class CanaryOutcome:
    """The last canary check, for the index page: `reason` is None on success."""

    at: float  # wall clock, seconds
    propagation: float | None
    reason: FluxCanaryReason | None


def classify_status(status: int) -> FluxCanaryReason | None:
    """The failure reason of a publish status (None for success)."""
    if 200 <= status < 300:
        return None
    if status in (401, 403):
        return FluxCanaryReason.AUTH
    if status == 429:
        return FluxCanaryReason.RATE_LIMITED
    if 400 <= status < 500:
        return FluxCanaryReason.HTTP_4XX
    return FluxCanaryReason.HTTP_5XX


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date; Flux sends seconds (Retry-After: 60)


class FluxCanary:
    """Publishes `POST /api/events` and waits for the monitor to see the update."""

    def __init__(
        self,
        config: FluxInstanceConfig,
        monitor: FluxMonitor,
        sink: FluxEventSink,
        session: aiohttp.ClientSession,
        clock: Clock,
    ) -> None:
        if config.canary is None or config.canary_entity is None:
            raise ValueError(f"flux instance {config.name!r} has no canary configured")
        self.config = config
        self.canary = config.canary
        self.entity = config.canary_entity
        self._monitor = monitor
        self._sink = sink
        self._session = session
        self._clock = clock
        # Start from the wall clock in ms: after an exporter restart the property must
        # still change, or Flux would have nothing to send.
        self.seq = int(clock.wall() * 1000)
        self._paused_until_ns = 0
        self.last: CanaryOutcome | None = None

    async def run(self) -> None:
        """Check every interval until cancelled."""
        loop = asyncio.get_running_loop()
        interval = self.canary.interval
        await asyncio.sleep(random.uniform(0, min(interval, 2.0)))
        next_tick = loop.time()
        while True:
            if self._clock.monotonic_ns() >= self._paused_until_ns:
                await self.check_once()
            next_tick += interval
            now = loop.time()
            if next_tick < now:
                next_tick = now + interval
            await asyncio.sleep(next_tick - now)

    async def check_once(self) -> float | None:
        """One canary: returns the propagation seconds, or None on failure (recorded)."""
        try:
            propagation = await self._check()
        except CanaryFailureError as exc:
            self._sink.on_flux_event(CanaryChecked(self.config.name, None, exc.reason))
            self.last = CanaryOutcome(self._clock.wall(), None, exc.reason)
            if exc.retry_after is not None:
                # Honour Flux's Retry-After: publishing again sooner only burns tokens.
                self._paused_until_ns = self._clock.monotonic_ns() + int(exc.retry_after * 1e9)
            log.warning(
                "flux canary failed",
                extra=fields(
                    flux=self.config.name,
                    reason=exc.reason,
                    err=self.config.redactor.cut(exc.detail, 300),
                ),
            )
            return None
        self._sink.on_flux_event(CanaryChecked(self.config.name, propagation, None))
        self.last = CanaryOutcome(self._clock.wall(), propagation, None)
        return propagation

    async def _check(self) -> float:
        self.seq += 1
        seq = self.seq
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._monitor.canary_waiters[seq] = waiter
        start_ns = self._clock.monotonic_ns()
        acked = False
        try:
            async with asyncio.timeout(self.canary.timeout):
                await self._publish(seq, start_ns)
                acked = True
                arrived_ns = await waiter
        except TimeoutError:
            if acked:
                raise CanaryFailureError(
                    FluxCanaryReason.NOT_PROPAGATED,
                    f"no state_update for seq {seq} within {self.canary.timeout:g}s",
                ) from None
            raise CanaryFailureError(
                FluxCanaryReason.TIMEOUT, f"no acknowledgement within {self.canary.timeout:g}s"
            ) from None
        finally:
            self._monitor.canary_waiters.pop(seq, None)
            if not waiter.done():
                waiter.cancel()
        return (arrived_ns - start_ns) * _NS

    async def _publish(self, seq: int, start_ns: int) -> None:
        body = {
            "stream": self.canary.stream,
            "source": self.canary.source,
            "timestamp": int(self._clock.wall() * 1000),
            "key": self.entity,
            "payload": {"entity_id": self.entity, "properties": {"seq": seq}},
        }
        headers = {"Content-Type": "application/json"}
        token = self.canary.token
        if token is not None:
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        try:
            async with self._session.post(
                f"{self.config.url}/api/events", data=orjson.dumps(body), headers=headers
            ) as response:
                # A bounded read may end inside an echoed token: the redactor also
                # removes any 8+ character prefix of one.
                text = (await response.content.read(512)).decode("utf-8", "replace")
                acked_ns = self._clock.monotonic_ns()
                reason = classify_status(response.status)
                if reason is not None:
                    retry = (
                        _retry_after(response.headers.get("Retry-After"))
                        if reason is FluxCanaryReason.RATE_LIMITED
                        else None
                    )
                    # Redacted before it is cut, so no part of an echoed token survives.
                    detail = self.config.redactor.cut(f"HTTP {response.status}: {text}", 300)
                    raise CanaryFailureError(reason, detail, retry)
        except (aiohttp.ClientConnectionError, OSError) as exc:
            text = self.config.redactor.cut(str(exc), 200)
            if isinstance(exc, aiohttp.ServerTimeoutError):
                raise CanaryFailureError(FluxCanaryReason.TIMEOUT, text) from None
            raise CanaryFailureError(FluxCanaryReason.CONNECT, text or type(exc).__name__) from None
        except aiohttp.ClientError as exc:
            # What remains is an answer that is not HTTP: a bad status line or headers
            # (ClientResponseError), a broken body (ClientPayloadError). Issue #8.
            detail = self.config.redactor.cut(str(exc), 200)
            raise CanaryFailureError(
                FluxCanaryReason.PROTOCOL, detail or type(exc).__name__
            ) from None
        self._sink.on_flux_event(CanaryPublished(self.config.name, (acked_ns - start_ns) * _NS))


class FluxQuery:
    """Times `GET /api/state/entities?prefix=...` every interval."""

    def __init__(
        self,
        config: FluxInstanceConfig,
        sink: FluxEventSink,
        session: aiohttp.ClientSession,
        clock: Clock,
    ) -> None:
        if config.query is None:
            raise ValueError(f"flux instance {config.name!r} has no query check configured")
        self.config = config
        self.query = config.query
        self._sink = sink
        self._session = session
        self._clock = clock

    async def run(self) -> None:
        """Read every interval until cancelled."""
        while True:
            await self.check_once()
            await asyncio.sleep(self.query.interval)

    async def check_once(self) -> float | None:
        """One timed read; returns seconds, or None on failure (counted)."""
        start = self._clock.monotonic_ns()
        try:
            async with asyncio.timeout(min(self.query.interval, 10.0)):
                async with self._session.get(
                    f"{self.config.url}/api/state/entities", params={"prefix": self.query.prefix}
                ) as response:
                    body = await response.read()
                    if response.status != 200:
                        raise ValueError(f"HTTP {response.status}")
                    if not isinstance(orjson.loads(body), list):
                        raise ValueError("not a JSON array")
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            self._sink.on_flux_event(ReadChecked(self.config.name, None))
            log.warning(
                "flux read check failed",
                extra=fields(flux=self.config.name, err=self.config.redactor.cut(str(exc), 200)),
            )
            return None
        seconds = (self._clock.monotonic_ns() - start) * _NS
        self._sink.on_flux_event(ReadChecked(self.config.name, seconds))
        return seconds
