"""The exporter against the real Prometheus 2.42 tools: `promtool check metrics` on a live
scrape, and a real server scraping it and answering PromQL over the probe histograms and
storing the exemplars that link them to probe traces."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import SimFactory, make_config, make_state
from tests.helpers import free_port, poll, require_tool
from tests.prometheus_server import PrometheusServer, scrape_config
from ttft_exporter.server import ExporterState, create_app
from ttft_exporter.sim.llm import ModelBehaviour

pytestmark = pytest.mark.integration

# The healthy target's first token is due 0.2 s after the simulator gets the request; the
# probe measures that plus loopback connect and request time (about a millisecond), never
# less. Bucket boundaries hug that value so histogram_quantile's linear interpolation
# inside a bucket cannot move the answer far: the median lands in (0.2, 0.21].
SIM_TTFT = 0.2
LATENCY_BUCKETS = [0.1, 0.19, 0.2, 0.21, 0.22, 0.25, 0.5, 1.0]
JOB = "ttft-exporter"
UP_CAP = 30.0  # Prometheus 2.42's first scrape lands ~5.6 s after start
QUERY_CAP = 20.0


@dataclass
class Exporter:
    url: str
    port: int
    state: ExporterState

    def probes(self, target: str, outcome: str) -> float:
        series = self.state.store.get(target)
        value = series.get("ttft_probe_requests_total", (outcome,)) if series else None
        return value or 0.0


@pytest.fixture
def trace_ids() -> bool:
    """Whether the exporter gives probes trace ids (exemplars); a test overrides it."""
    return False


@pytest.fixture
async def exporter(make_llm_sim: SimFactory, trace_ids: bool) -> AsyncIterator[Exporter]:
    """The exporter served on a free loopback port, probing a healthy simulator target
    every 0.5 s and a target whose port refuses connections."""
    sim = await make_llm_sim(m=ModelBehaviour(ttft=SIM_TTFT, itl=0.0, tokens=2))
    common = {"interval": "0.5s", "timeout": "0.4s"}
    config = make_config(
        {"name": "healthy", "url": f"{sim.url}/v1", **common},
        {"name": "failing", "url": f"http://127.0.0.1:{free_port()}/v1", **common},
        buckets={"latency": LATENCY_BUCKETS},
    )
    # History long enough that every probe an exemplar can name is still in it.
    state = make_state(config, trace_ids=trace_ids, history_limit=1000)
    runner = web.AppRunner(create_app(state), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port: int = runner.addresses[0][1]
        yield Exporter(f"http://127.0.0.1:{port}", port, state)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("trace_ids", [False, True], ids=["plain", "trace-ids"])
async def test_promtool_check_metrics_accepts_a_live_scrape(exporter: Exporter) -> None:
    # With trace ids on too: exemplars stay out of the classic text format, which
    # promtool 2.42 parses (its `check metrics` has no OpenMetrics parser: an exemplar
    # there is "expected integer as timestamp, got '#'").
    promtool = require_tool("promtool", "prometheus")

    async def probed() -> bool:
        return (
            exporter.probes("healthy", "success") >= 1
            and exporter.probes("failing", "failure") >= 1
        )

    await poll(probed, "a probe of each target", cap=5.0)
    # promtool 2.42 wants the classic text format (it misreads OpenMetrics counters).
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{exporter.url}/metrics", headers={"Accept": "text/plain"}) as resp,
    ):
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        body = await resp.read()
    assert b'ttft_probe_time_to_first_token_seconds_bucket{target="healthy"' in body

    proc = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(body), timeout=10.0)

    assert (proc.returncode, out.decode(), err.decode()) == (0, "", "")


class Prometheus(PrometheusServer):
    """A real Prometheus scraping the exporter, queried with the test's session."""

    async def query(self, session: aiohttp.ClientSession, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector ([] while there is no data)."""
        self.check_running()
        try:
            async with session.get(f"{self.url}/api/v1/query", params={"query": expr}) as resp:
                if resp.status == 503:
                    return []  # starting: the API answers 503 until the TSDB is open
                body = await resp.json()
        except aiohttp.ClientConnectionError:
            return []  # not listening yet
        assert resp.status == 200, body
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


@pytest.fixture
async def prometheus(
    exporter: Exporter, tmp_path: Path, trace_ids: bool
) -> AsyncIterator[Prometheus]:
    # 2.42 keeps exemplars only with this feature flag (in memory, a circular buffer).
    flags = ("--enable-feature=exemplar-storage",) if trace_ids else ()
    server = Prometheus(
        require_tool("prometheus", "prometheus"),
        tmp_path,
        scrape_config(JOB, exporter.port),
        flags=flags,
    )
    server.start()
    try:
        yield server
    finally:
        await server.stop_async()


async def test_prometheus_scrapes_and_computes_the_ttft_quantile(
    exporter: Exporter, prometheus: Prometheus
) -> None:
    async with aiohttp.ClientSession() as session:

        async def up() -> bool:
            result = await prometheus.query(session, f'up{{job="{JOB}"}}')
            return bool(result) and result[0]["value"][1] == "1"

        await poll(up, f'up{{job="{JOB}"}} == 1', cap=UP_CAP)

        quantile = (
            "histogram_quantile(0.5, sum by (le, target) "
            '(rate(ttft_probe_time_to_first_token_seconds_bucket{target="healthy"}[10s])))'
        )

        async def p50() -> list[dict[str, Any]]:
            result = await prometheus.query(session, quantile)
            # NaN until two scrapes with an increase fall into the window.
            return [r for r in result if r["value"][1] not in ("NaN", "+Inf")]

        result = await poll(p50, "the TTFT median", cap=QUERY_CAP)
        assert [r["metric"] for r in result] == [{"target": "healthy"}]
        value = float(result[0]["value"][1])
        # Semantics, not speed: the median Prometheus computes lies within the buckets
        # of what the exporter measured (its history), however late a starved machine
        # ran the probes; and never below the simulator's sleep (all observations are
        # above it). Unloaded, both ends are the (0.2, 0.21] bucket.
        ttfts = [
            r.result.time_to_first_token
            for r in exporter.state.history.records()
            if r.target == "healthy" and r.result.time_to_first_token is not None
        ]
        low = max([b for b in LATENCY_BUCKETS if b < min(ttfts)], default=0.0)
        high = min([b for b in LATENCY_BUCKETS if b >= max(ttfts)], default=float("inf"))
        assert value >= SIM_TTFT and low <= value <= high, (value, ttfts)

        async def connect_failures() -> list[dict[str, Any]]:
            return await prometheus.query(
                session, 'ttft_probe_failures_total{target="failing",reason="connect"} > 0'
            )

        failures = await poll(connect_failures, "connect failures of the failing target", 10.0)
        assert failures[0]["metric"]["job"] == JOB
        assert float(failures[0]["value"][1]) > 0
        healthy_failures = await prometheus.query(
            session, 'sum(ttft_probe_failures_total{target="healthy"})'
        )
        assert healthy_failures[0]["value"][1] == "0"
        success = await prometheus.query(
            session, 'ttft_probe_success{job="ttft-exporter", target="failing"}'
        )
        assert success[0]["value"][1] == "0"


@pytest.mark.parametrize("trace_ids", [True])
async def test_prometheus_stores_the_probe_trace_ids_as_exemplars(
    exporter: Exporter, prometheus: Prometheus
) -> None:
    ttft = "ttft_probe_time_to_first_token_seconds_bucket"

    async def exemplars(session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        prometheus.check_running()
        params = {"query": f'{ttft}{{target="healthy"}}', "start": "0", "end": "9999999999"}
        try:
            async with session.get(f"{prometheus.url}/api/v1/query_exemplars", params=params) as r:
                if r.status == 503:
                    return []
                body = await r.json()
        except aiohttp.ClientConnectionError:
            return []
        assert r.status == 200, body
        assert body["status"] == "success", body
        found: list[dict[str, Any]] = body["data"]
        return found

    async with aiohttp.ClientSession() as session:
        result = await poll(lambda: exemplars(session), "exemplars of the TTFT", cap=UP_CAP)
    # Prometheus parsed our OpenMetrics exposition (it negotiates it on scrape) and kept
    # each exemplar on its bucket series. Each one names a probe the exporter ran: its
    # trace id and span id are those of that probe's result, its value the probe's TTFT,
    # and the bucket is the one that TTFT falls in.
    probes = {
        f"{r.result.trace_id:032x}": r.result
        for r in exporter.state.history.records()
        if r.target == "healthy" and r.result.trace_id is not None
    }
    seen = 0
    for series in result:
        le = float(series["seriesLabels"]["le"])
        assert series["seriesLabels"]["target"] == "healthy"
        for exemplar in series["exemplars"]:
            labels = exemplar["labels"]
            assert set(labels) == {"trace_id", "span_id"}
            probe = probes[labels["trace_id"]]
            assert probe.span_id is not None
            assert labels["span_id"] == f"{probe.span_id:016x}"
            measured = probe.time_to_first_token
            assert measured is not None
            assert float(exemplar["value"]) == pytest.approx(measured, rel=1e-9)
            assert measured <= le
            assert le == float("inf") or all(b < measured for b in LATENCY_BUCKETS if b < le)
            assert exemplar["timestamp"] == pytest.approx(probe.started_at, abs=0.001)
            seen += 1
    assert seen >= 1
