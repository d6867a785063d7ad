"""The Prometheus sink: probe results into the series store, Flux events into the Flux
families of the exporter's registry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry

from ttft_exporter.flux.events import FluxEvent
from ttft_exporter.probes.base import ProbeResult
from ttft_exporter.sinks.prometheus.flux import FluxMetrics
from ttft_exporter.sinks.prometheus.record import record_result
from ttft_exporter.sinks.prometheus.series import MetricStore, SeriesSet
from ttft_exporter.targets import TargetBase, target_labels

__all__ = ["PrometheusSink"]


class PrometheusSink:
    """Feeds `store` (per-target series) and, once `configure_flux` has run, the Flux
    families registered in `registry`."""

    def __init__(self, store: MetricStore, registry: CollectorRegistry | None = None) -> None:
        self.store = store
        self.registry = registry
        self.flux: FluxMetrics | None = None

    # --- probes --------------------------------------------------------------------

    def on_target(self, target: TargetBase) -> None:
        """Create the target's series (closed enums at 0)."""
        self.store.ensure(target.name, target_labels(target))

    def on_target_removed(self, name: str) -> None:
        """Drop the series of a target that left the config."""
        self.store.remove(name)

    def on_probe_result(self, target: TargetBase, result: ProbeResult, *, timeout: float) -> None:
        """Record one result into the target's series."""
        series = self.store.ensure(target.name, target_labels(target))
        record_result(series, result, timeout=timeout, drop_suspect=target.on_suspect == "drop")

    def budget_series(self, target: TargetBase) -> SeriesSet:
        """The target's series: the cost guard writes its cost and budget families."""
        return self.store.ensure(target.name, target_labels(target))

    def gap_bounds(self, target: str) -> tuple[float, ...]:
        """The target's own inter-token boundaries, so its gaps merge exactly."""
        return self.store.layout(target).buckets["inter_token"]

    # --- Flux ------------------------------------------------------------------------

    def flux_buckets_differ(self, buckets: Mapping[str, Sequence[float]]) -> bool:
        """Whether `configure_flux(buckets)` would start the Flux families again."""
        return self.flux is None or {k: tuple(v) for k, v in buckets.items()} != self.flux.buckets

    def configure_flux(self, buckets: Mapping[str, Sequence[float]]) -> None:
        """Register the Flux families with these boundaries, replacing older ones:
        histogram boundaries are fixed per family, so they start again. Stop every
        Flux monitor first; the started ones announce themselves again."""
        if self.registry is None:
            raise RuntimeError("PrometheusSink without a registry cannot record Flux")
        if self.flux is not None:
            self.flux.unregister()
        self.flux = FluxMetrics(self.registry, buckets)

    def on_flux_event(self, event: FluxEvent) -> None:
        """Record one Flux event (ignored until configure_flux)."""
        if self.flux is not None:
            self.flux.on_flux_event(event)
