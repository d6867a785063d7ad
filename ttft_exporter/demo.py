"""`ttft-exporter demo`: the built-in simulator plus the exporter probing it, so the
whole pipeline can be seen working with no LLM at hand."""

from __future__ import annotations

import asyncio
import signal
import sys
from importlib import resources

import yaml
from aiohttp import web

from ttft_exporter.config import ConfigHolder, parse_config
from ttft_exporter.listener import (
    BoundSockets,
    ConnectionGuard,
    GatedSite,
    ListenerLimits,
    bind_error_text,
)
from ttft_exporter.server import ExporterState, create_app
from ttft_exporter.sim.flux import FluxSimConfig, run_flux_sim
from ttft_exporter.sim.llm import LLMSimConfig, ModelBehaviour, run_llm_sim

__all__ = ["DEMO_LLM_MODELS", "demo_config_text", "run_demo"]

# A healthy model, a degraded one (TTFT around 1 s with jitter, slow decode) and a
# reasoning model whose answer starts well after its first (reasoning) token.
DEMO_LLM_MODELS = {
    "sim-fast": ModelBehaviour(
        ttft=0.12, itl=0.015, jitter=0.004, tokens=48, keepalive_interval=0.05
    ),
    "sim-degraded": ModelBehaviour(ttft=0.95, itl=0.05, jitter=0.2, tokens=16),
    "sim-reasoning": ModelBehaviour(ttft=0.2, itl=0.02, tokens=24, reasoning_tokens=20),
}


# Flux as its defaults have it (metrics every 2 s), 20 events/s from 10 publishers and
# a 50 ms state-apply delay for the canary to measure.
DEMO_FLUX = FluxSimConfig(generator_rate=20.0, generator_entities=40, apply_delay=0.05)


def demo_config_text(llm_url: str, flux_url: str) -> str:
    """The shipped demo configuration pointed at running simulators."""
    template = resources.files("ttft_exporter.sim").joinpath("demo.yml").read_text(encoding="utf-8")
    return template.replace("${LLM_SIM_URL}", llm_url).replace("${FLUX_SIM_URL}", flux_url)


async def _demo(host: str, port: int) -> int:
    # Bind first: a port in use is one line and exit 1 before the simulators start.
    try:
        sockets = await BoundSockets.bind(host, port)
    except OSError as exc:
        print(
            f"ttft-exporter demo: cannot listen on {host}:{port}: {bind_error_text(exc)}",
            file=sys.stderr,
        )
        return 1
    try:
        await _demo_bound(sockets, host)
    finally:
        sockets.server.close()
    return 0


async def _demo_bound(sockets: BoundSockets, host: str) -> None:
    llm_runner, llm_port = await run_llm_sim(LLMSimConfig(models=DEMO_LLM_MODELS))
    flux_runner, flux_port = await run_flux_sim(DEMO_FLUX)
    llm_url = f"http://127.0.0.1:{llm_port}"
    flux_url = f"http://127.0.0.1:{flux_port}"
    config = parse_config(yaml.safe_load(demo_config_text(llm_url, flux_url)), "demo.yml")
    state = ExporterState(holder=ConfigHolder(None, config))
    runner = web.AppRunner(create_app(state), access_log=None)
    await runner.setup()
    site = GatedSite(
        runner,
        host,
        sockets.port,
        guard=ConnectionGuard(ListenerLimits(), state.metrics),
        sockets=sockets,
    )
    await site.start()
    port = site.port
    print(
        f"LLM simulator:  {llm_url}/v1 (models: {', '.join(DEMO_LLM_MODELS)})",
        flush=True,
    )
    print(f"Flux simulator: {flux_url} (WebSocket {flux_url}/api/ws)", flush=True)
    print(f"ttft-exporter:  http://{host}:{port}/", flush=True)
    print(f"metrics:        http://{host}:{port}/metrics", flush=True)
    print(
        f"one probe:      http://{host}:{port}/probe?target=sim-degraded&debug=true",
        flush=True,
    )
    print("Ctrl-C stops.", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await flux_runner.cleanup()
        await llm_runner.cleanup()


def run_demo(host: str, port: int) -> int:
    """Run the demo until interrupted."""
    return asyncio.run(_demo(host, port))
