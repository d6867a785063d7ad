"""A prometheus_client Collector over the series store, so that tests (and anyone
with a registry) can read the store through `registry.get_sample_value` and
`generate_latest`. /metrics keeps the hand-written renderer: this path is ~40x slower."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import Exemplar, Metric
from prometheus_client.registry import Collector

from ttft_exporter.catalogue import PROBE_METRICS, Kind
from ttft_exporter.sinks.prometheus.series import MetricStore

__all__ = ["StoreCollector"]


class StoreCollector(Collector):
    """Every family of the catalogue's PROBE_METRICS, with every target's samples, as
    the store holds them at collection time."""

    def __init__(self, store: MetricStore, registry: CollectorRegistry | None = None) -> None:
        self.store = store
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterator[Metric]:
        targets = list(self.store.series.values())
        for spec in PROBE_METRICS:
            # prometheus_client names a counter family without `_total` and adds it
            # back to the samples and headers it writes.
            family = spec.name.removesuffix("_total") if spec.kind is Kind.COUNTER else spec.name
            metric = Metric(family, spec.help, spec.kind.value)
            for series in targets:
                for name, labels, value, found in series.samples(spec):
                    # The classic text exposition leaves exemplars out; OpenMetrics
                    # shows them, as the hand-written renderer does.
                    exemplar = (
                        None
                        if found is None
                        else Exemplar(found.labels, found.value, found.timestamp)
                    )
                    metric.add_sample(name, labels, value, exemplar=exemplar)
            yield metric
