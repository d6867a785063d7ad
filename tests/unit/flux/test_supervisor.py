"""Flux monitoring inside the exporter app: served on /metrics, started and stopped by
the app lifecycle, restarted on reload only when its config changed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from tests.conftest import make_state
from tests.unit.flux.conftest import FluxFactory
from ttft_exporter.config import load_config
from ttft_exporter.server import EXPORTER, create_app


def flux_value(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


async def scrape(client: TestClient) -> str:  # type: ignore[type-arg]
    response = await client.get("/metrics")
    assert response.status == 200
    return await response.text()


async def wait_metric(client: TestClient, name: str, value: float, **labels: str) -> None:  # type: ignore[type-arg]
    for _ in range(300):
        if flux_value(await scrape(client), name, **labels) == value:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name}{labels} never became {value}")


async def test_flux_only_config_served_and_reloaded(
    make_flux_sim: FluxFactory, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    flux = await make_flux_sim()
    path = tmp_path / "ttft.yml"
    first = {
        "flux": [{"name": "main", "url": flux.url, "stale_after": "1s", "groups": ["sensor-"]}]
    }
    path.write_text(yaml.safe_dump(first))
    config, _ = load_config(path)
    assert config.targets == []
    client = await aiohttp_client(create_app(make_state(config, path=path)))
    await wait_metric(client, "ttft_flux_up", 1.0, flux="main")
    state = client.app[EXPORTER]
    assert state.flux is not None
    running = state.flux.running["main"]

    # Unchanged: the same monitor keeps running.
    assert (await client.post("/-/reload")).status == 200
    assert state.flux.running["main"] is running

    # Changed: restarted; a second instance appears.
    second = {
        "flux": [
            {"name": "main", "url": flux.url, "stale_after": "2s"},
            {"name": "other", "url": flux.url},
        ]
    }
    path.write_text(yaml.safe_dump(second))
    assert (await client.post("/-/reload")).status == 200
    assert state.flux.running["main"] is not running
    await wait_metric(client, "ttft_flux_up", 1.0, flux="other")

    # Removed: its series go away.
    path.write_text(yaml.safe_dump({"flux": [{"name": "other", "url": flux.url}]}))
    assert (await client.post("/-/reload")).status == 200
    text = await scrape(client)
    assert flux_value(text, "ttft_flux_up", flux="main") is None
    assert 'flux="main"' not in text
    assert flux_value(text, "ttft_flux_up", flux="other") == 1.0


async def test_bad_flux_reload_keeps_running_monitor(
    make_flux_sim: FluxFactory, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    flux = await make_flux_sim()
    path = tmp_path / "ttft.yml"
    path.write_text(yaml.safe_dump({"flux": [{"name": "main", "url": flux.url}]}))
    config, _ = load_config(path)
    client = await aiohttp_client(create_app(make_state(config, path=path)))
    await wait_metric(client, "ttft_flux_up", 1.0, flux="main")
    path.write_text(yaml.safe_dump({"flux": [{"name": "main", "url": "ftp://nope"}]}))
    response = await client.post("/-/reload")
    assert response.status == 500
    assert "flux[0].url: must be an absolute http:// or https:// URL" in await response.text()
    text = await scrape(client)
    assert flux_value(text, "ttft_exporter_config_last_reload_successful") == 0.0
    assert flux_value(text, "ttft_flux_up", flux="main") == 1.0


async def test_a_bucket_change_restarts_flux_families_and_monitors(
    make_flux_sim: FluxFactory, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Histogram boundaries are fixed per prometheus_client family: a reload that moves
    the shared boundaries stops the monitors, registers the Flux families again and
    starts the monitors, which come back up in the new families."""
    flux = await make_flux_sim()
    path = tmp_path / "ttft.yml"
    instance = {"name": "main", "url": flux.url, "stale_after": "1s"}
    path.write_text(yaml.safe_dump({"flux": [instance]}))
    config, _ = load_config(path)
    client = await aiohttp_client(create_app(make_state(config, path=path)))
    await wait_metric(client, "ttft_flux_up", 1.0, flux="main")
    state = client.app[EXPORTER]
    assert state.flux is not None
    running = state.flux.running["main"]
    families = state.prometheus.flux

    path.write_text(yaml.safe_dump({"flux": [instance], "buckets": {"latency": [0.1, 0.2]}}))
    assert (await client.post("/-/reload")).status == 200
    assert state.flux.running["main"] is not running
    assert state.prometheus.flux is not families
    await wait_metric(client, "ttft_flux_up", 1.0, flux="main")
    # One family per name in the exposition: the old ones left the registry.
    text = await scrape(client)
    assert text.count("# TYPE ttft_flux_up gauge") == 1

    # The same boundaries again: nothing restarts.
    running = state.flux.running["main"]
    assert (await client.post("/-/reload")).status == 200
    assert state.flux.running["main"] is running
