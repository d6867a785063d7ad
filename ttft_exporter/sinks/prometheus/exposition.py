"""The `/metrics` body: the exporter registry (self-metrics, Flux families, process)
through prometheus_client, then the series store through the hand-written renderer."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics import exposition as om_exposition

from ttft_exporter.sinks.prometheus.series import MetricStore

__all__ = ["exposition"]


def exposition(registry: CollectorRegistry, store: MetricStore, *, openmetrics: bool) -> bytes:
    """Classic text, or OpenMetrics with one `# EOF` at the very end."""
    if openmetrics:
        core: bytes = om_exposition.generate_latest(registry)  # type: ignore[no-untyped-call]
        return core.removesuffix(b"# EOF\n") + store.render(openmetrics=True).encode() + b"# EOF\n"
    return generate_latest(registry) + store.render().encode()
