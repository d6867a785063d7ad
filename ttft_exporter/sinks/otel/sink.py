"""The OTel sink: one `otel:` section's providers, the metrics and the spans of every
probe result and Flux event. Imports the SDK: loaded only when `otel:` is set."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ttft_exporter.budget import Series
from ttft_exporter.flux.events import FluxEvent
from ttft_exporter.probes.base import ProbeResult
from ttft_exporter.sinks.otel.config import OTelConfig
from ttft_exporter.sinks.otel.metrics import OTelMetrics
from ttft_exporter.sinks.otel.providers import FailureCounter, Providers, build_providers
from ttft_exporter.sinks.otel.semconv import Attributes, target_attributes
from ttft_exporter.sinks.otel.traces import ProbeIds, ProbeTraces
from ttft_exporter.targets import TargetBase

__all__ = ["OTelSink", "build_sink"]

_SCOPE = "ttft_exporter"


class OTelSink:
    """A Sink (sinks.Sink) that records into the OTel SDK. Every method runs on the
    loop and only aggregates in memory or queues a span (bounded)."""

    def __init__(self, providers: Providers, wall: Callable[[], float]) -> None:
        from ttft_exporter import __version__

        self.providers = providers
        self.metrics: OTelMetrics | None = None
        self.traces: ProbeTraces | None = None
        if providers.meter_provider is not None:
            self.metrics = OTelMetrics(providers.meter_provider.get_meter(_SCOPE, __version__))
        if providers.tracer_provider is not None:
            tracer = providers.tracer_provider.get_tracer(_SCOPE, __version__)
            self.traces = ProbeTraces(tracer, wall)
        # Per target and scenario: its attributes, computed once per config of it.
        self._attributes: dict[tuple[str, str], Attributes] = {}

    def on_target(self, target: TargetBase) -> None:
        self._attributes[target.name, target.scenario] = target_attributes(target)

    def on_target_removed(self, name: str) -> None:
        for key in [key for key in self._attributes if key[0] == name]:
            del self._attributes[key]

    def on_probe_result(self, target: TargetBase, result: ProbeResult, *, timeout: float) -> None:
        key = (target.name, target.scenario)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = self._attributes[key] = target_attributes(target)
        if self.metrics is not None:
            self.metrics.on_probe_result(
                result, attributes, drop_suspect=target.on_suspect == "drop"
            )
        if self.traces is not None:
            self.traces.on_probe_result(result, attributes)

    def on_flux_event(self, event: FluxEvent) -> None:
        if self.metrics is not None:
            self.metrics.on_flux_event(event)
        if self.traces is not None:
            self.traces.on_flux_event(event)

    def gap_bounds(self, target: str) -> tuple[float, ...] | None:
        # The Prometheus sink's (a superset of ours: see metrics.replay_gaps).
        return None

    def budget_series(self, target: TargetBase) -> Series | None:
        return None

    def shutdown(self) -> None:
        """Flush and stop the providers (blocking: from a worker thread)."""
        self.providers.shutdown()


def build_sink(
    config: OTelConfig,
    *,
    count_failure: FailureCounter,
    wall: Callable[[], float],
    bucket_overrides: Mapping[str, Sequence[float]],
    environ: Mapping[str, str] | None = None,
) -> OTelSink:
    """The sink of one `otel:` section (blocking: from a worker thread)."""
    providers = build_providers(
        config,
        count_failure=count_failure,
        id_generator=ProbeIds(),
        bucket_overrides=bucket_overrides,
        environ=environ,
    )
    return OTelSink(providers, wall)
