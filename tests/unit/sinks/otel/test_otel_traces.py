"""Spans as a collector receives them: one per probe, `{operation} {model}`, kind
CLIENT, the probe's own wall-clock start and end, events at its stamps, ERROR with
`error.type` on failure, the probe's trace id; one per Flux canary check."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import ManualClock
from tests.otlp_receiver import OTLPReceiver, attributes_of
from tests.unit.sinks.otel.otel_factory import STARTED_AT, failure, flush, sink_for, success, target
from ttft_exporter.errors import FluxCanaryReason
from ttft_exporter.flux.events import CanaryChecked, CanaryPublished

START_NS = round(STARTED_AT * 1e9)
MS = 1_000_000
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331


def events(span: Any) -> dict[str, int]:
    return {e.name: e.time_unix_nano - START_NS for e in span.events}


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_probe_span(receiver: OTLPReceiver, protocol: str) -> None:
    sink = await sink_for(receiver, protocol, metrics=False)
    t = target()
    sink.on_probe_result(t, success(trace_id=TRACE_ID, span_id=SPAN_ID), timeout=5)
    await flush(sink)
    (span,) = receiver.spans()
    assert span.name == "chat m"
    assert span.kind == span.SPAN_KIND_CLIENT
    # The executor's ids, so a Prometheus exemplar's trace id finds this span.
    assert (span.trace_id.hex(), span.span_id.hex()) == (f"{TRACE_ID:032x}", f"{SPAN_ID:016x}")
    assert span.start_time_unix_nano == START_NS
    assert span.end_time_unix_nano - START_NS == 200 * MS
    # Phases end one after the other (tls took no time: no event); then the stream.
    assert events(span) == {
        "dns": 1 * MS,
        "connect": 3 * MS,
        "headers": 23 * MS,
        "first_byte": 23 * MS,
        "first_chunk": 40 * MS,
        "first_token": 100 * MS,
        "first_output_token": 130 * MS,
    }
    attributes = attributes_of(span.attributes)
    assert attributes["gen_ai.request.model"] == "m"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.usage.output_tokens"] == 4
    assert attributes["gen_ai.response.finish_reasons"] == "stop"
    assert span.status.code == span.status.STATUS_CODE_UNSET


async def test_failed_probe_span(receiver: OTLPReceiver) -> None:
    sink = await sink_for(receiver, metrics=False)
    sink.on_probe_result(target(), failure(), timeout=5)
    # Without ids from the executor the span has random ones, never zero.
    sink.on_probe_result(target(), failure(reason=None), timeout=5)
    await flush(sink)
    first, second = receiver.spans()
    assert first.status.code == first.status.STATUS_CODE_ERROR
    assert attributes_of(first.attributes)["error.type"] == "503"
    assert attributes_of(first.attributes)["http.response.status_code"] == 503
    assert attributes_of(second.attributes)["error.type"] == "internal"
    assert first.end_time_unix_nano - first.start_time_unix_nano == 30 * MS
    assert first.trace_id != second.trace_id
    assert int.from_bytes(first.trace_id, "big") != 0


async def test_canary_spans(receiver: OTLPReceiver) -> None:
    clock = ManualClock(wall=2_000.0)
    sink = await sink_for(receiver, metrics=False, wall=clock.wall)
    clock.advance(0.05)  # the publish acknowledged 50 ms after it began
    sink.on_flux_event(CanaryPublished("flux-a", 0.05))
    clock.advance(0.07)
    sink.on_flux_event(CanaryChecked("flux-a", 0.12, None))
    sink.on_flux_event(CanaryChecked("flux-a", None, FluxCanaryReason.CONNECT))
    await flush(sink)
    ok, failed = receiver.spans()
    assert ok.name == "flux.canary"
    assert ok.start_time_unix_nano == 2_000 * 10**9
    assert ok.end_time_unix_nano - ok.start_time_unix_nano == pytest.approx(120 * MS, abs=1000)
    assert [e.name for e in ok.events] == ["published", "propagated"]
    assert attributes_of(ok.attributes)["ttft.flux"] == "flux-a"
    assert failed.status.code == failed.status.STATUS_CODE_ERROR
    assert attributes_of(failed.attributes)["error.type"] == "connect"
