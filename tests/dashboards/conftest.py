"""The live stack of the dashboard tests (simulators -> exporter -> Prometheus with the
committed rules), scraped for at least MIN_SCRAPED seconds before any query. Starting
it costs ~40 s, so the tests that query it share one module (test_live.py) and this
module-scoped fixture: it stops when they are done, and never probes and scrapes while
the rest of the suite runs."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dashboards.render import Prometheus as PrometheusAPI
from tests.dashboards.stack import JOB, ExporterThread, prometheus_config
from tests.helpers import free_port, require_tool
from tests.prometheus_server import PrometheusServer

# The floor: the exporter watched the simulators for 30 s before the queries.
MIN_SCRAPED = 30.0
# Prometheus 2.42 scrapes first ~5.6 s after start (tooling.md); generous for a loaded
# 2-core machine.
UP_CAP = 60.0
# The 5m SLO windows need two scrapes and one rule evaluation after them.
RULES_CAP = 60.0


@dataclass
class Live:
    prometheus: PrometheusServer
    api: PrometheusAPI
    exporter_port: int
    scraped_since: float

    def scraped_for(self) -> float:
        return time.monotonic() - self.scraped_since


def _wait(check: Callable[[], bool], what: str, cap: float, server: PrometheusServer) -> None:
    deadline = time.monotonic() + cap
    while True:
        server.check_running()
        try:
            if check():
                return
        except (OSError, ValueError):
            pass  # not listening yet, or still opening its TSDB (503 without JSON)
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {cap}s waiting for {what}\n{server.tail()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    binary = require_tool("prometheus", "prometheus")
    exporter = ExporterThread()
    exporter.start()
    with tempfile.TemporaryDirectory(prefix="ttft-dashboards-") as tmp:
        server = PrometheusServer(
            binary, Path(tmp), prometheus_config(exporter.port), port=free_port()
        )
        server.start()
        api = PrometheusAPI(server.url)
        try:
            _wait(
                lambda: any(r["value"][1] == "1" for r in api.instant(f'up{{job="{JOB}"}}')),
                f'up{{job="{JOB}"}} == 1',
                UP_CAP,
                server,
            )
            scraped_since = time.monotonic()
            _wait(
                lambda: bool(api.instant('slo:sli_error:ratio_rate5m{sloth_slo="ttft-latency"}')),
                "the SLO recording rules to produce data",
                RULES_CAP,
                server,
            )
            time.sleep(max(0.0, MIN_SCRAPED - (time.monotonic() - scraped_since)))
            yield Live(server, api, exporter.port, scraped_since)
        finally:
            server.stop()
            exporter.stop()
