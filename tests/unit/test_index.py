"""The index page and its "probe now" button (issue #9 section 5): targets at a glance
with UTC timestamps, the Flux section from a real Flux simulator, every value escaped
(a hostile server's failure text, a model name with markup), and a probe that only a
same-site POST can start."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from tests.conftest import SimFactory, make_config, make_state
from ttft_exporter.index import iso_utc
from ttft_exporter.server import ExporterState, create_app
from ttft_exporter.sim.flux import FluxSimConfig, run_flux_sim
from ttft_exporter.sim.llm import ModelBehaviour

Client = TestClient[web.Request, web.Application]

FAST = ModelBehaviour(ttft=0.0, itl=0.0, tokens=2)
HOSTILE = "<script>alert('pwned')</script>&"
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
# Caps for a heavily loaded 2-core machine, not speed checks.
CAP = 20.0
# Long enough that no scheduled probe runs during a test after the first one.
INTERVAL = "10m"


async def wait_for(predicate: Callable[[], bool], what: str, cap: float = CAP) -> None:
    deadline = time.monotonic() + cap
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {cap}s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def hostile_llm() -> AsyncIterator[str]:
    """An endpoint answering 500 with markup in its body: the failure detail carries
    an excerpt of it to the index page."""

    async def handle(_request: web.Request) -> web.Response:
        return web.Response(status=500, text=f"upstream error {HOSTILE}")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


def chat(name: str, url: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "interval": INTERVAL, "timeout": "5s", **fields}


def probes_of(state: ExporterState, target: str) -> int:
    return sum(1 for r in state.history.records() if r.target == target)


async def test_index_shows_targets_at_a_glance_escaped(
    make_llm_sim: SimFactory, hostile_llm: str, aiohttp_client: AiohttpClient
) -> None:
    sim = await make_llm_sim(m=FAST)
    config = make_config(
        chat("good", f"{sim.url}/v1", model="m"),
        chat("bad", hostile_llm, model="<b>bold</b>"),
    )
    state = make_state(config)
    client = await aiohttp_client(create_app(state))
    await wait_for(
        lambda: probes_of(state, "good") > 0 and probes_of(state, "bad") > 0, "first probes"
    )

    resp = await client.get("/")
    page = await resp.text()

    assert resp.status == 200
    assert resp.content_type == "text/html"
    # Nothing the servers or the config said reaches the page unescaped.
    assert "<script>" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;&amp;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    rows = dict(re.findall(r"<tr><td>(good|bad)</td>(.*?)</tr>", page))
    good, bad = rows["good"], rows["bad"]
    assert "<td>openai-chat</td><td>m</td><td>success</td>" in good
    success = next(r for r in state.history.records() if r.target == "good")
    assert f"<td>{iso_utc(success.result.started_at)}</td>" in good
    assert len(ISO.findall(good)) == 2  # last probe, last success
    assert "<td>failure</td>" in bad
    assert "http_status: " in bad and "alert(&#x27;pwned" in bad
    assert len(ISO.findall(bad)) == 1 and "<td>-</td>" in bad  # never succeeded
    # The recent probes carry their start time, ISO 8601 in UTC.
    recent = page.split("<h2>Recent probes</h2>", 1)[1]
    assert len(ISO.findall(recent)) == 2
    # "probe now" is a POST form, never a GET link to /probe.
    assert 'href="probe?' not in page
    assert '<form method="post" action="-/probe-now">' in page
    assert '<input type="hidden" name="target" value="good">' in page


def test_iso_utc() -> None:
    assert iso_utc(1_771_065_045.0) == "2026-02-14T10:30:45Z"
    assert iso_utc(None) == "-"
    assert iso_utc(0.0) == "-"


async def test_index_flux_section_from_a_real_flux(aiohttp_client: AiohttpClient) -> None:
    runner, port = await run_flux_sim(FluxSimConfig(metrics_interval=0.2))
    try:
        config = make_config(
            flux=[
                {
                    "name": "main",
                    "url": f"http://127.0.0.1:{port}",
                    "canary": {"interval": "1s", "timeout": "500ms"},
                },
                # Nothing listens on port 9 (discard): never connected.
                {"name": "gone", "url": "http://127.0.0.1:9"},
            ]
        )
        state = make_state(config)
        client = await aiohttp_client(create_app(state))
        assert state.flux is not None

        def canary_done() -> bool:
            running = state.flux.running.get("main") if state.flux else None
            return running is not None and running.canary is not None and bool(running.canary.last)

        await wait_for(canary_done, "a canary result")
        page = await (await client.get("/")).text()
    finally:
        await runner.cleanup()

    flux = page.split("<h2>Flux</h2>", 1)[1].split("<h2>", 1)[0]
    main = re.search(r"<tr><td>main</td>(.*?)</tr>", flux)
    gone = re.search(r"<tr><td>gone</td>(.*?)</tr>", flux)
    assert main is not None and gone is not None
    assert "<td>connected</td>" in main.group(1)
    assert re.search(r"<td>\d+\.\ds ago</td>", main.group(1))
    assert re.search(r"<td>success: \d+\.\d{3}s at " + ISO.pattern + "</td>", main.group(1))
    assert "<td>disconnected</td><td>no message yet</td>" in gone.group(1)
    assert "<td>no canary configured</td>" in gone.group(1)


async def test_probe_now_is_a_post_that_redirects_to_its_log(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient
) -> None:
    sim = await make_llm_sim(m=FAST)
    state = make_state(make_config(chat("a", f"{sim.url}/v1", model="m")))
    client = await aiohttp_client(create_app(state))
    await wait_for(lambda: probes_of(state, "a") == 1, "the scheduled probe")
    sent = len(sim.state.requests)

    # A plain GET must not send a (possibly paid) request.
    resp = await client.get("/-/probe-now?target=a")
    assert resp.status == 405
    resp = await client.get("/")
    assert resp.status == 200
    assert len(sim.state.requests) == sent

    resp = await client.post("/-/probe-now", data={"target": "a"}, allow_redirects=False)
    assert resp.status == 303
    location = resp.headers["Location"]
    assert re.fullmatch(r"\.\./logs\?id=\d+", location)
    assert len(sim.state.requests) == sent + 1
    log = await client.get("/" + location.removeprefix("../"))
    assert (await log.text()).startswith("target a: success\n")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "https://evil.example"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Origin": "null"}, 403),
        ({}, 400),  # same site, no target
    ],
    ids=["other-origin", "fetch-metadata", "opaque-origin", "no-target"],
)
async def test_probe_now_refuses_cross_site_and_bad_requests(
    make_llm_sim: SimFactory,
    aiohttp_client: AiohttpClient,
    headers: dict[str, str],
    status: int,
) -> None:
    sim = await make_llm_sim(m=FAST)
    state = make_state(make_config(chat("a", f"{sim.url}/v1", model="m")))
    client = await aiohttp_client(create_app(state))
    await wait_for(lambda: probes_of(state, "a") == 1, "the scheduled probe")
    sent = len(sim.state.requests)
    data = {"target": "a"} if status == 403 else {}

    resp = await client.post("/-/probe-now", data=data, headers=headers, allow_redirects=False)

    assert resp.status == status
    assert len(sim.state.requests) == sent


async def test_probe_now_keeps_the_ad_hoc_rules(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient
) -> None:
    """One probe per target at a time: a second press while one runs is 429."""
    sim = await make_llm_sim(slow=ModelBehaviour(ttft=2.0, itl=0.0, tokens=2))
    state = make_state(make_config(chat("a", f"{sim.url}/v1", model="slow")))
    client = await aiohttp_client(create_app(state))
    await wait_for(lambda: probes_of(state, "a") == 1, "the scheduled probe")
    first = asyncio.create_task(
        client.post("/-/probe-now", data={"target": "a"}, allow_redirects=False)
    )
    await wait_for(lambda: "a" in state.executor._claims, "the first press to start")

    second = await client.post("/-/probe-now", data={"target": "a"}, allow_redirects=False)

    assert second.status == 429
    assert "Retry-After" in second.headers
    assert (await first).status == 303
    resp = await client.post("/-/probe-now", data={"target": "nope"})
    assert resp.status == 400
