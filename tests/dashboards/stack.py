"""The live stack the dashboard tests query: the LLM simulator serving a healthy, a
degraded, a reasoning and a failing model, the Flux simulator, the exporter probing
them every second, and a real Prometheus 2.42 scraping it with the committed rules of
`alerts/` loaded (tests/prometheus_server.py). The simulators and the exporter run on their own event loop in a
thread, so one stack serves every test of the session (sync or async)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from tests.prometheus_server import scrape_config
from ttft_exporter.config import ConfigHolder, parse_config
from ttft_exporter.server import ExporterState, create_app
from ttft_exporter.sim.flux import FluxSimConfig, run_flux_sim
from ttft_exporter.sim.llm import LLMSimConfig, ModelBehaviour, run_llm_sim

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "alerts").glob("*.yaml"))
# The config `make rules` generates alerts/ from.
EXAMPLE = ROOT / "examples" / "ttft.yml"
# The job the committed rules select (`ttft-exporter rules` writes job="ttft-exporter").
JOB = "ttft-exporter"

# The demo's three models plus one that answers 503: every probe of it fails with
# reason http_status. env=prod puts every target under the committed SLOs of
# examples/ttft.yml (selector labels env: prod), so the slo:* series exist.
MODELS = {
    "sim-fast": ModelBehaviour(ttft=0.12, itl=0.015, jitter=0.004, tokens=24),
    "sim-degraded": ModelBehaviour(ttft=0.95, itl=0.05, jitter=0.2, tokens=8),
    # Reports llama.cpp's `timings` on its last chunk: the server-timing series.
    "sim-reasoning": ModelBehaviour(
        ttft=0.2, itl=0.02, tokens=16, reasoning_tokens=10, llamacpp_timings=True
    ),
    "sim-broken": ModelBehaviour(status=503),
}
CONFIG = """
defaults:
  interval: 1s
  timeout: 900ms
  max_tokens: 32
  labels: {{team: ml-platform, env: prod}}
  # The optional histograms too: the fleet dashboard draws them.
  histograms: {{time_to_first_byte: true, time_to_first_chunk: true, inter_chunk_latency: true}}
targets:
  - name: sim-healthy
    protocol: openai-chat
    url: "{llm}/v1"
    model: sim-fast
    prompt: hi
    # Priced and budgeted (far above what 2 minutes of probes spend): the cost guard's
    # series exist only for such a target.
    cost: {{input_per_million: 0.15, output_per_million: 0.60, currency: USD}}
    budget: {{daily_tokens: 10000000}}
  - name: sim-degraded
    protocol: openai-chat
    url: "{llm}/v1"
    model: sim-degraded
    prompt: hi
    interval: 2s
    timeout: 1900ms
  - {{name: sim-reasoning, protocol: openai-chat, url: "{llm}/v1", model: sim-reasoning, prompt: hi}}
  - {{name: sim-failing, protocol: openai-chat, url: "{llm}/v1", model: sim-broken, prompt: hi}}
flux:
  - name: sim
    url: "{flux}"
    stale_after: 6s
    groups: [sensor-, host-]
    canary: {{interval: 2s, timeout: 1500ms, namespace: ttft}}
    query: {{interval: 2s, prefix: sensor-}}
"""
FLUX = FluxSimConfig(
    generator_rate=20.0, generator_entities=40, apply_delay=0.05, metrics_interval=1.0
)


class ExporterThread:
    """The simulators and the exporter on an event loop of their own."""

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dashboard-stack", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the exporter thread did not start")
        if self._error is not None:
            raise RuntimeError("the exporter thread failed") from self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30.0)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        llm_runner, llm_port = await run_llm_sim(LLMSimConfig(models=MODELS))
        flux_runner, flux_port = await run_flux_sim(FLUX)
        text = CONFIG.format(
            llm=f"http://127.0.0.1:{llm_port}", flux=f"http://127.0.0.1:{flux_port}"
        )
        data = yaml.safe_load(text)
        # The SLOs the committed rules were generated from: their thresholds become
        # bucket boundaries (le="0.06" for the TPOT SLO), which the SLI rules select.
        data["slos"] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["slos"]
        config = parse_config(data, "dashboards-stack.yml")
        state = ExporterState(holder=ConfigHolder(None, config), start_jitter=False)
        runner = web.AppRunner(create_app(state), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await flux_runner.cleanup()
            await llm_runner.cleanup()


def prometheus_config(exporter_port: int) -> dict[str, Any]:
    """The stack's Prometheus: scraping the exporter as JOB every second, with the
    committed rules loaded."""
    return scrape_config(JOB, exporter_port, rule_files=RULE_FILES)
