"""Tests for ttft_exporter.webauth: basic auth against real bcrypt hashes through the
real listener, checks off the event loop, and the cache of successful checks."""

from __future__ import annotations

import asyncio
import base64
import threading
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import yaml

from tests.conftest import make_config, make_state, served
from ttft_exporter.webauth import BasicAuth
from ttft_exporter.webconfig import load_web_config

# Cost 4 keeps the suite fast; the production cost only changes how long a check takes.
ALICE_HASH = bcrypt.hashpw(b"correct horse", bcrypt.gensalt(4)).decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def get(port: int, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", **kwargs) as resp,
    ):
        await resp.read()
        return resp


async def test_every_endpoint_needs_the_right_password(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "basic_auth_users": {"alice": ALICE_HASH},
                "http_server_config": {"headers": {"x-content-type-options": "nosniff"}},
            }
        ),
        encoding="utf-8",
    )
    state = make_state(make_config(), web_config=load_web_config(path))
    async with served(state) as port:
        for endpoint in ("/metrics", "/probe?target=x", "/config", "/-/healthy"):
            resp = await get(port, endpoint)
            assert resp.status == 401, endpoint
            assert (
                resp.headers["WWW-Authenticate"] == 'Basic realm="ttft-exporter", charset="UTF-8"'
            )
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
        for header in (
            basic("alice", "wrong"),
            basic("bob", "correct horse"),
            basic("alice", "correct horse" + "x" * 100),  # over bcrypt's 72 bytes
            "Basic !!!",
            "Bearer abc",
        ):
            resp = await get(port, "/metrics", headers={"Authorization": header})
            assert resp.status == 401, header
        resp = await get(
            port, "/metrics", headers={"Authorization": basic("alice", "correct horse")}
        )
        assert resp.status == 200
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        resp = await get(
            port, "/-/reload", headers={"Authorization": basic("alice", "correct horse")}
        )
        assert resp.status == 405  # past auth: the route's own answer
    unauthorized = state.metrics.registry.get_sample_value("ttft_exporter_http_unauthorized_total")
    assert unauthorized == 9.0


async def test_bcrypt_runs_off_the_loop_and_successes_are_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A spy around the real bcrypt.checkpw: it records the thread, and still checks.
    threads: list[int] = []
    real = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        threads.append(threading.get_ident())
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    auth = BasicAuth({"alice": ALICE_HASH})

    assert await auth.check(basic("alice", "correct horse"))
    for _ in range(20):  # a scrape every 15 s for five minutes
        assert await auth.check(basic("alice", "correct horse"))
    assert auth.bcrypt_calls == 1
    # Failures are never cached: each costs a bcrypt round, in a thread.
    assert not await auth.check(basic("alice", "nope"))
    assert not await auth.check(basic("alice", "nope"))
    assert not await auth.check(basic("mallory", "correct horse"))  # unknown: dummy hash
    assert auth.bcrypt_calls == 4
    assert len(threads) == 4
    assert threading.get_ident() not in threads


async def test_the_loop_keeps_ticking_during_a_costly_check() -> None:
    # Cost 12 is ~0.25 s of CPU: on the loop it would freeze every probe for that long.
    costly = bcrypt.hashpw(b"pw", bcrypt.gensalt(12)).decode()
    auth = BasicAuth({"alice": costly})
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    assert await auth.check(basic("alice", "pw"))
    ticking.cancel()
    # Semantic, not a timing bound: the loop ran other work while bcrypt hashed.
    assert ticks >= 5
