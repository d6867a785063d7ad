"""The exporter as the demo runs it (the simulator, several protocols, a Flux canary)
with `otel:` pointing at a test OTLP receiver: both transports deliver metrics and
traces, and the trace ids of the Prometheus exemplars are those of the spans received."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from tests.conftest import SimFactory, make_config, make_state
from tests.helpers import poll
from tests.otlp_receiver import OTLPReceiver, attributes_of
from ttft_exporter.server import create_app
from ttft_exporter.sim.flux import create_flux_app
from ttft_exporter.sim.llm import ModelBehaviour

Client = TestClient[web.Request, web.Application]
EXEMPLAR = re.compile(
    r'^ttft_probe_time_to_first_token_seconds_bucket\{.*# \{trace_id="([0-9a-f]{32})"', re.M
)


@pytest.fixture
async def flux_url(aiohttp_server: Any) -> str:
    """The Flux simulator (aiohttp_server stops it after the test)."""
    server = await aiohttp_server(create_flux_app())
    return f"http://127.0.0.1:{server.port}"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_demo_run_delivers_metrics_and_traces(
    make_llm_sim: SimFactory,
    aiohttp_client: AiohttpClient,
    receiver: OTLPReceiver,
    flux_url: str,
    protocol: str,
) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.02, itl=0.005, tokens=6))
    endpoint = receiver.http_endpoint if protocol == "http/protobuf" else receiver.grpc_endpoint
    common = {"interval": "1s", "timeout": "900ms"}
    config = make_config(
        {"name": "chat", "url": f"{sim.url}/v1", **common},
        {"name": "ollama", "protocol": "ollama-chat", "url": sim.url, **common},
        otel={"endpoint": endpoint, "protocol": protocol, "interval": "1s", "timeout": "500ms"},
        flux=[{"name": "main", "url": flux_url, "canary": {"interval": "1s", "timeout": "900ms"}}],
    )
    state = make_state(config)
    client = await aiohttp_client(create_app(state))
    assert state.executor.trace_ids  # spans are exported: every probe gets its ids

    def seen() -> set[str]:
        """Targets and Flux instances with a span received."""
        out = set()
        for span in receiver.spans():
            attributes = attributes_of(span.attributes)
            out.add(str(attributes.get("ttft.target") or attributes.get("ttft.flux")))
        return out

    async def everything() -> bool:
        names = {m.name for m in receiver.all_metrics()}
        return {"chat", "ollama", "main"} <= seen() and {
            "gen_ai.client.operation.duration",
            "ttft.flux.canary_propagation",
        } <= names

    # A cap for a loaded machine: the exports come every second.
    await poll(everything, "metrics and spans of both targets and the canary", cap=60)
    page = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    exemplar_ids = set(EXEMPLAR.findall(await page.text()))
    assert exemplar_ids
    # The sink exports every probe's span within a few seconds of the exposition.
    await asyncio.to_thread(_flush, state)
    span_ids = {s.trace_id.hex() for s in receiver.spans()}
    assert exemplar_ids <= span_ids
    ollama = next(
        s for s in receiver.spans() if attributes_of(s.attributes).get("ttft.target") == "ollama"
    )
    assert attributes_of(ollama.attributes)["gen_ai.provider.name"] == "ollama"
    assert any(s.name == "flux.canary" for s in receiver.spans())


def _flush(state: Any) -> None:
    sink = state.otel.sink
    assert sink is not None
    sink.providers.force_flush()
