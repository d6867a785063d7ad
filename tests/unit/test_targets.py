"""Key files re-read on reload (issue #10 §5): the API key file, a header's value_file and
the TLS client certificate, key and CA are read at every load, and a changed content
changes the target's fingerprint, so a reload after a Kubernetes Secret rotation
restarts the target and its next probe sends the new key and presents the new
certificate. The rotation is done the way the kubelet does it: every file is a symlink
into `..data`, itself a symlink to a timestamped directory, swapped atomically."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from pytest_aiohttp import AiohttpClient

from tests.conftest import make_state
from tests.tls_sim import TLSSim, serve_tls_sim
from ttft_exporter.config import load_config
from ttft_exporter.server import create_app
from ttft_exporter.sim.llm import LLM_SIM_STATE, LLMSimState


class SecretVolume:
    """A directory laid out as a mounted Kubernetes Secret."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self._generation = 0

    def path(self, name: str) -> Path:
        return self.root / name

    def write(self, files: dict[str, bytes]) -> None:
        """Publish a new version of every file at once (atomic rename of `..data`)."""
        self._generation += 1
        version = self.root / f"..2026_11_25_{self._generation:04d}"
        version.mkdir()
        for name, content in files.items():
            (version / name).write_bytes(content)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(version.name)
        os.replace(tmp, self.root / "..data")
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")


def client_pair(sim: TLSSim, name: str) -> dict[str, bytes]:
    cert = sim.ca.issue_cert(name)
    return {
        "tls.crt": cert.cert_chain_pems[0].bytes(),
        "tls.key": cert.private_key_pem.bytes(),
        "ca.crt": sim.ca.cert_pem.bytes(),
    }


def write_config(path: Path, volume: SecretVolume, url: str) -> None:
    target: dict[str, Any] = {
        "name": "rotated",
        "protocol": "openai-chat",
        "url": url,
        "model": "m",
        "prompt": "hello",
        "interval": "10s",
        "timeout": "5s",
        "api_key_file": str(volume.path("api-key")),
        "headers": {"X-Tenant-Token": {"value_file": str(volume.path("tenant-token"))}},
        "tls": {
            "ca_file": str(volume.path("ca.crt")),
            "cert_file": str(volume.path("tls.crt")),
            "key_file": str(volume.path("tls.key")),
        },
    }
    path.write_text(yaml.safe_dump({"targets": [target]}), encoding="utf-8")


async def wait_requests(state: LLMSimState, count: int, cap: float = 10.0) -> None:
    # The cap holds on a loaded 2-core machine: a probe here takes milliseconds.
    deadline = time.monotonic() + cap
    while len(state.requests) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {cap}s waiting for {count} requests")
        await asyncio.sleep(0.02)


async def test_reload_after_a_secret_rotation_uses_the_new_key_and_certificate(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    runner, sim = await serve_tls_sim(tmp_path, require_client_cert=True, names=("127.0.0.1",))
    try:
        volume = SecretVolume(tmp_path / "secret")
        volume.write(
            {"api-key": b"sk-before-rotation\n", "tenant-token": b"tt-before\n"}
            | client_pair(sim, "client-before@example.test")
        )
        path = tmp_path / "ttft.yml"
        write_config(path, volume, sim.url)
        config, checksum = load_config(path)
        state = make_state(config, path=path)
        state.holder.checksum = checksum
        client = await aiohttp_client(create_app(state))
        sim_state = runner.app[LLM_SIM_STATE]
        await wait_requests(sim_state, 1)
        assert state.scheduler is not None
        first_runner = state.scheduler.runners["rotated"]

        # A reload with the same contents leaves the target (and its session) alone.
        assert (await client.post("/-/reload")).status == 200
        assert state.scheduler.runners["rotated"] is first_runner

        volume.write(
            {"api-key": b"sk-after-rotation\n", "tenant-token": b"tt-after\n"}
            | client_pair(sim, "client-after@example.test")
        )
        # Same paths, same config file: only the contents changed.
        assert (await client.post("/-/reload")).status == 200
        assert state.scheduler.runners["rotated"] is not first_runner
        await wait_requests(sim_state, 2)
    finally:
        await runner.cleanup()

    sent = [
        (r.headers.get("Authorization"), r.headers.get("X-Tenant-Token"))
        for r in sim_state.requests
    ]
    assert sent == [
        ("Bearer sk-before-rotation", "tt-before"),
        ("Bearer sk-after-rotation", "tt-after"),
    ]
    assert sim.peers == ["client-before@example.test", "client-after@example.test"]


def test_fingerprint_follows_file_contents(tmp_path: Path) -> None:
    ca, other_ca = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("client@example.test")
    volume = SecretVolume(tmp_path / "secret")
    files = {
        "api-key": b"sk-one\n",
        "tenant-token": b"tt-one\n",
        "ca.crt": ca.cert_pem.bytes(),
        "tls.crt": cert.cert_chain_pems[0].bytes(),
        "tls.key": cert.private_key_pem.bytes(),
    }
    volume.write(files)
    path = tmp_path / "ttft.yml"
    write_config(path, volume, "https://127.0.0.1:9/v1")

    def fingerprint() -> str:
        return load_config(path)[0].targets[0].fingerprint()

    before = fingerprint()
    assert fingerprint() == before  # nothing changed: no restart
    seen = {before}
    changes: list[tuple[str, bytes]] = [
        ("api-key", b"sk-two\n"),
        ("tenant-token", b"tt-two\n"),
        ("ca.crt", other_ca.cert_pem.bytes() + ca.cert_pem.bytes()),
        ("tls.crt", b""),  # replaced below with a new pair
    ]
    for name, content in changes:
        if name == "tls.crt":
            # A new certificate comes with its own key: both files rotate together.
            new = ca.issue_cert("client@example.test")
            files |= {
                "tls.crt": new.cert_chain_pems[0].bytes(),
                "tls.key": new.private_key_pem.bytes(),
            }
        else:
            files |= {name: content}
        volume.write(files)
        now = fingerprint()
        assert now not in seen, f"{name}: a changed content kept the fingerprint"
        seen.add(now)
