"""The canary and the read check against the Flux simulator: propagation latency
against the injected apply delay, and every failure reason produced for real."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from tests.helpers import poll
from tests.unit.flux.conftest import FluxFactory, WatchFactory, flux_config

CANARY = {"interval": "2s", "timeout": "0.8s"}
# Upper bound on a latency measured against the simulator's real sleeps on a starved
# machine (a 2-core box under stress-ng --cpu 2); lower bounds are the sleeps themselves.
STARVED = 2.0


async def test_propagation_matches_injected_apply_delay(
    make_flux_sim: FluxFactory, watch: WatchFactory
) -> None:
    apply = 0.5
    flux = await make_flux_sim(apply_delay=apply)
    # A deadline far above the apply delay: a late state_update on a starved machine
    # is still a propagation, not a failure.
    canary = {"interval": "10s", "timeout": "5s"}
    w = await watch(flux_config(flux.url, canary=canary), loops=False)
    await w.wait_for(lambda: w.value("ttft_flux_connected") == 1.0)
    assert w.canary is not None
    results = [await w.canary.check_once() for _ in range(3)]
    for seconds in results:
        # Bounds (real clock): the update comes after the apply delay, never before;
        # STARVED above it at most.
        assert seconds is not None and apply <= seconds <= apply + STARVED
    assert w.value("ttft_flux_canary_checks_total", outcome="success") == 3.0
    assert w.value("ttft_flux_canary_propagation_seconds_count") == 3.0
    assert w.value("ttft_flux_canary_publish_seconds_count") == 3.0
    # The ack does not wait for the apply: acks that did would add up to 3 x 0.5 s at
    # least. A bound, not a speed: three loopback round trips fit even when starved.
    assert w.value("ttft_flux_canary_publish_seconds_sum") < 3 * apply
    assert w.value("ttft_flux_canary_last_propagation_seconds") == pytest.approx(results[-1])
    entity = flux.sim.entities["ttft/ttft-canary-main"]
    assert entity.properties["seq"] == w.canary.seq


async def test_auth_with_token_from_env(
    make_flux_sim: FluxFactory, watch: WatchFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    flux = await make_flux_sim(auth=True, namespaces={"ttft": "tok-abc"})
    monkeypatch.setenv("FLUX_TEST_TOKEN", "tok-abc")
    w = await watch(
        flux_config(flux.url, canary={**CANARY, "token_env": "FLUX_TEST_TOKEN"}), loops=False
    )
    await w.wait_for(lambda: w.value("ttft_flux_connected") == 1.0)
    assert w.canary is not None and await w.canary.check_once() is not None


@pytest.mark.parametrize(
    ("token", "namespaces"),
    [
        (None, {"ttft": "tok-abc"}),
        ("tok-wrong", {"ttft": "tok-abc"}),
        ("tok-abc", {"other": "tok-abc"}),
    ],
    ids=["no-token-401", "wrong-token-403", "unknown-namespace-401"],
)
async def test_auth_failures(
    make_flux_sim: FluxFactory,
    watch: WatchFactory,
    tmp_path: Path,
    token: str | None,
    namespaces: dict[str, str],
) -> None:
    flux = await make_flux_sim(auth=True, namespaces=namespaces)
    canary: dict[str, object] = dict(CANARY)
    if token is not None:
        path = tmp_path / "token"
        path.write_text(token + "\n")
        canary["token_file"] = str(path)
    w = await watch(flux_config(flux.url, canary=canary), loops=False)
    await w.wait_for(lambda: w.value("ttft_flux_connected") == 1.0)
    assert w.canary is not None and await w.canary.check_once() is None
    assert w.value("ttft_flux_canary_failures_total", reason="auth") == 1.0
    assert w.value("ttft_flux_canary_checks_total", outcome="failure") == 1.0


async def test_rate_limited_honours_retry_after(
    make_flux_sim: FluxFactory, watch: WatchFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    flux = await make_flux_sim(auth=True, namespaces={"ttft": "tok"}, rate_limit_per_minute=1)
    monkeypatch.setenv("FLUX_TEST_TOKEN", "tok")
    w = await watch(
        flux_config(flux.url, canary={**CANARY, "token_env": "FLUX_TEST_TOKEN"}), loops=False
    )
    await w.wait_for(lambda: w.value("ttft_flux_connected") == 1.0)
    assert w.canary is not None
    assert await w.canary.check_once() is not None  # the bucket starts full (1 token)
    assert await w.canary.check_once() is None
    assert w.value("ttft_flux_canary_failures_total", reason="rate_limited") == 1.0
    # Retry-After: 60 pauses the loop: started now, it publishes nothing more.
    published = flux.sim.events_total
    task = asyncio.create_task(w.canary.run())
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert flux.sim.events_total == published


@pytest.mark.parametrize(
    ("fault", "reason"),
    [({"publish_status": 500}, "http_5xx"), ({"publish_delay": 2.0}, "timeout")],
    ids=["jetstream-down-500", "slow-ack"],
)
async def test_publish_faults(
    make_flux_sim: FluxFactory, watch: WatchFactory, fault: dict[str, object], reason: str
) -> None:
    flux = await make_flux_sim()
    flux.sim.set_fault(**fault)  # type: ignore[arg-type]
    w = await watch(flux_config(flux.url, canary=CANARY), loops=False)
    await w.wait_for(lambda: w.value("ttft_flux_connected") == 1.0)
    assert w.canary is not None and await w.canary.check_once() is None
    assert w.value("ttft_flux_canary_failures_total", reason=reason) == 1.0


async def test_payload_too_large_is_http_4xx(
    make_flux_sim: FluxFactory, watch: WatchFactory
) -> None:
    flux = await make_flux_sim(body_limit_single=16)
    w = await watch(flux_config(flux.url, canary=CANARY), loops=False)
    await w.wait_for(lambda: w.value("ttft_flux_connected") == 1.0)
    assert w.canary is not None and await w.canary.check_once() is None
    assert w.value("ttft_flux_canary_failures_total", reason="http_4xx") == 1.0


async def test_not_propagated_when_the_stream_is_down(
    make_flux_sim: FluxFactory, watch: WatchFactory
) -> None:
    flux = await make_flux_sim()
    # Silence: acks still come, state_updates do not.
    w = await watch(flux_config(flux.url, canary=CANARY, stale_after="5s"), loops=False)
    await w.wait_for(lambda: w.value("ttft_flux_connected") == 1.0)
    flux.sim.set_silent(True)
    assert w.canary is not None and await w.canary.check_once() is None
    assert w.value("ttft_flux_canary_failures_total", reason="not_propagated") == 1.0
    assert w.monitor.canary_waiters == {}


async def test_connection_refused_is_connect(watch: WatchFactory) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    w = await watch(flux_config(f"http://127.0.0.1:{port}", canary=CANARY), start=False)
    assert w.canary is not None and await w.canary.check_once() is None
    assert w.value("ttft_flux_canary_failures_total", reason="connect") == 1.0


async def test_query_check(make_flux_sim: FluxFactory, watch: WatchFactory) -> None:
    flux = await make_flux_sim()
    await flux.sim.publish(
        {
            "stream": "s",
            "source": "p",
            "timestamp": 1,
            "payload": {"entity_id": "sensor-1", "properties": {"a": 1}},
        }
    )
    w = await watch(
        flux_config(flux.url, query={"interval": "1s", "prefix": "sensor-"}), start=False
    )
    assert w.query is not None and await w.query.check_once() is not None
    assert w.value("ttft_flux_query_seconds_count") == 1.0
    await flux.runner.cleanup()
    assert await w.query.check_once() is None
    assert w.value("ttft_flux_query_failures_total") == 1.0


async def test_flux_token_sentinel_never_shown(
    make_flux_sim: FluxFactory,
    aiohttp_client: AiohttpClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    """The canary's bearer token appears in no log, metric, /config, debug page or error,
    even when Flux rejects it and when a proxy in front echoes it back."""
    import logging

    import yaml

    from tests.conftest import make_state
    from ttft_exporter.config import load_config
    from ttft_exporter.errors import ConfigError
    from ttft_exporter.logs import JSONFormatter, LogfmtFormatter
    from ttft_exporter.server import create_app

    sentinel = "flux-SENTINEL-7c41e0"
    monkeypatch.setenv("FLUX_TEST_TOKEN_VAR", sentinel)
    flux = await make_flux_sim(auth=True, namespaces={"ttft": sentinel})
    # A gateway that echoes the Authorization header in its error, the worst case.
    flux.sim.set_fault(publish_status=502, publish_body=f"bad gateway for Bearer {sentinel}")
    path = tmp_path / "ttft.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "flux": [
                    {
                        "name": "main",
                        "url": flux.url,
                        "canary": {
                            "interval": "1s",
                            "timeout": "0.5s",
                            "token_env": "FLUX_TEST_TOKEN_VAR",
                        },
                    }
                ]
            }
        )
    )
    caplog.set_level(logging.DEBUG)
    config, _ = load_config(path)
    client = await aiohttp_client(create_app(make_state(config, path=path)))
    shown: list[str] = []
    failed = 'ttft_flux_canary_failures_total{flux="main",reason="http_5xx"} 1.0'

    async def scraped() -> str | None:
        metrics = await (await client.get("/metrics")).text()
        return metrics if failed in metrics else None

    # The canary loop checks within its first 1 s interval; the cap is for a starved box.
    shown.append(await poll(scraped, "the canary's first (failed) check", cap=20.0))
    shown.append(await (await client.get("/config")).text())
    shown.append(await (await client.get("/")).text())
    for record in caplog.records:
        shown += [
            record.getMessage(),
            LogfmtFormatter().format(record),
            JSONFormatter().format(record),
        ]
    bad = tmp_path / "bad.yml"
    bad.write_text(
        yaml.safe_dump(
            {
                "flux": [
                    {
                        "name": "main",
                        "url": "ftp://x",
                        "canary": {"token_env": "FLUX_TEST_TOKEN_VAR"},
                    }
                ]
            }
        )
    )
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    shown += [str(info.value), repr(config), str(config)]
    # The token was accepted, then the gateway echoed it: the failure was recorded...
    assert 'ttft_flux_canary_failures_total{flux="main",reason="http_5xx"} 1.0' in shown[0]
    assert any("bad gateway for Bearer <secret>" in t for t in shown)  # ...and redacted
    for text in shown:
        assert sentinel not in text
        assert "SENTINEL" not in text


class GarbageHTTP:
    """A raw TCP server that answers every request with `answer` and hangs up: an
    answer no HTTP client can parse, produced for real on the socket."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            writer.write(self.answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["status-line", "status-code", "header-name", "not-gzip", "chunk-size"],
)
async def test_malformed_http_answer_is_protocol_and_the_loop_goes_on(
    watch: WatchFactory, answer: bytes
) -> None:
    """Issue #8 item 3: before, aiohttp's ClientResponseError escaped the canary and
    its loop ended for good, with no metric. Now: reason=protocol, and the loop keeps
    checking on its interval."""
    server = GarbageHTTP(answer)
    async with server as url:
        config = flux_config(url, canary={"interval": "300ms", "timeout": "200ms"})
        w = await watch(config, start=False)
        assert w.canary is not None
        task = asyncio.create_task(w.canary.run())
        try:
            await w.wait_for(
                lambda: w.value("ttft_flux_canary_failures_total", reason="protocol") >= 3,
                timeout=10,
            )
            assert not task.done()
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert server.requests >= 3
    failures = w.value("ttft_flux_canary_checks_total", outcome="failure")
    assert failures == w.value("ttft_flux_canary_failures_total", reason="protocol")
