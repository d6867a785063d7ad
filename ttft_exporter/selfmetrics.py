"""The exporter's own metrics (EXPORTER_METRICS of the catalogue) as prometheus_client
objects: build info, reloads, in-flight probes, the HTTP server, loop lag and CPU
throttling, with the process, platform and GC collectors."""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    gc_collector,
    platform_collector,
    process_collector,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from ttft_exporter import __version__
from ttft_exporter.catalogue import EXPORTER_METRICS, LOOP_LAG_BUCKETS, MetricSpec
from ttft_exporter.cgroup import CPUThrottling

__all__ = ["ExporterMetrics", "ThrottlingCollector"]


class ExporterMetrics:
    """The exporter's own metrics (EXPORTER_METRICS), as prometheus_client objects in
    a registry of their own, with the process, platform and GC collectors."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        # `_created` series double the series count for no use in PromQL; the probe
        # store does not emit them either.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        specs = {spec.name: spec for spec in EXPORTER_METRICS}

        def gauge(name: str) -> Gauge:
            spec = specs[name]
            return Gauge(name, spec.help, spec.labels, registry=self.registry)

        self.build_info = gauge("ttft_exporter_build_info")
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.reload_successful = gauge("ttft_exporter_config_last_reload_successful")
        self.reload_timestamp = gauge("ttft_exporter_config_last_reload_success_timestamp_seconds")
        self.in_flight = gauge("ttft_exporter_probes_in_flight")
        spec = specs["ttft_exporter_probes_skipped_total"]
        self.skipped = Counter(spec.name, spec.help, spec.labels, registry=self.registry)
        spec = specs["ttft_exporter_target_unknown_total"]
        self.target_unknown = Counter(spec.name, spec.help, registry=self.registry)
        spec = specs["ttft_exporter_background_errors_total"]
        self.background_errors = Counter(spec.name, spec.help, spec.labels, registry=self.registry)
        self.background_down = gauge("ttft_exporter_background_down")
        self.adhoc_rejected = self._counter(specs["ttft_exporter_adhoc_probes_rejected_total"])
        self.http_connections = gauge("ttft_exporter_http_connections")
        self.http_dropped = self._counter(specs["ttft_exporter_http_connections_dropped_total"])
        self.http_accept_errors = self._counter(specs["ttft_exporter_http_accept_errors_total"])
        self.http_unauthorized = self._counter(specs["ttft_exporter_http_unauthorized_total"])
        # Incremented from the OTel SDK's exporter threads (prometheus_client's
        # counters take a lock): sinks/otel/providers.py.
        self.otlp_export_failures = self._counter(specs["ttft_exporter_otlp_export_failures_total"])
        spec = specs["ttft_exporter_event_loop_lag_seconds"]
        self.loop_lag = Histogram(
            spec.name, spec.help, registry=self.registry, buckets=LOOP_LAG_BUCKETS
        )
        self.cpu_throttling = ThrottlingCollector(specs, registry=self.registry)
        process_collector.ProcessCollector(registry=self.registry)
        platform_collector.PlatformCollector(registry=self.registry)
        gc_collector.GCCollector(registry=self.registry)

    def _counter(self, spec: MetricSpec) -> Counter:
        """A counter of the catalogue with every labelled child created at 0."""
        counter = Counter(spec.name, spec.help, spec.labels, registry=self.registry)
        for child in spec.children:
            counter.labels(*child)
        return counter


class ThrottlingCollector(Collector):
    """The cgroup's CPU throttling counters as last sampled (looplag.LoopLagMonitor
    sets `sample`); nothing at all, not zeros, while there is no sample. No I/O at
    scrape time."""

    _NAMES = (
        "ttft_exporter_cpu_periods_total",
        "ttft_exporter_cpu_throttled_periods_total",
        "ttft_exporter_cpu_throttled_seconds_total",
    )

    def __init__(
        self, specs: Mapping[str, MetricSpec], registry: CollectorRegistry | None = None
    ) -> None:
        self._help = {name: specs[name].help for name in self._NAMES}
        self.sample: CPUThrottling | None = None
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterable[CounterMetricFamily]:
        # The names, for the registry's duplicate check, whether or not sampled yet.
        return [CounterMetricFamily(name, self._help[name], value=0.0) for name in self._NAMES]

    def collect(self) -> Iterable[CounterMetricFamily]:
        sample = self.sample
        if sample is None:
            return []
        values = (sample.periods, sample.throttled_periods, sample.throttled_seconds)
        return [
            CounterMetricFamily(name, self._help[name], value=float(value))
            for name, value in zip(self._NAMES, values, strict=True)
        ]
