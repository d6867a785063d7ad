"""Tests for ttft_exporter.listener: idle and slow clients against the real listener on
127.0.0.1 (issue #8 item 9). Bounds are semantic (who got closed, what was counted,
how many log lines) or generous enough for a loaded 2-core machine."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from tests.conftest import make_config, make_state, served
from tests.helpers import CountingLLM
from ttft_exporter.listener import (
    ConnectionGuard,
    ListenerLimits,
    RateLimitedLog,
    install_accept_error_handler,
)
from ttft_exporter.selfmetrics import ExporterMetrics
from ttft_exporter.server import ExporterState
from ttft_exporter.webconfig import TLSServerConfig, build_server_ssl_context

# Generous: the deadline is what is tested, not how fast a loaded machine notices it.
HEADER_TIMEOUT = 1.0
CAP = 20.0


@pytest.fixture
async def counting_llm() -> AsyncIterator[CountingLLM]:
    server = await CountingLLM().start()
    yield server
    await server.close()


def healthy_state(llm: CountingLLM) -> ExporterState:
    config = make_config(
        {"name": "ok", "model": "ok", "url": llm.url, "interval": "0.2s", "timeout": "0.15s"}
    )
    return make_state(config)


def value(state: ExporterState, name: str, **labels: str) -> float:
    return state.metrics.registry.get_sample_value(name, labels) or 0.0


def successes(state: ExporterState) -> float:
    series = state.store.get("ok")
    return (series.get("ttft_probe_requests_total", ("success",)) if series else None) or 0.0


async def wait_until(predicate: Any, what: str, cap: float = CAP) -> None:
    deadline = time.monotonic() + cap
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {cap}s waiting for {what}")
        await asyncio.sleep(0.02)


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """True once the server has closed the connection (EOF or reset)."""
    try:
        return await reader.read(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


async def scrape(port: int, scheme: str = "http", **kwargs: Any) -> str:
    """GET /metrics, retrying while connections are refused or reset, within CAP."""
    deadline = time.monotonic() + CAP
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"{scheme}://127.0.0.1:{port}/metrics", **kwargs) as resp:
                    assert resp.status == 200
                    return await resp.text()
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


async def test_idle_connections_cannot_take_the_server_or_the_probes_down(
    counting_llm: CountingLLM, caplog: pytest.LogCaptureFixture
) -> None:
    # 300 idle sockets against a cap of 100: 200 are closed at accept, the other 100
    # at the header deadline. Meanwhile the probes keep succeeding and /metrics answers.
    state = healthy_state(counting_llm)
    # All from 127.0.0.1: the global cap is tested here, the per-client share below.
    limits = ListenerLimits(
        max_connections=100, max_connections_per_client=100, read_header_timeout=HEADER_TIMEOUT
    )
    caplog.set_level(logging.INFO)
    async with served(state, limits) as port:
        await wait_until(lambda: successes(state) >= 1, "the first probe")
        caplog.clear()
        before = successes(state)
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(300)]
        try:
            await wait_until(
                lambda: (
                    value(state, "ttft_exporter_http_connections_dropped_total", reason="limit")
                    == 200
                ),
                "200 connections refused at the cap",
            )
            assert value(state, "ttft_exporter_http_connections") == 100.0
            # Every idle socket is closed by the server: the excess at once, the rest
            # when their header deadline passes.
            closed = await asyncio.wait_for(
                asyncio.gather(*(closed_by_peer(reader) for reader, _ in conns)), CAP
            )
            assert all(closed)
            assert (
                value(
                    state, "ttft_exporter_http_connections_dropped_total", reason="header_timeout"
                )
                == 100.0
            )
            text = await scrape(port)
            assert 'ttft_exporter_http_connections_dropped_total{reason="limit"} 200.0' in text
            await wait_until(lambda: successes(state) >= before + 3, "three more probes")
        finally:
            for _, writer in conns:
                writer.close()
        await wait_until(
            lambda: value(state, "ttft_exporter_http_connections") == 0.0, "all closed"
        )

    series = state.store.series["ok", "default"]
    assert (series.get("ttft_probe_requests_total", ("failure",)) or 0.0) == 0.0
    # One line per kind of drop (rate-limited), nothing per connection, nothing from asyncio.
    server_lines = [r.getMessage() for r in caplog.records if r.name == "ttft_exporter.server"]
    assert server_lines == [
        "connection limit reached; closing new connections at once",
        "closing connections that sent no complete request in time",
    ]
    assert [r for r in caplog.records if r.name in ("asyncio", "aiohttp.server")] == []


async def test_one_client_cannot_take_every_slot(counting_llm: CountingLLM) -> None:
    # A slowloris client on 127.0.0.1 holds its share (10) of the cap (20): its other
    # connections are closed at once, and a client from another address (127.0.0.2,
    # loopback too) still gets in and scrapes. Before, the flood filled the whole cap
    # and every new client was refused for as long as it lasted.
    state = healthy_state(counting_llm)
    limits = ListenerLimits(
        max_connections=20, max_connections_per_client=10, read_header_timeout=CAP
    )
    async with served(state, limits) as port:
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]
        try:
            await wait_until(
                lambda: (
                    value(
                        state, "ttft_exporter_http_connections_dropped_total", reason="client_limit"
                    )
                    == 20
                ),
                "20 connections of the flooding client refused",
            )
            assert value(state, "ttft_exporter_http_connections") == 10.0
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.2", 0)
            )
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = await asyncio.wait_for(reader.readline(), CAP)
            assert head.startswith(b"HTTP/1.1 200")
            writer.close()
            assert value(state, "ttft_exporter_http_connections_dropped_total", reason="limit") == 0
        finally:
            for _, w in conns:
                w.close()
        await wait_until(
            lambda: value(state, "ttft_exporter_http_connections") == 0.0, "all closed"
        )


def test_the_per_client_count_forgets_an_address_when_its_last_connection_closes() -> None:
    guard = ConnectionGuard(
        ListenerLimits(max_connections=4, max_connections_per_client=2), ExporterMetrics()
    )
    assert guard.admit("a") and guard.admit("a")
    assert not guard.admit("a")  # its share
    assert guard.admit("b") and guard.admit("b")
    assert not guard.admit("c")  # the cap
    guard.release("a")
    assert guard.admit("c")
    for client in ("a", "b", "b", "c"):
        guard.release(client)
    assert guard.open == 0 and guard.by_client == {}


async def test_a_trickled_request_head_is_cut_at_the_deadline_but_keepalive_is_not(
    counting_llm: CountingLLM,
) -> None:
    state = healthy_state(counting_llm)
    limits = ListenerLimits(
        max_connections=10, read_header_timeout=HEADER_TIMEOUT, idle_timeout=30.0
    )
    async with served(state, limits) as port:
        # A slowloris: one header byte every 0.1 s, never finishing the head.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()

        async def trickle() -> None:
            try:
                while True:
                    writer.write(b"X")
                    await writer.drain()
                    await asyncio.sleep(0.1)
            except ConnectionError:
                return

        trickling = asyncio.create_task(trickle())
        assert await asyncio.wait_for(closed_by_peer(reader), CAP)
        assert time.monotonic() - started >= HEADER_TIMEOUT - 0.05
        trickling.cancel()
        writer.close()
        assert (
            value(state, "ttft_exporter_http_connections_dropped_total", reason="header_timeout")
            == 1.0
        )

        # A client that sends its head in time keeps its keep-alive connection past
        # the header deadline: the deadline covers the first request only.
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.get(f"http://127.0.0.1:{port}/-/healthy") as resp:
                    assert resp.status == 200
                    await resp.read()
                await asyncio.sleep(HEADER_TIMEOUT + 0.3)
            assert (
                value(
                    state, "ttft_exporter_http_connections_dropped_total", reason="header_timeout"
                )
                == 1.0
            )


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    base = tmp_path_factory.mktemp("tls")
    files = {"ca": base / "ca.pem", "cert": base / "cert.pem", "key": base / "key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    return files


async def test_tls_handshakes_count_toward_the_cap_and_have_the_deadline(
    counting_llm: CountingLLM, tls_files: dict[str, Path]
) -> None:
    # Raw TCP to the HTTPS port, never sending a ClientHello.
    state = healthy_state(counting_llm)
    context = build_server_ssl_context(
        TLSServerConfig(cert_file=str(tls_files["cert"]), key_file=str(tls_files["key"]))
    )
    limits = ListenerLimits(
        max_connections=5, max_connections_per_client=5, read_header_timeout=HEADER_TIMEOUT
    )
    async with served(state, limits, context) as port:
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
        closed = await asyncio.wait_for(
            asyncio.gather(*(closed_by_peer(reader) for reader, _ in conns)), CAP
        )
        for _, writer in conns:
            writer.close()
        assert all(closed)
        assert value(state, "ttft_exporter_http_connections_dropped_total", reason="limit") == 5.0
        assert (
            value(state, "ttft_exporter_http_connections_dropped_total", reason="header_timeout")
            == 5.0
        )
        client_context = ssl.create_default_context(cafile=str(tls_files["ca"]))
        assert "ttft_exporter_http_connections" in await scrape(port, "https", ssl=client_context)


async def test_accept_errors_are_counted_and_logged_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The loop-level part; a real EMFILE is produced in test_cli's low-limit process.
    loop = asyncio.get_running_loop()
    metrics = ExporterMetrics()
    others: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: others.append(context))
    try:
        install_accept_error_handler(loop, metrics)
        for _ in range(1000):
            loop.call_exception_handler(
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(24, "Too many open files"),
                }
            )
        loop.call_exception_handler({"message": "something else"})
    finally:
        loop.set_exception_handler(previous)
    assert metrics.registry.get_sample_value("ttft_exporter_http_accept_errors_total") == 1000.0
    lines = [r for r in caplog.records if r.name == "ttft_exporter.server"]
    assert [r.getMessage() for r in lines] == [
        "cannot accept connections: out of file descriptors or memory"
    ]
    assert others == [{"message": "something else"}]


def test_rate_limited_log_counts_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttled = RateLimitedLog(60.0, monotonic=lambda: now[0])
    for t in (0.0, 1.0, 2.0, 59.0, 60.0, 61.0):
        now[0] = t
        throttled.warning("full")
    fields = [r.__dict__["ttft_fields"]["suppressed_since_last"] for r in caplog.records]
    assert fields == [0, 3]
