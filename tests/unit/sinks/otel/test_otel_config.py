"""The `otel:` section: every problem located at its field, the endpoints of each
protocol, the resource attributes and their precedence, secrets never shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ttft_exporter.config import parse_config
from ttft_exporter.errors import ConfigError
from ttft_exporter.sinks.otel.config import OTelConfig, resource_attributes
from ttft_exporter.targets import MAX_HEADERS

SECRET = "otlp-SENTINEL-77c1e0"


def problems(otel: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"otel": otel})
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("otel", "expected"),
    [
        (
            {"endpoint": "ftp://c:21"},
            ["otel.endpoint: must be an absolute http:// or https:// URL"],
        ),
        (
            {"endpoint": "http://user:pw@c:4318"},
            ["otel.endpoint: must not contain credentials; use headers"],
        ),
        ({"protocol": "http/json"}, ["otel.protocol: must be 'http/protobuf' or 'grpc'"]),
        ({"interval": "100ms"}, ["otel.interval: must be between 1s and 1h"]),
        ({"interval": "5s", "timeout": "5s"}, ["otel.timeout: must be below interval"]),
        (
            {"metrics": False, "traces": False},
            ["otel.metrics: metrics and traces are both off: remove `otel:` instead"],
        ),
        ({"endpoints": "http://c:4318"}, ["otel.endpoints: unknown field"]),
        (
            {"headers": {"Authorization": {"value_env": "TTFT_TEST_OTEL_UNSET"}}},
            [
                "otel.headers.Authorization.value_env: environment variable TTFT_TEST_OTEL_UNSET is not set or empty"
            ],
        ),
        (
            {"tls": {"cert_file": "/etc/hostname"}},
            ["otel.tls.cert_file: cert_file and key_file must be set together"],
        ),
        (
            {"tls": {"ca_file": "/nonexistent/ca.pem"}},
            ["otel.tls.ca_file: file not found: /nonexistent/ca.pem"],
        ),
        (
            # Bounded like a target's headers: a config cannot make every export huge.
            {"headers": {f"X-H{i}": "v" for i in range(MAX_HEADERS + 1)}},
            [f"otel.headers: more than {MAX_HEADERS} headers"],
        ),
    ],
    ids=[
        "scheme",
        "credentials",
        "protocol",
        "interval",
        "timeout",
        "both-off",
        "unknown",
        "header-env",
        "tls-pair",
        "tls-missing",
        "too-many-headers",
    ],
)
def test_problems_name_the_field(otel: dict[str, Any], expected: list[str]) -> None:
    assert problems(otel) == expected


def test_absent_is_off() -> None:
    assert parse_config({}).otel is None


@pytest.mark.parametrize(
    ("protocol", "metrics", "traces"),
    [
        ("http/protobuf", "http://c:4318/v1/metrics", "http://c:4318/v1/traces"),
        ("grpc", "http://c:4318", "http://c:4318"),
    ],
)
def test_signal_endpoints(protocol: str, metrics: str, traces: str) -> None:
    config = OTelConfig.model_validate({"endpoint": "http://c:4318/", "protocol": protocol})
    assert config.signal_endpoint("metrics") == metrics
    assert config.signal_endpoint("traces") == traces


def test_unset_protocol_and_endpoint_leave_it_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = OTelConfig()
    assert config.signal_endpoint("metrics") is None  # the SDK reads OTEL_EXPORTER_OTLP_*
    assert config.resolved_protocol({}) == "http/protobuf"
    assert config.resolved_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) == "grpc"
    # The config wins over the environment.
    pinned = OTelConfig(protocol="http/protobuf")
    assert pinned.resolved_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) == "http/protobuf"


def test_resource_defaults_environment_and_config_in_that_order() -> None:
    env = {
        "K8S_POD_NAME": "ttft-0",
        "K8S_NAMESPACE_NAME": "monitoring",
        "K8S_NODE_NAME": "node-a",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=ml%20ops,broken",
    }
    assert resource_attributes(OTelConfig(), env, hostname="host-1") == {
        "service.name": "ttft-exporter",
        "service.instance.id": "host-1",
        "k8s.pod.name": "ttft-0",
        "k8s.namespace.name": "monitoring",
        "k8s.node.name": "node-a",
        "deployment.environment": "prod",
        "team": "ml ops",
    }
    env["OTEL_SERVICE_NAME"] = "from-env"
    assert resource_attributes(OTelConfig(), env, hostname="h")["service.name"] == "from-env"
    config = OTelConfig(resource={"service.name": "from-config", "team": "sre"})
    attributes = resource_attributes(config, env, hostname="h")
    assert attributes["service.name"] == "from-config"
    assert attributes["team"] == "sre"


def test_header_secrets_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTFT_TEST_OTEL_TOKEN", SECRET)
    path = tmp_path / "token"
    path.write_text(f"{SECRET}\n")
    config = parse_config(
        {
            "otel": {
                "endpoint": "http://c:4318",
                "headers": {
                    "Authorization": f"Bearer {SECRET}",
                    "X-Env": {"value_env": "TTFT_TEST_OTEL_TOKEN"},
                    "X-File": {"value_file": str(path)},
                    "X-Team": {"value": "ml", "secret": False},
                },
            }
        }
    )
    otel = config.otel
    assert otel is not None
    assert otel.header_values() == {
        "Authorization": f"Bearer {SECRET}",
        "X-Env": SECRET,
        "X-File": SECRET,
        "X-Team": "ml",
    }
    shown = f"{otel!r} {otel} {otel.redacted()} {config!r}"
    assert SECRET not in shown
    assert "SENTINEL" not in shown
    headers: Any = otel.redacted()["headers"]
    assert headers["X-Team"] == {"value": "ml", "secret": False}
