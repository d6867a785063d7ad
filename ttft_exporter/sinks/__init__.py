"""Sinks: where probe results and Flux events go. The Prometheus store is one; an
OpenTelemetry sink can be another. Probes and Flux know only the `Sink` protocol (or
`FluxEventSink`) and hand what they observed to a `FanOut`; nothing under `probes/` or
`flux/` imports a sink, prometheus_client or the OTel SDK (tests/unit/test_architecture.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from ttft_exporter.catalogue import DEFAULT_INTER_TOKEN_BUCKETS

if TYPE_CHECKING:
    from ttft_exporter.budget import Series
    from ttft_exporter.flux.events import FluxEvent
    from ttft_exporter.probes.base import ProbeResult
    from ttft_exporter.targets import TargetBase

__all__ = ["FanOut", "Sink", "budget_series"]


class Sink(Protocol):
    """A consumer of results and events. Every method runs on the event loop, inline
    with the probe or the Flux frame that produced it: it must not block (an exporting
    sink queues and returns)."""

    def on_target(self, target: TargetBase) -> None:
        """A target is configured (new, or changed): prepare its series."""

    def on_target_removed(self, name: str) -> None:
        """A target left the config: forget it."""

    def on_probe_result(self, target: TargetBase, result: ProbeResult, *, timeout: float) -> None:
        """One probe's result; `timeout` is the deadline it ran under."""

    def on_flux_event(self, event: FluxEvent) -> None:
        """One Flux event (see flux/events.py)."""

    def gap_bounds(self, target: str) -> tuple[float, ...] | None:
        """The boundaries the target's probes should bucket their inter-chunk gaps into,
        so this sink merges them exactly; None if the sink has no preference."""

    def budget_series(self, target: TargetBase) -> Series | None:
        """Where the cost guard's ledger (budget.py) writes the target's cost and budget
        series; None for a sink that does not keep them. NOTE: a seam kept from #10
        while the ledger writes series itself; it should become an event."""


class FanOut:
    """Hands every result and event to each sink in turn. A sink that raises does not
    keep the others from their copy; the first error is raised again afterwards, to
    the caller's own boundary (the probe loop's or the Flux frame guard's), as when
    there was one sink."""

    def __init__(self, sinks: Sequence[Sink] = ()) -> None:
        self.sinks: list[Sink] = list(sinks)

    def add(self, sink: Sink) -> None:
        """Attach one more sink."""
        self.sinks.append(sink)

    def on_target(self, target: TargetBase) -> None:
        """See Sink.on_target."""
        self._each(lambda sink: sink.on_target(target))

    def on_target_removed(self, name: str) -> None:
        """See Sink.on_target_removed."""
        self._each(lambda sink: sink.on_target_removed(name))

    def on_probe_result(self, target: TargetBase, result: ProbeResult, *, timeout: float) -> None:
        """See Sink.on_probe_result."""
        self._each(lambda sink: sink.on_probe_result(target, result, timeout=timeout))

    def on_flux_event(self, event: FluxEvent) -> None:
        """See Sink.on_flux_event (the frame hot path: one loop, no allocation, so
        `_each`'s loop is spelled out here rather than given a closure per frame)."""
        error: Exception | None = None
        for sink in self.sinks:
            try:
                sink.on_flux_event(event)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after every sink
                error = error or exc
        if error is not None:
            raise error

    def _each(self, call: Callable[[Sink], object]) -> None:
        """`call` on every sink; the first error is raised again after the last sink."""
        error: Exception | None = None
        for sink in self.sinks:
            try:
                call(sink)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after every sink
                error = error or exc
        if error is not None:
            raise error

    def budget_series(self, target: TargetBase) -> Series | None:
        """The first sink's budget series, if any sink keeps them."""
        for sink in self.sinks:
            series = sink.budget_series(target)
            if series is not None:
                return series
        return None

    def gap_bounds(self, target: str) -> tuple[float, ...]:
        """The first sink's preference, else the default inter-token buckets."""
        for sink in self.sinks:
            bounds = sink.gap_bounds(target)
            if bounds is not None:
                return bounds
        return DEFAULT_INTER_TOKEN_BUCKETS


def budget_series(sink: Sink, target: TargetBase) -> Series:
    """The series the cost guard writes for `target` through `sink`, or a stand-in that
    keeps nothing when no sink keeps them (the ledger decides all the same)."""
    series = sink.budget_series(target)
    return series if series is not None else _NoSeries()


class _NoSeries:
    """Budget series nobody keeps: the ledger still decides, nothing is shown."""

    def get(self, name: str, child: tuple[str, ...] = ()) -> float | None:
        return None

    def set(self, name: str, value: float, child: tuple[str, ...] = ()) -> None:
        return None

    def inc(self, name: str, amount: float = 1.0, child: tuple[str, ...] = ()) -> None:
        return None

    def clear(self, name: str) -> None:
        return None
