"""Probe results made from a timeline with exact nanosecond stamps, and an OTel sink
against a test receiver: the numbers the tests expect are the ones put in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.conftest import make_target
from tests.otlp_receiver import OTLPReceiver
from ttft_exporter.catalogue import DEFAULT_INTER_TOKEN_BUCKETS
from ttft_exporter.config import TargetConfig
from ttft_exporter.errors import FailureReason
from ttft_exporter.probes.base import ProbeResult, StreamItem, StreamTimeline, Usage
from ttft_exporter.sinks.otel.config import OTelConfig
from ttft_exporter.sinks.otel.sink import OTelSink, build_sink

MS = 1_000_000
STARTED_AT = 1_771_065_045.25


def success(**changes: Any) -> ProbeResult:
    """First chunk (role only) at 40 ms, first token (reasoning) at 100 ms, first
    answer token at 130 ms, last token at 190 ms; usage 12 in, 4 out."""
    timeline = StreamTimeline(0, gap_bounds=DEFAULT_INTER_TOKEN_BUCKETS)
    timeline.on_event(40 * MS)
    timeline.on_item(40 * MS, StreamItem())
    timeline.on_item(100 * MS, StreamItem(reasoning="hm"))
    timeline.on_item(130 * MS, StreamItem(text="a"))
    timeline.on_item(150 * MS, StreamItem(text="b"))
    timeline.on_item(190 * MS, StreamItem(text="c", finish_reason="stop"))
    timeline.on_item(195 * MS, StreamItem(usage=Usage(input_tokens=12, output_tokens=4)))
    result = timeline.result(
        phases={"dns": 0.001, "connect": 0.002, "tls": 0.0, "headers": 0.02},
        http_status=200,
        headers_ns=23 * MS,
        started_at=STARTED_AT,
        end_ns=200 * MS,
        bytes_received=600,
    )
    from dataclasses import replace

    return replace(result, **changes)


def failure(**changes: Any) -> ProbeResult:
    """An HTTP 503 after 30 ms."""
    fields: dict[str, Any] = {
        "reason": FailureReason.HTTP_STATUS,
        "detail": "HTTP 503",
        "started_at": STARTED_AT + 5,
        "http_status": 503,
        "elapsed": 0.03,
        "phases": {"dns": 0.001, "connect": 0.002, "tls": 0.0, "headers": 0.025},
    }
    return ProbeResult(False, **{**fields, **changes})


def target(**fields: Any) -> TargetConfig:
    return make_target(**{"name": "a", "url": "http://127.0.0.1:8000/v1", **fields})


async def sink_for(
    receiver: OTLPReceiver,
    protocol: str = "http/protobuf",
    failures: list[str] | None = None,
    wall: Callable[[], float] = lambda: STARTED_AT,
    **config: Any,
) -> OTelSink:
    endpoint = receiver.http_endpoint if protocol == "http/protobuf" else receiver.grpc_endpoint
    otel = OTelConfig.model_validate(
        {"endpoint": endpoint, "protocol": protocol, "interval": 60, **config}
    )
    return await asyncio.to_thread(
        build_sink,
        otel,
        count_failure=(failures if failures is not None else []).append,
        wall=wall,
        bucket_overrides={},
        environ={},
    )


async def flush(sink: OTelSink) -> None:
    """Export now, then stop (blocking SDK calls, in a thread)."""
    await asyncio.to_thread(sink.providers.force_flush)
    await asyncio.to_thread(sink.shutdown)
