"""The engine's network options against real servers on 127.0.0.1 (issue #10 §5): a
forward proxy the test runs (plain HTTP forwarding and CONNECT tunnelling, Basic
credentials, refusals) and redirect chains followed on request.

Timing bounds: the simulator's first-token delay is a floor that holds on any machine;
the ceilings are the delay plus 3 s, which holds on a 2-core box under `stress-ng
--cpu 2` (a probe on 127.0.0.1 costs milliseconds of CPU)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from tests.conftest import RunningSim, SimFactory, make_config, make_target, probe_once
from tests.forward_proxy import ForwardProxy
from tests.helpers import free_port
from ttft_exporter.errors import ConfigError, FailureReason
from ttft_exporter.sim.llm import LLMSimConfig, ModelBehaviour, create_llm_app

FIRST_TOKEN = 0.3  # the simulator's configured delay to the first token
SLACK = 3.0  # ceiling above it on a loaded 2-core machine
SLOW = ModelBehaviour(ttft=FIRST_TOKEN, itl=0.0, tokens=3)
PASSWORD = "pr0xy-SENTINEL-93ad"
PROXY_FRAGMENTS = (PASSWORD, "SENTINEL-93ad", "pr0xy-SENTINEL")


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    running = await ForwardProxy().start()
    yield running
    await running.close()


@pytest.fixture
async def auth_proxy() -> AsyncIterator[ForwardProxy]:
    running = await ForwardProxy(credentials=("probe", PASSWORD)).start()
    yield running
    await running.close()


@pytest.fixture
async def tls_sim(tmp_path: Path) -> AsyncIterator[tuple[RunningSim, Path]]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    runner = web.AppRunner(create_llm_app(LLMSimConfig(models={"m": SLOW})))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    yield RunningSim(runner, runner.addresses[0][1]), ca_file
    await runner.cleanup()


def assert_ttft_right(result: Any) -> None:
    assert result.success, result.detail
    assert FIRST_TOKEN <= result.time_to_first_token < FIRST_TOKEN + SLACK


def assert_no_proxy_secret(*texts: str) -> None:
    for text in texts:
        for fragment in PROXY_FRAGMENTS:
            assert fragment not in text, f"proxy password leaked: {text}"


# --- proxy_url -----------------------------------------------------------------------


async def test_http_target_goes_through_the_proxy(
    make_llm_sim: SimFactory, proxy: ForwardProxy
) -> None:
    sim = await make_llm_sim(m=SLOW)
    result = await probe_once(make_target(url=f"{sim.url}/v1", proxy_url=proxy.url))

    assert_ttft_right(result)
    # Plain forwarding: the absolute-form request line names the simulator.
    assert [(r.method, r.target) for r in proxy.requests] == [
        ("POST", f"{sim.url}/v1/chat/completions")
    ]
    assert len(sim.state.requests) == 1


async def test_https_target_is_tunnelled_with_connect(
    tls_sim: tuple[RunningSim, Path], proxy: ForwardProxy
) -> None:
    sim, ca_file = tls_sim
    target = make_target(
        url=f"https://127.0.0.1:{sim.port}/v1", proxy_url=proxy.url, tls={"ca_file": str(ca_file)}
    )
    result = await probe_once(target)

    assert_ttft_right(result)
    assert [(r.method, r.target) for r in proxy.requests] == [("CONNECT", f"127.0.0.1:{sim.port}")]
    assert result.phases["tls"] > 0  # the handshake with the target, inside the tunnel
    assert len(sim.state.requests) == 1


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_proxy_credentials_are_sent_and_never_shown(
    make_llm_sim: SimFactory,
    tls_sim: tuple[RunningSim, Path],
    auth_proxy: ForwardProxy,
    caplog: pytest.LogCaptureFixture,
    scheme: str,
) -> None:
    if scheme == "http":
        sim = await make_llm_sim(m=SLOW)
        fields: dict[str, Any] = {"url": f"{sim.url}/v1"}
    else:
        tls, ca_file = tls_sim
        fields = {"url": f"https://127.0.0.1:{tls.port}/v1", "tls": {"ca_file": str(ca_file)}}
    target = make_target(**fields, proxy_url=auth_proxy.url_with("probe", PASSWORD))
    result = await probe_once(target)

    assert_ttft_right(result)
    assert len(auth_proxy.requests) == 1 and auth_proxy.requests[0].proxy_authorization
    assert_no_proxy_secret(repr(target), str(target), str(target.redacted()), result.detail or "")
    assert target.redacted()["proxy_url"] == f"http://<secret>@127.0.0.1:{auth_proxy.port}"
    # The password is one of the target's secrets: redacted from every free text.
    assert target.redactor.redact(f"x {PASSWORD} y") == "x <secret> y"


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_wrong_proxy_credentials_are_failure_proxy(
    make_llm_sim: SimFactory,
    tls_sim: tuple[RunningSim, Path],
    auth_proxy: ForwardProxy,
    scheme: str,
) -> None:
    if scheme == "http":
        sim = await make_llm_sim(m=SLOW)
        fields: dict[str, Any] = {"url": f"{sim.url}/v1"}
    else:
        tls, ca_file = tls_sim
        fields = {"url": f"https://127.0.0.1:{tls.port}/v1", "tls": {"ca_file": str(ca_file)}}
    wrong = "wr0ng-SENTINEL-93ad"
    target = make_target(**fields, proxy_url=auth_proxy.url_with("probe", wrong))
    result = await probe_once(target)

    assert result.reason is FailureReason.PROXY, result.detail
    assert "407" in result.detail
    assert wrong not in result.detail and "SENTINEL" not in result.detail


async def test_refused_tunnel_is_failure_proxy(tls_sim: tuple[RunningSim, Path]) -> None:
    sim, ca_file = tls_sim
    refusing = await ForwardProxy(refuse_connect=403).start()
    try:
        target = make_target(
            url=f"https://127.0.0.1:{sim.port}/v1",
            proxy_url=refusing.url,
            tls={"ca_file": str(ca_file)},
        )
        result = await probe_once(target)
    finally:
        await refusing.close()
    assert result.reason is FailureReason.PROXY, result.detail
    assert result.detail == "proxy refused the tunnel: HTTP 403"
    assert list(sim.state.requests) == []


async def test_proxy_down_is_failure_proxy(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=SLOW)
    target = make_target(url=f"{sim.url}/v1", proxy_url=f"http://127.0.0.1:{free_port()}")
    result = await probe_once(target)
    assert result.reason is FailureReason.PROXY, result.detail
    assert result.detail.startswith("cannot connect to the proxy")
    assert list(sim.state.requests) == []


# --- proxy_from_environment ----------------------------------------------------------


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


async def test_proxy_from_environment(
    make_llm_sim: SimFactory, proxy: ForwardProxy, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    sim = await make_llm_sim(m=SLOW)
    clean_proxy_env.setenv("HTTP_PROXY", proxy.url)
    result = await probe_once(make_target(url=f"{sim.url}/v1", proxy_from_environment=True))
    assert_ttft_right(result)
    assert len(proxy.requests) == 1

    # Without the option the environment is ignored.
    result = await probe_once(make_target(url=f"{sim.url}/v1"))
    assert result.success and len(proxy.requests) == 1

    # NO_PROXY exempts the host.
    clean_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    result = await probe_once(make_target(url=f"{sim.url}/v1", proxy_from_environment=True))
    assert result.success and len(proxy.requests) == 1
    assert len(sim.state.requests) == 3


async def test_environment_proxy_credentials_are_secrets(
    auth_proxy: ForwardProxy, make_llm_sim: SimFactory, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    sim = await make_llm_sim(m=SLOW)
    clean_proxy_env.setenv("HTTP_PROXY", auth_proxy.url_with("probe", PASSWORD))
    target = make_target(url=f"{sim.url}/v1", proxy_from_environment=True)
    result = await probe_once(target)
    assert_ttft_right(result)
    assert target.redactor.redact(PASSWORD) == "<secret>"
    assert_no_proxy_secret(repr(target), str(target.redacted()))


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (
            {"proxy_url": "http://127.0.0.1:3128", "proxy_from_environment": True},
            "targets[0].proxy_url: set proxy_url or proxy_from_environment, not both",
        ),
        (
            {"proxy_url": f"https://u:{PASSWORD}@proxy:3128"},
            "targets[0].proxy_url: https:// proxies are not supported: use an http:// proxy "
            "(an https target is tunnelled through it with CONNECT, end to end encrypted)",
        ),
        (
            {"proxy_url": f"socks5://u:{PASSWORD}@proxy:1080"},
            "targets[0].proxy_url: must be an absolute http:// URL: "
            "http://[user:password@]host:port",
        ),
        (
            {"proxy_url": f"http://u:{PASSWORD}@proxy:3128/path?x=1"},
            "targets[0].proxy_url: must be http://[user:password@]host:port, with no path or query",
        ),
    ],
    ids=["both", "https-proxy", "socks", "path"],
)
def test_proxy_config_errors_name_the_field_and_hide_the_password(
    fields: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        make_config({"name": "a", "url": "http://127.0.0.1:9/v1", **fields})
    assert [str(p) for p in raised.value.problems] == [problem]
    assert_no_proxy_secret(str(raised.value), repr(raised.value))


def test_defaults_proxy_from_environment_yields_to_a_targets_proxy_url() -> None:
    config = make_config(
        {"name": "a", "url": "http://127.0.0.1:9/v1"},
        {"name": "b", "url": "http://127.0.0.1:9/v1", "proxy_url": "http://127.0.0.1:3128"},
        defaults={"proxy_from_environment": True},
    )
    assert [t.proxy_from_environment for t in config.targets] == [True, False]
    assert config.targets[1].proxy_url == "http://127.0.0.1:3128"


# --- follow_redirects ----------------------------------------------------------------


async def redirector(
    aiohttp_server: Any, location: str, *, delay: float = 0.0, status: int = 307
) -> tuple[Any, list[dict[str, str]]]:
    """A server answering every POST with a redirect to `location` after `delay`."""
    seen: list[dict[str, str]] = []

    async def redirect(request: web.Request) -> web.Response:
        import asyncio

        seen.append(dict(request.headers))
        await request.read()
        await asyncio.sleep(delay)
        return web.Response(status=status, headers={"Location": location})

    app = web.Application()
    app.router.add_post("/{tail:.*}", redirect)
    return await aiohttp_server(app), seen


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_followed_redirect_times_the_whole_chain(
    aiohttp_server: Any, make_llm_sim: SimFactory, status: int
) -> None:
    sim = await make_llm_sim(m=SLOW)
    hold = 0.3  # the redirecting server's own delay: part of the measured chain
    origin, seen = await redirector(
        aiohttp_server, f"{sim.url}/v1/chat/completions", delay=hold, status=status
    )
    target = make_target(
        url=f"http://127.0.0.1:{origin.port}/v1",
        follow_redirects=True,
        headers={"Authorization": "Bearer sk-same-host-key"},
    )
    result = await probe_once(target)

    assert result.success, result.detail
    ttft = result.time_to_first_token
    assert ttft is not None and hold + FIRST_TOKEN <= ttft < hold + FIRST_TOKEN + SLACK
    assert result.time_to_first_byte is not None and result.time_to_first_byte >= hold
    assert len(seen) == 1
    # The same host (another port): the credentials follow, the body is re-POSTed.
    (recorded,) = sim.state.requests
    assert (
        recorded.method == "POST" and recorded.headers["Authorization"] == "Bearer sk-same-host-key"
    )
    assert isinstance(recorded.body, dict) and recorded.body["model"] == "m"


async def test_redirect_to_another_host_drops_every_credential(
    aiohttp_server: Any, make_llm_sim: SimFactory
) -> None:
    sim = await make_llm_sim(m=SLOW)
    other = f"http://localhost:{sim.port}/v1/chat/completions"
    origin, seen = await redirector(aiohttp_server, other)
    headers = {
        "Authorization": "Bearer sk-cross-host-key",
        "X-Custom-Token": "ct-cross-host-secret",
        "X-Team": {"value": "ml", "secret": False},
    }
    target = make_target(
        url=f"http://127.0.0.1:{origin.port}/v1", follow_redirects=True, headers=headers
    )
    result = await probe_once(target)

    assert result.success, result.detail
    assert seen[0]["Authorization"] == "Bearer sk-cross-host-key"
    (recorded,) = sim.state.requests
    sent = {k.lower(): v for k, v in recorded.headers.items()}
    assert "authorization" not in sent and "x-custom-token" not in sent
    assert sent["x-team"] == "ml"  # a public header travels on


async def test_too_many_redirects_is_http_status(aiohttp_server: Any) -> None:
    port = free_port()
    loop_url = f"http://127.0.0.1:{port}/v1/chat/completions"
    seen: list[str] = []

    async def again(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(status=308, headers={"Location": loop_url})

    app = web.Application()
    app.router.add_post("/{tail:.*}", again)
    await aiohttp_server(app, port=port)
    target = make_target(url=f"http://127.0.0.1:{port}/v1", follow_redirects=True, max_redirects=3)
    result = await probe_once(target)

    assert result.reason is FailureReason.HTTP_STATUS
    assert result.detail == "HTTP 308: more than 3 redirects (max_redirects)"
    assert len(seen) == 4  # the request and the three redirects it may follow


async def test_redirect_not_followed_by_default_says_how_to(aiohttp_server: Any) -> None:
    origin, _ = await redirector(aiohttp_server, "http://127.0.0.1:9/v1/chat/completions")
    result = await probe_once(make_target(url=f"http://127.0.0.1:{origin.port}/v1"))
    assert result.reason is FailureReason.HTTP_STATUS
    assert result.detail == (
        "HTTP 307: redirect to 127.0.0.1:9 not followed (follow_redirects is off)"
    )
