"""The GenAI semantic-convention attributes (v1.41.0) of a target: what every metric
point and span of its probes carries. Pure: no SDK."""

from __future__ import annotations

from yarl import URL

from ttft_exporter.errors import FailureReason
from ttft_exporter.probes import get_protocol
from ttft_exporter.targets import TargetBase

__all__ = ["error_type", "provider_name", "target_attributes"]

Attributes = dict[str, str | int]

# Gemini models served through Vertex AI (a `*-aiplatform.googleapis.com` URL) are the
# semconv's `gcp.vertex_ai`; the Gemini API's are `gcp.gemini`.
_VERTEX_SUFFIX = "aiplatform.googleapis.com"


def provider_name(target: TargetBase) -> str:
    """`gen_ai.provider.name`: the target's `otel_provider`, else its protocol's."""
    if target.otel_provider is not None:
        return target.otel_provider
    spec = get_protocol(target.protocol)
    host = URL(target.url).host or ""
    if spec.name == "gemini" and host.endswith(_VERTEX_SUFFIX):
        return "gcp.vertex_ai"
    return spec.otel_provider


def target_attributes(target: TargetBase) -> Attributes:
    """The attributes every measurement and span of the target's probes carries: the
    semconv's required ones plus `ttft.target` (the configured name, the Prometheus
    `target` label), `ttft.protocol` and `ttft.scenario`. `server.address` and
    `server.port` are the URL's (the server behind a proxy: the probe's proxy is not
    the server)."""
    url = URL(target.url)
    attributes: Attributes = {
        "gen_ai.operation.name": get_protocol(target.protocol).otel_operation,
        "gen_ai.provider.name": provider_name(target),
        "gen_ai.request.model": target.model,
        "server.address": url.host or "",
        "ttft.target": target.name,
        "ttft.protocol": target.protocol,
        # The Prometheus `scenario` label: `default`, a configured scenario or `cold`.
        "ttft.scenario": target.scenario,
    }
    if url.port is not None:
        attributes["server.port"] = url.port
    return attributes


def error_type(reason: FailureReason | None, http_status: int | None) -> str:
    """`error.type` of a failed probe: the HTTP status for an http_status failure (as
    the semconv suggests), else the bounded failure reason (`timeout`, `connect`, …),
    never free text."""
    if reason is FailureReason.HTTP_STATUS and http_status:
        return str(http_status)
    return (reason or FailureReason.INTERNAL).value
