"""Runs one probe of one target to a recorded result: the global concurrency cap, the
deadline, the exception boundary, recording, history and one log line."""

from __future__ import annotations

import asyncio
import logging
import traceback

import aiohttp

from ttft_exporter.clock import Clock
from ttft_exporter.config import TargetConfig
from ttft_exporter.errors import FailureReason
from ttft_exporter.history import History, ProbeRecord
from ttft_exporter.logs import fields
from ttft_exporter.metrics import ExporterMetrics, MetricStore, record_result
from ttft_exporter.probes import get_prober
from ttft_exporter.probes.base import ProbeResult

__all__ = ["ProbeExecutor", "target_labels"]

log = logging.getLogger("ttft_exporter.probe")


def target_labels(target: TargetConfig) -> dict[str, str]:
    """The labels of every series of a target: ours first, then static ones sorted."""
    labels = {"target": target.name, "model": target.model, "protocol": target.protocol}
    labels.update(sorted(target.labels.items()))
    return labels


class ProbeExecutor:
    """Shared by the background loops and `/probe`."""

    def __init__(
        self,
        *,
        clock: Clock,
        concurrency: int,
        metrics: ExporterMetrics,
        history: History,
    ) -> None:
        self._clock = clock
        self._semaphore = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._metrics = metrics
        self.history = history

    def set_concurrency(self, concurrency: int) -> None:
        """Apply a new cap to probes that start from now on."""
        if concurrency != self._concurrency:
            self._semaphore = asyncio.Semaphore(concurrency)
            self._concurrency = concurrency

    async def run(
        self,
        target: TargetConfig,
        session: aiohttp.ClientSession,
        store: MetricStore,
        *,
        deadline: float | None = None,
    ) -> ProbeRecord:
        """Probe once, record into `store`, keep in history. Never raises but for
        cancellation: every failure becomes a failed result."""
        timeout = target.timeout if deadline is None else deadline
        async with self._semaphore:
            self._metrics.in_flight.inc()
            try:
                result, lines = await self._attempt(
                    target, session, timeout, store.buckets["inter_token"]
                )
            finally:
                self._metrics.in_flight.dec()
        series = store.ensure(target.name, target_labels(target))
        record_result(series, result, timeout=timeout)
        self._log(target, result)
        return self.history.add(target.name, result, lines)

    async def _attempt(
        self,
        target: TargetConfig,
        session: aiohttp.ClientSession,
        timeout: float,
        gap_bounds: tuple[float, ...],
    ) -> tuple[ProbeResult, list[str]]:
        try:
            # The store's own gap buckets, so the probe's gap histogram merges exactly.
            prepared = get_prober(target.protocol)(
                target, session, self._clock, gap_bounds=gap_bounds
            )
        except Exception as exc:
            log.exception("cannot prepare probe", extra=fields(target=target.name))
            return ProbeResult(
                False,
                FailureReason.INTERNAL,
                f"cannot prepare probe: {type(exc).__name__}",
            ), []
        try:
            async with asyncio.timeout(timeout):
                result = await prepared.run()
        except Exception as exc:  # noqa: BLE001 - the probe boundary turns every error into data
            result = prepared.failure(exc, timeout)
            if result.reason is FailureReason.INTERNAL:
                # A bug: log the traceback, with secrets redacted like everything else.
                trace = target.redactor.cut("".join(traceback.format_exception(exc)), 16384)
                log.error(
                    "probe raised an unexpected error",
                    extra=fields(target=target.name, err=trace),
                )
        return result, prepared.log

    def _log(self, target: TargetConfig, result: ProbeResult) -> None:
        if result.success:
            log.debug(
                "probe succeeded",
                extra=fields(
                    target=target.name,
                    ttft_seconds=round(result.time_to_first_token or 0.0, 6),
                    duration_seconds=round(result.duration or 0.0, 6),
                    output_tokens=result.output_tokens,
                ),
            )
        else:
            log.warning(
                "probe failed",
                extra=fields(
                    target=target.name,
                    reason=result.reason.value if result.reason else "internal",
                    err=result.detail,
                    duration_seconds=round(result.elapsed, 6),
                ),
            )
