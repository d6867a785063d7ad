"""The Flux families of the catalogue as prometheus_client objects, fed by Flux events:
the per-instance children are resolved once (no label lookups on the frame hot path)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ttft_exporter.catalogue import (
    FLUX_CANARY_REASONS,
    FLUX_MESSAGE_TYPES,
    FLUX_METRICS,
    FLUX_RECONNECT_REASONS,
    Kind,
)
from ttft_exporter.flux.events import (
    CanaryChecked,
    CanaryPublished,
    ConnectionState,
    EventsProcessed,
    FluxEvent,
    FluxReport,
    FluxRestarted,
    FluxStarted,
    FluxStopped,
    FrameReceived,
    Malformed,
    ReadChecked,
    Reconnected,
)

__all__ = ["FluxInstanceMetrics", "FluxMetrics"]

_Metric = Counter | Gauge | Histogram


class FluxMetrics:
    """The Flux families, registered once in the exporter's registry, and the Flux
    event handler of the Prometheus sink."""

    def __init__(self, registry: CollectorRegistry, buckets: Mapping[str, Sequence[float]]) -> None:
        self.registry = registry
        self.buckets = {k: tuple(v) for k, v in buckets.items()}
        self.families: dict[str, _Metric] = {}
        self.instances: dict[str, FluxInstanceMetrics] = {}
        # By exact event type: one dict lookup per event on the frame hot path.
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            FrameReceived: self._frame,
            Malformed: lambda e: self.instances[e.instance].malformed.inc(),
            ConnectionState: self._connection,
            Reconnected: lambda e: self.instances[e.instance].reconnects[e.reason].inc(),
            EventsProcessed: lambda e: self.instances[e.instance].events.inc(e.count),
            FluxRestarted: lambda e: self.instances[e.instance].resets.inc(),
            FluxReport: self._report,
            CanaryChecked: self._canary,
            CanaryPublished: lambda e: self.instances[e.instance].canary_publish.observe(e.seconds),
            ReadChecked: self._read,
            FluxStarted: self._started,
            FluxStopped: self._stopped,
        }
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
        found = self.instances[name] = FluxInstanceMetrics(self, name, groups)
        return found

    def on_flux_event(self, event: FluxEvent) -> None:
        """Record one event of a started instance."""
        self._handlers[type(event)](event)

    def _started(self, event: FluxStarted) -> None:
        self.instance(event.instance, event.groups)

    def _stopped(self, event: FluxStopped) -> None:
        self.instances.pop(event.instance, None)
        self.remove(event.instance, event.groups)

    def _frame(self, event: FrameReceived) -> None:
        m = self.instances[event.instance]
        m.last_message.set(event.at)
        kind = event.kind
        if kind == "malformed":
            m.malformed.inc()
            return
        m.messages[kind].inc()
        if kind == "state_update":
            m.state_updates[event.group or "other"].inc()
            if event.lag is not None:
                m.lag.observe(event.lag)
        elif kind == "entity_deleted":
            m.deleted.inc()

    def _connection(self, event: ConnectionState) -> None:
        m = self.instances[event.instance]
        m.connected.set(1 if event.connected else 0)
        m.stale.set(1 if event.stale else 0)
        m.up.set(1 if event.connected and not event.stale else 0)

    def _report(self, event: FluxReport) -> None:
        m = self.instances[event.instance]
        if event.rate_per_second is not None:
            m.reported_rate.set(event.rate_per_second)
        if event.entities is not None:
            m.entities.set(event.entities)
        if event.websocket_connections is not None:
            m.ws_connections.set(event.websocket_connections)
        if event.publishers_active is not None:
            m.publishers.set(event.publishers_active)

    def _canary(self, event: CanaryChecked) -> None:
        m = self.instances[event.instance]
        if event.reason is not None:
            m.canary_failures[event.reason].inc()
            m.canary_checks["failure"].inc()
            return
        m.canary_checks["success"].inc()
        if event.propagation is not None:
            m.canary_propagation.observe(event.propagation)
            m.canary_last.set(event.propagation)

    def _read(self, event: ReadChecked) -> None:
        m = self.instances[event.instance]
        if event.seconds is None:
            m.query_failures.inc()
        else:
            m.query.observe(event.seconds)

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
        self.instances.clear()
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
