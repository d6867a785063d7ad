"""The exporter's shard assignment is Prometheus' own `hashmod` relabel action: a real
Prometheus relabels targets carrying our target names with `hashmod`, and its answer
(from /api/v1/targets) equals `ttft_exporter.shard.hashmod` for every name. So a user can
reproduce, in Prometheus, which replica probes which target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import free_port, poll, require_tool
from tests.prometheus_server import PrometheusServer
from ttft_exporter.shard import hashmod

pytestmark = pytest.mark.integration

NAMES = ["vllm-a", "vllm-b", "ollama", "sim-anthropic", "gemini-flash", "x", "漢字-target"] + [
    f"target-{i}" for i in range(40)
]
MODULUS = 7
START_CAP = 30.0  # Prometheus 2.42 on a loaded machine: several seconds to be ready


async def test_hashmod_matches_a_real_prometheus(tmp_path: Path) -> None:
    binary = require_tool("prometheus", "prometheus")
    unreachable = free_port()  # nothing listens: only the relabelled labels matter
    config = {
        "global": {"scrape_interval": "1h"},
        "scrape_configs": [
            {
                "job_name": "shards",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{unreachable}"], "labels": {"name": name}}
                    for name in NAMES
                ],
                "relabel_configs": [
                    {
                        "source_labels": ["name"],
                        "modulus": MODULUS,
                        "target_label": "shard",
                        "action": "hashmod",
                    }
                ],
            }
        ],
    }
    server = PrometheusServer(binary, tmp_path, config)
    server.start()
    try:
        async with aiohttp.ClientSession() as session:

            async def targets() -> list[dict[str, Any]]:
                server.check_running()
                try:
                    async with session.get(f"{server.url}/api/v1/targets") as resp:
                        if resp.status != 200:
                            return []
                        body = await resp.json()
                except aiohttp.ClientConnectionError:
                    return []
                active: list[dict[str, Any]] = body["data"]["activeTargets"]
                return active if len(active) == len(NAMES) else []

            active = await poll(targets, "Prometheus' relabelled targets", cap=START_CAP)
    finally:
        await server.stop_async()
    theirs = {t["labels"]["name"]: int(t["labels"]["shard"]) for t in active}
    ours = {name: hashmod(name, MODULUS) for name in NAMES}
    assert theirs == ours
    assert len(set(ours.values())) > 1  # the names really spread over the shards
