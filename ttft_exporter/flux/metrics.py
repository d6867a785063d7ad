"""prometheus_client objects for the Flux families of the catalogue, and the per
instance children resolved once (no label lookups on the message hot path)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ttft_exporter.catalogue import (
    FLUX_CANARY_REASONS,
    FLUX_MESSAGE_TYPES,
    FLUX_METRICS,
    FLUX_RECONNECT_REASONS,
    Kind,
)

__all__ = ["FluxInstanceMetrics", "FluxMetrics"]

_Metric = Counter | Gauge | Histogram


class FluxMetrics:
    """The Flux families, registered once in the exporter's registry."""

    def __init__(self, registry: CollectorRegistry, buckets: Mapping[str, Sequence[float]]) -> None:
        self.registry = registry
        self.buckets = {k: tuple(v) for k, v in buckets.items()}
        self.families: dict[str, _Metric] = {}
        for spec in FLUX_METRICS:
            labels = ("flux", *spec.labels)
            metric: _Metric
            if spec.kind is Kind.COUNTER:
                metric = Counter(spec.name, spec.help, labels, registry=registry)
            elif spec.kind is Kind.GAUGE:
                metric = Gauge(spec.name, spec.help, labels, registry=registry)
            else:
                metric = Histogram(
                    spec.name,
                    spec.help,
                    labels,
                    registry=registry,
                    buckets=self.buckets[spec.buckets or "flux_lag"],
                )
            self.families[spec.name] = metric

    def instance(self, name: str, groups: Sequence[str]) -> FluxInstanceMetrics:
        """The children of one instance, every enum value created at 0."""
        return FluxInstanceMetrics(self, name, groups)

    def remove(self, name: str, groups: Sequence[str]) -> None:
        """Drop every series of an instance that left the config."""
        enums = {
            "ttft_flux_reconnects_total": FLUX_RECONNECT_REASONS,
            "ttft_flux_messages_total": FLUX_MESSAGE_TYPES,
            "ttft_flux_canary_failures_total": FLUX_CANARY_REASONS,
            "ttft_flux_canary_checks_total": ("success", "failure"),
            "ttft_flux_state_updates_total": (*groups, "other"),
        }
        for spec in FLUX_METRICS:
            family = self.families[spec.name]
            for value in enums.get(spec.name, (None,)):
                try:
                    family.remove(name) if value is None else family.remove(name, value)
                except KeyError:
                    continue

    def unregister(self) -> None:
        """Take every family out of the registry (bucket boundaries changed)."""
        for family in self.families.values():
            self.registry.unregister(family)


class FluxInstanceMetrics:
    """Resolved children of one Flux instance."""

    def __init__(self, metrics: FluxMetrics, name: str, groups: Sequence[str]) -> None:
        f = metrics.families

        def counter(metric: str, *labels: str) -> Counter:
            family = f[metric]
            assert isinstance(family, Counter)  # noqa: S101 - built from the catalogue
            return family.labels(name, *labels)

        def gauge(metric: str) -> Gauge:
            family = f[metric]
            assert isinstance(family, Gauge)  # noqa: S101 - built from the catalogue
            return family.labels(name)

        def histogram(metric: str) -> Histogram:
            family = f[metric]
            assert isinstance(family, Histogram)  # noqa: S101 - built from the catalogue
            return family.labels(name)

        self.up = gauge("ttft_flux_up")
        self.connected = gauge("ttft_flux_connected")
        self.stale = gauge("ttft_flux_stale")
        self.reconnects = {
            r: counter("ttft_flux_reconnects_total", r) for r in FLUX_RECONNECT_REASONS
        }
        self.last_message = gauge("ttft_flux_last_message_timestamp_seconds")
        self.messages = {t: counter("ttft_flux_messages_total", t) for t in FLUX_MESSAGE_TYPES}
        self.malformed = counter("ttft_flux_malformed_messages_total")
        self.events = counter("ttft_flux_events_processed_total")
        self.resets = counter("ttft_flux_restarts_total")
        self.reported_rate = gauge("ttft_flux_reported_events_per_second")
        self.entities = gauge("ttft_flux_entities")
        self.ws_connections = gauge("ttft_flux_websocket_connections")
        self.publishers = gauge("ttft_flux_publishers_active")
        self.state_updates = {
            g: counter("ttft_flux_state_updates_total", g) for g in (*groups, "other")
        }
        self.deleted = counter("ttft_flux_entities_deleted_total")
        self.lag = histogram("ttft_flux_state_update_lag_seconds")
        self.canary_checks = {
            o: counter("ttft_flux_canary_checks_total", o) for o in ("success", "failure")
        }
        self.canary_publish = histogram("ttft_flux_canary_publish_seconds")
        self.canary_propagation = histogram("ttft_flux_canary_propagation_seconds")
        self.canary_last = gauge("ttft_flux_canary_last_propagation_seconds")
        self.canary_failures = {
            r: counter("ttft_flux_canary_failures_total", r) for r in FLUX_CANARY_REASONS
        }
        self.query = histogram("ttft_flux_query_seconds")
        self.query_failures = counter("ttft_flux_query_failures_total")
        self.up.set(0)
        self.connected.set(0)
        self.stale.set(0)
