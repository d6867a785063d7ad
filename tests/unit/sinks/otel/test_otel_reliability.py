"""A collector that is down, or that accepts and never answers, costs the probes
nothing: their timings are the simulator's, the span queue stays at its bound, memory
stays flat, and every failed export is counted by signal."""

from __future__ import annotations

import asyncio
import gc
import socket
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from tests.conftest import SimFactory, make_config, make_state, served, within
from tests.helpers import free_port, poll
from tests.otlp_receiver import OTLPReceiver
from tests.unit.sinks.otel.otel_factory import success, target
from ttft_exporter.sim.llm import ModelBehaviour
from ttft_exporter.sinks.otel.config import OTelConfig
from ttft_exporter.sinks.otel.providers import SPAN_QUEUE_SIZE
from ttft_exporter.sinks.otel.sink import build_sink


@pytest.fixture
async def silent_collector() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never answers a byte (a hung
    collector); closes them when the test ends."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    port = free_port()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    return port


@pytest.mark.parametrize("collector", ["refused", "silent"])
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_a_down_collector_costs_the_probes_nothing(
    make_llm_sim: SimFactory, silent_collector: int, collector: str, protocol: str
) -> None:
    ttft = 0.05
    sim = await make_llm_sim(m=ModelBehaviour(ttft=ttft, itl=0.005, tokens=4))
    port = silent_collector if collector == "silent" else closed_port()
    config = make_config(
        {"name": "a", "url": f"{sim.url}/v1", "interval": "1s", "timeout": "900ms"},
        otel={
            "endpoint": f"http://127.0.0.1:{port}",
            "protocol": protocol,
            "interval": "1s",
            "timeout": "300ms",
        },
    )
    state = make_state(config)
    failures = state.metrics.registry.get_sample_value

    def counted(signal: str) -> float:
        return failures("ttft_exporter_otlp_export_failures_total", {"signal": signal}) or 0.0

    async with served(state):

        async def both_failed() -> bool:
            return counted("metrics") >= 1 and counted("traces") >= 1

        # Metrics export every 1 s, spans every 2 s, each attempt ends by its 300 ms
        # timeout: 30 s is a cap for a loaded machine, not an expectation.
        await poll(both_failed, "failed exports of both signals", cap=30)
    records = state.history.records()
    assert records
    for record in records:
        result = record.result
        assert result.success, result.detail
        # Never early, late only by the loaded machine's scheduling (within()'s 2 s
        # slack); a blocked loop would show the export's whole timeout and more.
        assert within(result.time_to_first_token, ttft)


@pytest.mark.slow
async def test_span_queue_and_memory_stay_bounded_without_a_collector() -> None:
    otel = OTelConfig(endpoint=f"http://127.0.0.1:{closed_port()}", interval=60, timeout=0.2)
    failures: list[str] = []
    sink = await asyncio.to_thread(
        build_sink,
        otel,
        count_failure=failures.append,
        wall=lambda: 0.0,
        bucket_overrides={},
        environ={},
    )
    t = target()
    result = success()
    try:
        sink.on_target(t)
        # Past the queue's bound first, so that what follows would all be growth.
        for _ in range(SPAN_QUEUE_SIZE + 512):
            sink.on_probe_result(t, result, timeout=5)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(SPAN_QUEUE_SIZE * 3):
                sink.on_probe_result(t, result, timeout=5)
                assert sink.providers.queued_spans() <= SPAN_QUEUE_SIZE
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        # The queue holds at most SPAN_QUEUE_SIZE spans and the export thread one
        # batch more (2,560 spans of about 6 KiB: under 16 MiB, however full the queue
        # happened to be at either measurement). 6,144 more spans kept would be about
        # 38 MiB: a leak shows, queue occupancy does not.
        assert grown < 20 * 1024 * 1024, grown
    finally:
        await asyncio.to_thread(sink.shutdown)


async def test_a_collector_answering_errors_is_counted(receiver: OTLPReceiver) -> None:
    receiver.http_status = 503
    failures: list[str] = []
    otel = OTelConfig(endpoint=receiver.http_endpoint, interval=60, timeout=0.5)
    sink = await asyncio.to_thread(
        build_sink,
        otel,
        count_failure=failures.append,
        wall=lambda: 0.0,
        bucket_overrides={},
        environ={},
    )
    sink.on_probe_result(target(), success(), timeout=5)
    await asyncio.to_thread(sink.providers.force_flush, 5000)
    await asyncio.to_thread(sink.shutdown)
    assert "metrics" in failures
    assert "traces" in failures
