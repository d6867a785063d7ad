"""The OTel sink's lifecycle: absent `otel:` imports no SDK at all; the exporter's
start builds it, a reload with a changed section replaces it (the old one flushed and
shut down off the loop), a reload without it turns it off; /config hides its secrets."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from tests.conftest import RunningSim, SimFactory, make_state
from tests.helpers import poll
from tests.otlp_receiver import OTLPReceiver
from ttft_exporter.config import load_config
from ttft_exporter.server import create_app, reload_config
from ttft_exporter.sim.llm import ModelBehaviour

Client = TestClient[web.Request, web.Application]
SECRET = "otlp-SENTINEL-3d9e41"
ROOT = Path(__file__).resolve().parents[4]


def test_no_otel_section_imports_no_sdk() -> None:
    # A fresh interpreter: this test process has the SDK loaded by other tests.
    script = textwrap.dedent(
        """
        import asyncio, sys
        from aiohttp.test_utils import TestServer
        from ttft_exporter import cli, server
        from ttft_exporter.config import parse_config
        from ttft_exporter.config import ConfigHolder

        async def main():
            config = parse_config({"targets": [{"name": "a", "url": "http://127.0.0.1:9/v1",
                                   "protocol": "openai-chat", "model": "m", "prompt": "x"}]})
            state = server.ExporterState(holder=ConfigHolder(None, config), start_jitter=False)
            async with TestServer(server.create_app(state)):
                await asyncio.sleep(0.2)
            assert not state.otel.enabled
        asyncio.run(main())
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("opentelemetry", "grpc"))
        print(loaded)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def config_file(path: Path, sim: RunningSim, otel: dict[str, Any] | None) -> Path:
    data: dict[str, Any] = {
        "targets": [
            {
                "name": "a",
                "url": f"{sim.url}/v1",
                "protocol": "openai-chat",
                "model": "m",
                "prompt": "hi",
                "interval": "1s",
                "timeout": "900ms",
            }
        ]
    }
    if otel is not None:
        data["otel"] = otel
    path.write_text(yaml.safe_dump(data))
    return path


async def test_reload_replaces_and_removes_the_sink(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=2))
    first, second = await OTLPReceiver().start(), await OTLPReceiver().start()
    try:
        otel = {"protocol": "http/protobuf", "interval": "1h", "timeout": "2s", "metrics": True}
        path = config_file(
            tmp_path / "c.yml",
            sim,
            {**otel, "endpoint": first.http_endpoint, "headers": {"Authorization": SECRET}},
        )
        config, _checksum = load_config(path)
        state = make_state(config, path=path)
        client = await aiohttp_client(create_app(state))
        assert state.otel.sink is not None
        old = state.otel.sink
        await poll(_async(state.history.records), "a probe", cap=30)
        page = await (await client.get("/config")).text()
        assert SECRET not in page
        assert "<secret>" in page

        config_file(path, sim, {**otel, "endpoint": second.http_endpoint})
        assert await reload_config(state) is None
        assert state.otel.sink is not old
        # The old providers flush on their way out (their interval was an hour).
        await poll(_async(lambda: first.metrics), "the old sink's last export", cap=30)
        assert first.headers[-1]["authorization"] == SECRET
        n = len(state.history.records())
        await poll(_async(lambda: len(state.history.records()) > n), "a probe", cap=30)
        await state.otel.close()
        assert second.metrics and second.spans()

        config_file(path, sim, None)
        assert await reload_config(state) is None
        assert not state.otel.enabled
    finally:
        await first.stop()
        await second.stop()


def _async(check: Any) -> Any:
    async def run() -> Any:
        return check()

    return run
