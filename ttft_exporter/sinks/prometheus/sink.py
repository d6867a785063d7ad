"""The Prometheus sink: probe results into the series store, Flux events into the Flux
families of the exporter's registry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry

from ttft_exporter.budget import EXHAUSTED, SPENT
from ttft_exporter.flux.events import FluxEvent
from ttft_exporter.probes.base import ProbeResult
from ttft_exporter.scenarios import COLD_SCENARIO
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
        """Create the series of each scenario the target probes (closed enums at 0);
        drop those of scenarios it no longer has (the cold one's appear with its first
        probe)."""
        wanted = {probed.scenario for probed in target.probe_targets()}
        if target.cold is not None:
            wanted.add(COLD_SCENARIO)
        for name, scenario in list(self.store.series):
            if name == target.name and scenario not in wanted:
                self.store.remove(name, scenario)
        for probed in target.probe_targets():
            self.store.ensure(target.name, target_labels(probed), probed.scenario)

    def on_target_removed(self, name: str) -> None:
        """Drop the series of a target that left the config."""
        self.store.remove(name)

    def on_probe_result(self, target: TargetBase, result: ProbeResult, *, timeout: float) -> None:
        """Record one result into the series of the target's scenario."""
        series = self.store.ensure(target.name, target_labels(target), target.scenario)
        record_result(series, result, timeout=timeout, drop_suspect=target.on_suspect == "drop")

    def budget_series(self, target: TargetBase) -> _BudgetSeries:
        """Where the cost guard writes: the scenario's own series for its cost and
        skipped ticks, and every scenario's series of the target for the target-wide
        budget gauges (one budget per target, whatever scenario spent it)."""
        own = self.store.ensure(target.name, target_labels(target), target.scenario)
        return _BudgetSeries(self.store, target.name, own)

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


# The cost guard's families that describe the target's one budget, not a scenario's.
_SHARED = frozenset({EXHAUSTED, SPENT})


class _BudgetSeries:
    """A scenario's series as the ledger sees it: the shared budget gauges are written
    to (and cleared from) every scenario of the target alike."""

    def __init__(self, store: MetricStore, name: str, own: SeriesSet) -> None:
        self._store = store
        self._name = name
        self._own = own

    def _targets(self, family: str) -> list[SeriesSet]:
        return self._store.of_target(self._name) if family in _SHARED else [self._own]

    def get(self, name: str, child: tuple[str, ...] = ()) -> float | None:
        return self._own.get(name, child)

    def set(self, name: str, value: float, child: tuple[str, ...] = ()) -> None:
        for series in self._targets(name):
            series.set(name, value, child)

    def inc(self, name: str, amount: float = 1.0, child: tuple[str, ...] = ()) -> None:
        self._own.inc(name, amount, child)

    def clear(self, name: str) -> None:
        for series in self._targets(name):
            series.clear(name)
