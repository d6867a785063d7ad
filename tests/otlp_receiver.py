"""A test OTLP receiver on 127.0.0.1: OTLP/HTTP (aiohttp: POST /v1/metrics and
/v1/traces, protobuf, gzip or not) and OTLP/gRPC (grpc.aio), decoding every request
with the official `opentelemetry-proto` messages. What the real OTel SDK exporters send
is kept as decoded messages, with the headers of each request, so tests assert names,
units, attributes, boundaries, spans and events on what crossed the wire."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

__all__ = ["OTLPReceiver", "attributes_of", "value_of"]

# A request bigger than this is refused (413): a test receiver must be bounded too.
MAX_BODY = 16 * 1024 * 1024


def value_of(value: AnyValue) -> Any:
    """The Python value of an OTLP AnyValue (scalars, and arrays of them)."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(value_of(v) for v in value.array_value.values)
    return getattr(value, kind) if kind else None


def attributes_of(attributes: Any) -> dict[str, Any]:
    """A repeated KeyValue as a dict."""
    out: dict[str, Any] = {}
    item: KeyValue
    for item in attributes:
        out[item.key] = value_of(item.value)
    return out


@dataclass
class OTLPReceiver:
    """Both transports; `metrics` and `traces` hold every export request received,
    `headers` the metadata of each (lowercased names)."""

    metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = field(default_factory=list)
    traces: list[trace_service_pb2.ExportTraceServiceRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    http_port: int = 0
    grpc_port: int = 0
    # Answer every HTTP request with this status instead (a collector that errors).
    http_status: int = 200
    _runner: web.AppRunner | None = None
    _grpc: Any = None

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    async def start(self) -> OTLPReceiver:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/v1/metrics", self._http_metrics)
        app.router.add_post("/v1/traces", self._http_traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.http_port = self._runner.addresses[0][1]
        self._grpc = grpc.aio.server()
        # The generated gRPC stubs carry no type hints.
        add_metrics: Any = metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server
        add_traces: Any = trace_service_pb2_grpc.add_TraceServiceServicer_to_server
        add_metrics(_GRPCMetrics(self), self._grpc)
        add_traces(_GRPCTraces(self), self._grpc)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        await self._grpc.start()
        return self

    async def stop(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(grace=None)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _body(self, request: web.Request) -> bytes:
        # aiohttp decodes a gzip Content-Encoding itself; a body still gzipped (the
        # encoding named otherwise) is decoded here.
        body = await request.read()
        if body[:2] == b"\x1f\x8b":
            body = await asyncio.to_thread(gzip.decompress, body)
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        return body

    async def _http_metrics(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if self.http_status != 200:
            return web.Response(status=self.http_status)
        message = metrics_service_pb2.ExportMetricsServiceRequest()
        message.ParseFromString(body)
        self.metrics.append(message)
        reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    async def _http_traces(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if self.http_status != 200:
            return web.Response(status=self.http_status)
        message = trace_service_pb2.ExportTraceServiceRequest()
        message.ParseFromString(body)
        self.traces.append(message)
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    # --- what arrived --------------------------------------------------------------

    def resource_attributes(self) -> list[dict[str, Any]]:
        """The resource of every received batch (metrics, then traces)."""
        out: list[dict[str, Any]] = []
        for metrics in self.metrics:
            out.extend(attributes_of(r.resource.attributes) for r in metrics.resource_metrics)
        for traces in self.traces:
            out.extend(attributes_of(r.resource.attributes) for r in traces.resource_spans)
        return out

    def all_metrics(self) -> Iterator[Metric]:
        for request in self.metrics:
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    yield from scope.metrics

    def last_metrics(self) -> dict[str, Metric]:
        """The newest point set of each instrument (cumulative: the last is the total)."""
        out: dict[str, Metric] = {}
        for metric in self.all_metrics():
            out[metric.name] = metric
        return out

    def spans(self) -> list[Span]:
        out: list[Span] = []
        for request in self.traces:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    out.extend(scope.spans)
        return out


class _GRPCMetrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    async def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method
        self._receiver.headers.append(dict(context.invocation_metadata()))
        self._receiver.metrics.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _GRPCTraces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    async def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method
        self._receiver.headers.append(dict(context.invocation_metadata()))
        self._receiver.traces.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()
