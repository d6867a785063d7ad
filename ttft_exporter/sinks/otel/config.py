"""The `otel:` config section (off when absent) and what it resolves to: the OTLP
endpoints of both signals, the headers and the resource attributes. Imports no part of
the OpenTelemetry SDK: the config loads the same whether or not the `otel` extra is
installed."""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from ttft_exporter.durations import Duration
from ttft_exporter.targets import HeaderMap, header_values, redacted_headers
from ttft_exporter.validation import ConfigPath, StrictModel, check_http_url, field_rule

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "KUBERNETES_ENV",
    "OTelConfig",
    "OTelTLSConfig",
    "Protocol",
    "resource_attributes",
]

Protocol = Literal["http/protobuf", "grpc"]
DEFAULT_SERVICE_NAME = "ttft-exporter"
# Downward-API variables (the Helm chart sets them) and the resource attributes of the
# Kubernetes semantic conventions they become.
KUBERNETES_ENV: dict[str, str] = {
    "K8S_POD_NAME": "k8s.pod.name",
    "K8S_POD_UID": "k8s.pod.uid",
    "K8S_NAMESPACE_NAME": "k8s.namespace.name",
    "K8S_NODE_NAME": "k8s.node.name",
    "K8S_CONTAINER_NAME": "k8s.container.name",
}
# A resource is sent with every export: a handful of short attributes, not a blob.
_MAX_RESOURCE_ATTRIBUTES = 64
_MAX_RESOURCE_VALUE = 256
_DEFAULT_PORTS = {"http/protobuf": 4318, "grpc": 4317}


class OTelTLSConfig(StrictModel):
    """TLS to the collector (an https:// endpoint): the CA to verify it with and a
    client certificate for mutual TLS."""

    ca_file: ConfigPath | None = Field(
        None, description="PEM bundle to verify the collector with, instead of the system store."
    )
    cert_file: ConfigPath | None = Field(None, description="Client certificate (PEM), mTLS.")
    key_file: ConfigPath | None = Field(None, description="Client key (PEM), mTLS.")

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _exists(cls, path: Path | None) -> Path | None:
        if path is not None and not Path(path).is_file():
            raise ValueError(f"file not found: {path}")
        return path

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise field_rule("cert_file", "cert_file and key_file must be set together")
        return self


class OTelConfig(StrictModel):
    """OTLP export of metrics and traces (issue #11). Fields left unset fall back to
    the standard OTEL_* environment variables where the SDK reads them; a field set
    here wins over the environment (README, OpenTelemetry)."""

    endpoint: str | None = Field(
        None,
        description=(
            "Collector base URL, e.g. http://otel-collector:4318 (http/protobuf: "
            "/v1/metrics and /v1/traces are appended) or http://otel-collector:4317 "
            "(grpc; https:// for TLS). Unset: OTEL_EXPORTER_OTLP_ENDPOINT, else "
            "localhost at the protocol's port."
        ),
    )
    protocol: Protocol | None = Field(
        None,
        description=(
            "http/protobuf or grpc; unset: OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf."
        ),
    )
    headers: HeaderMap = Field(
        default_factory=dict,
        repr=False,
        description=(
            "Headers sent with every export (e.g. a collector's bearer token): `Name: "
            "value` or `Name: {value|value_env|value_file, secret}`; secret unless "
            "`secret: false`, as targets' headers."
        ),
    )
    interval: Duration = Field(10.0, description="Time between metric exports.")
    timeout: Duration = Field(5.0, description="Deadline of one export (either signal).")
    resource: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Resource attributes, over OTEL_RESOURCE_ATTRIBUTES and the defaults "
            "(service.name ttft-exporter, service.instance.id the host name, k8s.* from "
            "the K8S_* downward-API variables)."
        ),
    )
    metrics: bool = Field(True, description="Export metrics.")
    traces: bool = Field(True, description="Export a span per probe and per Flux canary.")
    tls: OTelTLSConfig = Field(default_factory=OTelTLSConfig, description="TLS to the collector.")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = check_http_url(value, "headers")
        parsed = urllib.parse.urlsplit(url)
        if parsed.query or parsed.fragment:
            raise ValueError("must have no query or fragment")
        return url

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        # Below 1 s the exports cost more than the probes they report.
        if not 1.0 <= value <= 3600.0:
            raise ValueError("must be between 1s and 1h")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0.1 <= value <= 60.0:
            raise ValueError("must be between 100ms and 60s")
        return value

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > _MAX_RESOURCE_ATTRIBUTES:
            raise ValueError(f"at most {_MAX_RESOURCE_ATTRIBUTES} attributes")
        for key, item in value.items():
            if not key or len(key) > _MAX_RESOURCE_VALUE or len(item) > _MAX_RESOURCE_VALUE:
                raise ValueError(f"keys and values of 1 to {_MAX_RESOURCE_VALUE} characters")
        return value

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> Self:
        if self.timeout >= self.interval:
            raise field_rule("timeout", "must be below interval")
        if not (self.metrics or self.traces):
            raise field_rule("metrics", "metrics and traces are both off: remove `otel:` instead")
        return self

    def resolved_protocol(self, environ: Mapping[str, str] | None = None) -> Protocol:
        """The protocol: this config's, else OTEL_EXPORTER_OTLP_PROTOCOL (if one of
        ours), else http/protobuf."""
        if self.protocol is not None:
            return self.protocol
        env = (os.environ if environ is None else environ).get("OTEL_EXPORTER_OTLP_PROTOCOL")
        return "grpc" if env == "grpc" else "http/protobuf"

    def signal_endpoint(self, signal: Literal["metrics", "traces"]) -> str | None:
        """The URL an exporter of `signal` is given; None leaves it to the SDK, which
        reads OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT."""
        if self.endpoint is None:
            return None
        if self.resolved_protocol() == "grpc":
            return self.endpoint
        return f"{self.endpoint}/v1/{signal}"

    def header_values(self) -> dict[str, str]:
        """The headers' values, read from their sources at load."""
        return header_values(self.headers)[0]

    def header_secrets(self) -> list[str]:
        """The secret header values (and bare credentials of `Scheme credential`
        values), for redaction of every text about the exporters."""
        return header_values(self.headers)[1]

    def redacted(self) -> dict[str, object]:
        """The section as /config shows it: secret header values as placeholders."""
        data = self.model_dump(mode="json", exclude={"headers"})
        data["headers"] = redacted_headers(self.headers)
        return data

    def default_port(self) -> int:
        """The collector port of the resolved protocol (4318 or 4317)."""
        return _DEFAULT_PORTS[self.resolved_protocol()]


def resource_attributes(
    config: OTelConfig,
    environ: Mapping[str, str] | None = None,
    hostname: str | None = None,
) -> dict[str, str]:
    """The resource attributes: the defaults (service.name, service.instance.id, the
    Kubernetes ones from the downward API), then OTEL_RESOURCE_ATTRIBUTES and
    OTEL_SERVICE_NAME over them, then the config's `resource` over everything."""
    env = os.environ if environ is None else environ
    attributes = {
        "service.name": DEFAULT_SERVICE_NAME,
        "service.instance.id": hostname if hostname is not None else socket.gethostname(),
    }
    for variable, name in KUBERNETES_ENV.items():
        value = env.get(variable, "").strip()
        if value:
            attributes[name] = value[:_MAX_RESOURCE_VALUE]
    attributes.update(_parse_resource_env(env.get("OTEL_RESOURCE_ATTRIBUTES", "")))
    service = env.get("OTEL_SERVICE_NAME", "").strip()
    if service:
        attributes["service.name"] = service[:_MAX_RESOURCE_VALUE]
    attributes.update(config.resource)
    return attributes


def _parse_resource_env(text: str) -> dict[str, str]:
    """OTEL_RESOURCE_ATTRIBUTES: `key=value` pairs, comma-separated, percent-encoded
    values (the SDK's rules); malformed pairs are skipped, as the SDK does. Bounded."""
    out: dict[str, str] = {}
    for pair in text[:8192].split(",")[:_MAX_RESOURCE_ATTRIBUTES]:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        out[key] = urllib.parse.unquote(value.strip())[:_MAX_RESOURCE_VALUE]
    return out
