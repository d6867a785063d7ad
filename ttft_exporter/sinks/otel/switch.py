"""The stand-in the exporter always has in its fan-out for OTel: it forwards to the
sink of the running `otel:` section, or does nothing when there is none. A reload with
a changed section builds the new providers in a worker thread, swaps them in, and shuts
the old ones down in another (their last export may take up to `timeout`) without
holding up the loop or the reload. Imports no SDK: `sink` is imported on first use."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ttft_exporter.logs import fields
from ttft_exporter.sinks.otel.config import OTelConfig
from ttft_exporter.sinks.otel.sdklog import redact_sdk_logs

if TYPE_CHECKING:
    from ttft_exporter.budget import Series
    from ttft_exporter.flux.events import FluxEvent
    from ttft_exporter.probes.base import ProbeResult
    from ttft_exporter.sinks.otel.sink import OTelSink
    from ttft_exporter.targets import TargetBase

__all__ = ["OTelSwitch", "OTelUnavailableError"]

log = logging.getLogger("ttft_exporter.otel")

SDK_MISSING = (
    "`otel:` is set but the OpenTelemetry SDK is not installed: pip install 'ttft-exporter[otel]'"
)


class OTelUnavailableError(RuntimeError):
    """`otel:` is set and its sink cannot be built (the `otel` extra is missing)."""


class OTelSwitch:
    """A Sink forwarding to the current OTel sink, if any; see the module doc."""

    def __init__(self, count_failure: Callable[[str], None], wall: Callable[[], float]) -> None:
        self._count_failure = count_failure
        self._wall = wall
        self.sink: OTelSink | None = None
        self._key: tuple[OTelConfig, Any] | None = None
        # By (name, scenario): every scenario's copy of a target is announced.
        self._targets: dict[tuple[str, str], TargetBase] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        """Whether an OTel sink is running."""
        return self.sink is not None

    @property
    def traces_on(self) -> bool:
        """Whether the running sink exports spans (the executor then draws each
        probe's trace and span ids, which the spans and the exemplars share)."""
        return self.sink is not None and self.sink.traces is not None

    async def apply(
        self, config: OTelConfig | None, bucket_overrides: Mapping[str, Sequence[float]]
    ) -> None:
        """Run the sink of `config` (None: none). Unchanged, nothing happens; changed
        (a field, a rotated header secret, the histogram boundaries), the providers are
        rebuilt. Raises OTelUnavailableError when the SDK is missing."""
        overrides = {k: tuple(v) for k, v in bucket_overrides.items()}
        key = None if config is None else (config, overrides)
        if key == self._key:
            return
        new = None
        if config is not None:
            try:
                from ttft_exporter.sinks.otel.sink import build_sink
            except ImportError as exc:
                raise OTelUnavailableError(SDK_MISSING) from exc
            # Before the first export: the SDK logs failures with the response body.
            redact_sdk_logs(config.header_secrets())
            new = await asyncio.to_thread(
                build_sink,
                config,
                count_failure=self._count_failure,
                wall=self._wall,
                bucket_overrides=overrides,
            )
            for target in self._targets.values():
                new.on_target(target)
            log.info(
                "OTLP export on",
                extra=fields(
                    protocol=config.resolved_protocol(),
                    metrics=config.metrics,
                    traces=config.traces,
                ),
            )
        old, self.sink, self._key = self.sink, new, key
        if old is not None:
            task = asyncio.create_task(asyncio.to_thread(old.shutdown), name="otel shutdown")
            self._stopping.add(task)
            task.add_done_callback(self._stopped)
        if config is None and old is not None:
            log.info("OTLP export off")

    def _stopped(self, task: asyncio.Task[None]) -> None:
        self._stopping.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "shutting down the old OTel providers failed",
                extra=fields(err=type(task.exception()).__name__),
            )

    async def close(self) -> None:
        """Stop the running sink (its last export included) and wait for the old ones."""
        if self.sink is not None:
            sink, self.sink, self._key = self.sink, None, None
            await asyncio.to_thread(sink.shutdown)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    # --- Sink --------------------------------------------------------------------

    def on_target(self, target: TargetBase) -> None:
        self._targets[target.name, target.scenario] = target
        if self.sink is not None:
            self.sink.on_target(target)

    def on_target_removed(self, name: str) -> None:
        for key in [key for key in self._targets if key[0] == name]:
            del self._targets[key]
        if self.sink is not None:
            self.sink.on_target_removed(name)

    def on_probe_result(self, target: TargetBase, result: ProbeResult, *, timeout: float) -> None:
        if self.sink is not None:
            self.sink.on_probe_result(target, result, timeout=timeout)

    def on_flux_event(self, event: FluxEvent) -> None:
        if self.sink is not None:
            self.sink.on_flux_event(event)

    def gap_bounds(self, target: str) -> tuple[float, ...] | None:
        return None

    def budget_series(self, target: TargetBase) -> Series | None:
        return None
