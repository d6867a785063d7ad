"""The OpenTelemetry SDK objects of one `otel:` section: the OTLP exporters (HTTP or
gRPC) wrapped to count their failures, the metric reader, the Views that give each
histogram its boundaries, the batch span processor and the resource.

Everything slow happens in the SDK's own threads: the metric reader exports every
`interval` from its thread, the batch span processor from its, each export bounded by
`timeout`. What the event loop does is record into instruments and queue ended spans
into a bounded queue (spans beyond it are dropped, not kept): a down or slow collector
never blocks a probe or moves its timestamps (tests/unit/sinks/otel/test_otel_reliability.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator

from ttft_exporter.catalogue import (
    DEFAULT_BUCKETS,
    FLUX_METRICS,
    OTEL_BUCKETS,
    PROBE_METRICS,
    Kind,
    MetricSpec,
)
from ttft_exporter.sinks.otel.config import OTelConfig, resource_attributes

__all__ = ["Providers", "build_providers", "histogram_boundaries", "otel_specs"]

log = logging.getLogger("ttft_exporter.otel")

Signal = Literal["metrics", "traces"]
# Bounds of the span queue and of one export batch: the SDK's defaults, written out
# because they are what keeps memory flat while the collector is away (2048 spans of
# about 2 KiB). OTEL_BSP_* cannot raise them: a bound set here wins.
SPAN_QUEUE_SIZE = 2048
SPAN_BATCH_SIZE = 512
SPAN_SCHEDULE_DELAY_MILLIS = 2000.0


def otel_specs() -> tuple[MetricSpec, ...]:
    """The catalogue families the OTel sink exports (probe and Flux ones marked
    `otel`); the exporter's own metrics stay on /metrics."""
    return tuple(spec for spec in (*PROBE_METRICS, *FLUX_METRICS) if spec.otel)


def histogram_boundaries(
    spec: MetricSpec, overrides: Mapping[str, Sequence[float]]
) -> tuple[float, ...] | None:
    """The explicit boundaries of a histogram instrument: the semconv's advised set
    (OTEL_BUCKETS), else the exporter's own set with the config's `buckets:`
    overrides (not the per-target SLO thresholds: a View is per instrument, and the
    base set is a subset of every target's, which keeps the replay of the gaps exact)."""
    name = spec.otel_buckets
    if name is None:
        return None
    if name in OTEL_BUCKETS:
        return OTEL_BUCKETS[name]
    return tuple(overrides.get(name, DEFAULT_BUCKETS[name]))


def _views(overrides: Mapping[str, Sequence[float]]) -> list[View]:
    views: dict[str, View] = {}
    for spec in otel_specs():
        bounds = histogram_boundaries(spec, overrides)
        if spec.otel_kind is not Kind.HISTOGRAM or bounds is None or spec.otel_name in views:
            continue
        views[spec.otel_name] = View(
            instrument_name=spec.otel_name,
            aggregation=ExplicitBucketHistogramAggregation(boundaries=bounds),
        )
    return list(views.values())


FailureCounter = Callable[[Signal], None]


class _CountingMetricExporter(MetricExporter):
    """An exporter that counts its failed exports (a FAILURE result or an exception)."""

    def __init__(self, inner: MetricExporter, count: FailureCounter) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._count = count

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            log.debug("OTLP metrics export raised", exc_info=True)
            result = MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self._count("metrics")
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class _CountingSpanExporter(SpanExporter):
    """A span exporter that counts its failed exports."""

    def __init__(self, inner: SpanExporter, count: FailureCounter) -> None:
        self._inner = inner
        self._count = count

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            log.debug("OTLP traces export raised", exc_info=True)
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._count("traces")
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._inner.shutdown()


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()


def _exporters(
    config: OTelConfig,
) -> tuple[Callable[[], MetricExporter], Callable[[], SpanExporter]]:
    """Factories of the two exporters of the configured protocol. Arguments the config
    does not set are left out, so the SDK reads its OTEL_EXPORTER_OTLP_* variables."""
    headers = config.header_values() or None
    tls = config.tls
    if config.resolved_protocol() == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GRPCMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GRPCSpanExporter,
        )

        # gRPC metadata keys are lowercase (HTTP/2); a capital letter is refused.
        grpc_headers = {k.lower(): v for k, v in headers.items()} if headers else None
        grpc_kwargs: dict[str, Any] = {"headers": grpc_headers, "timeout": config.timeout}
        if tls.ca_file is not None or tls.cert_file is not None:
            grpc_kwargs["credentials"] = grpc.ssl_channel_credentials(
                root_certificates=_read(tls.ca_file),
                private_key=_read(tls.key_file),
                certificate_chain=_read(tls.cert_file),
            )

        def grpc_metrics() -> MetricExporter:
            return GRPCMetricExporter(endpoint=config.signal_endpoint("metrics"), **grpc_kwargs)

        def grpc_spans() -> SpanExporter:
            return GRPCSpanExporter(endpoint=config.signal_endpoint("traces"), **grpc_kwargs)

        return grpc_metrics, grpc_spans

    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HTTPMetricExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )

    http_kwargs: dict[str, Any] = {"headers": headers, "timeout": config.timeout}
    if tls.ca_file is not None:
        http_kwargs["certificate_file"] = str(tls.ca_file)
    if tls.cert_file is not None and tls.key_file is not None:
        http_kwargs["client_certificate_file"] = str(tls.cert_file)
        http_kwargs["client_key_file"] = str(tls.key_file)

    def http_metrics() -> MetricExporter:
        return HTTPMetricExporter(endpoint=config.signal_endpoint("metrics"), **http_kwargs)

    def http_spans() -> SpanExporter:
        return HTTPSpanExporter(endpoint=config.signal_endpoint("traces"), **http_kwargs)

    return http_metrics, http_spans


@dataclass
class Providers:
    """The SDK providers of one `otel:` section (None for a signal that is off)."""

    config: OTelConfig
    meter_provider: MeterProvider | None
    tracer_provider: TracerProvider | None
    span_processor: BatchSpanProcessor | None

    def force_flush(self, timeout_millis: int = 10_000) -> None:
        """Export what is pending now (tests; blocking: call from a thread)."""
        if self.meter_provider is not None:
            self.meter_provider.force_flush(timeout_millis)
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and stop both providers and their threads. Blocking (a last export,
        bounded by the timeout): call it from a worker thread."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown(timeout_millis=self.config.timeout * 1000)

    def queued_spans(self) -> int:
        """Spans waiting in the batch processor's queue (bounded by SPAN_QUEUE_SIZE)."""
        if self.span_processor is None:
            return 0
        # NOTE: the SDK's batch processor keeps its queue in a private deque.
        processor: Any = self.span_processor
        return len(processor._batch_processor._queue)


def build_providers(
    config: OTelConfig,
    *,
    count_failure: FailureCounter,
    id_generator: IdGenerator | None,
    bucket_overrides: Mapping[str, Sequence[float]],
    environ: Mapping[str, str] | None = None,
) -> Providers:
    """Build (not start exporting yet: the first metric export comes one `interval`
    later) the providers of `config`. Blocking (reads TLS files, starts threads): call
    it from a worker thread."""
    resource = Resource.create(resource_attributes(config, environ))
    new_metrics, new_spans = _exporters(config)
    meter_provider = None
    if config.metrics:
        reader = PeriodicExportingMetricReader(
            _CountingMetricExporter(new_metrics(), count_failure),
            export_interval_millis=config.interval * 1000,
            export_timeout_millis=config.timeout * 1000,
        )
        meter_provider = MeterProvider(
            resource=resource, metric_readers=[reader], views=_views(bucket_overrides)
        )
    tracer_provider = None
    processor = None
    if config.traces:
        processor = BatchSpanProcessor(
            _CountingSpanExporter(new_spans(), count_failure),
            max_queue_size=SPAN_QUEUE_SIZE,
            max_export_batch_size=SPAN_BATCH_SIZE,
            schedule_delay_millis=SPAN_SCHEDULE_DELAY_MILLIS,
            export_timeout_millis=config.timeout * 1000,
        )
        tracer_provider = TracerProvider(resource=resource, id_generator=id_generator)
        tracer_provider.add_span_processor(processor)
    return Providers(config, meter_provider, tracer_provider, processor)
