"""Secrets never leave the exporter: an API key given through api_key_env, api_key_file or
an Authorization header (in a target or in `defaults`) must not show in logs, metrics,
debug pages, the config dump, error texts or object reprs."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from pytest_aiohttp import AiohttpClient, AiohttpServer

from tests.conftest import RunningSim, SimFactory, make_config, make_state
from tests.forward_proxy import ForwardProxy
from ttft_exporter.clock import SystemClock
from ttft_exporter.config import Config, TargetConfig, load_config, parse_config
from ttft_exporter.errors import ConfigError, FailureReason, ProbeFailure
from ttft_exporter.logs import JSONFormatter, LogfmtFormatter
from ttft_exporter.probes import PROTOCOL_NAMES, create_session, get_prober, get_protocol
from ttft_exporter.probes.base import ProbeResult
from ttft_exporter.server import ExporterState, create_app
from ttft_exporter.sim.llm import ModelBehaviour

Client = TestClient[web.Request, web.Application]

SENTINEL = "sk-SENTINEL-5f2a9c"
WRONG = "sk-WRONGKEY-0b7d31"  # a key the server rejects is a secret all the same
# Distinctive parts: a secret cut in half by a length limit must not show either.
FRAGMENTS = ("SENTINEL", "5f2a9c", "WRONGKEY", "0b7d31")
SOURCES = ["env", "file", "header", "defaults-header"]
FAST = ModelBehaviour(ttft=0.0, itl=0.0, tokens=2)


def assert_hidden(text: str, where: str) -> None:
    for secret in (SENTINEL, WRONG, *FRAGMENTS):
        assert secret not in text, f"secret {secret!r} leaked into {where}:\n{text}"


async def wait_for(predicate: Callable[[], bool], what: str, cap: float = 5.0) -> None:
    deadline = time.monotonic() + cap
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {cap}s waiting for {what}")
        await asyncio.sleep(0.01)


def key_fields(
    source: str, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tag: str
) -> dict[str, Any]:
    """Target fields that make the target send `key`, through `source`."""
    if source == "env":
        var = f"TTFT_TEST_KEY_{tag.upper()}"
        monkeypatch.setenv(var, key)
        return {"api_key_env": var}
    if source == "file":
        path = tmp_path / f"{tag}.key"
        path.write_text(f"{key}\n", encoding="utf-8")
        return {"api_key_file": str(path)}
    return {"headers": {"Authorization": f"Bearer {key}"}}


def secret_config(
    source: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    targets: dict[str, tuple[str, str]],
    **top: Any,
) -> Config:
    """Targets by name -> (base URL, key); with `defaults-header` the first target's key
    comes from the defaults block and the others override it."""
    out = []
    for index, (name, (url, key)) in enumerate(targets.items()):
        target: dict[str, Any] = {"name": name, "url": url}
        if source == "defaults-header":
            if index == 0:
                top["defaults"] = {"headers": {"Authorization": f"Bearer {key}"}}
            else:
                target["headers"] = {"Authorization": f"Bearer {key}"}
        else:
            target.update(key_fields(source, key, tmp_path, monkeypatch, name))
        out.append(target)
    return make_config(*out, **top)


async def echo_server(aiohttp_server: AiohttpServer) -> TestServer:
    """An OpenAI-like server that rejects every key and echoes it back, as some do."""

    async def reject(request: web.Request) -> web.Response:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        error = {
            "message": f"Incorrect API key provided: {key}. Check your key.",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
        return web.json_response({"error": error}, status=401)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", reject)
    return await aiohttp_server(app)


def formatted_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    out = [caplog.text]
    for record in caplog.records:
        out += [
            record.getMessage(),
            LogfmtFormatter().format(record),
            JSONFormatter().format(record),
            logging.Formatter().format(record),
        ]
    return out


# Every surface of a running exporter


@pytest.mark.parametrize("source", SOURCES)
async def test_secret_is_hidden_on_every_surface(
    make_llm_sim: SimFactory,
    aiohttp_client: AiohttpClient,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = await make_llm_sim(api_key=SENTINEL, m=FAST)
    url = f"{sim.url}/v1"
    config = secret_config(
        source, tmp_path, monkeypatch, {"good": (url, SENTINEL), "wrong": (url, WRONG)}
    )
    state = make_state(config)
    client = await aiohttp_client(create_app(state))
    await wait_for(lambda: len(state.history.records()) == 2, "the first probes")

    pages = {
        "/metrics": {},
        "/metrics (OpenMetrics)": {"Accept": "application/openmetrics-text"},
        "/probe?target=good&debug=true": {},
        "/probe?target=wrong&debug=true": {},
        "/probe?target=good": {},
        "/probe?target=wrong": {},
        "/config": {},
        "/": {},
    }
    texts: dict[str, str] = {}
    for page, headers in pages.items():
        resp = await client.get(page.split(" ")[0], headers=headers)
        assert resp.status == 200, page
        texts[page] = await resp.text()
    for record in state.history.records():
        resp = await client.get(f"/logs?id={record.id}")
        assert resp.status == 200
        texts[f"/logs?id={record.id}"] = await resp.text()
        texts[f"detail of probe {record.id}"] = record.result.detail
        texts[f"log of probe {record.id}"] = "\n".join(record.log)
    for index, text in enumerate(formatted_logs(caplog)):
        texts[f"log output {index}"] = text

    # The probes really sent the keys, so there was something to leak.
    sent = {r.headers.get("Authorization") for r in sim.state.requests}
    assert sent == {f"Bearer {SENTINEL}", f"Bearer {WRONG}"}
    results = {r.target: r.result for r in state.history.records()}
    assert results["good"].success
    assert results["wrong"].reason is FailureReason.HTTP_STATUS
    assert results["wrong"].detail.startswith("HTTP 401: ")
    assert "probe failed: http_status (HTTP 401: " in texts["/probe?target=wrong&debug=true"]
    assert any(
        r.levelno == logging.WARNING and r.getMessage() == "probe failed" for r in caplog.records
    )
    assert any(
        r.levelno == logging.DEBUG and r.getMessage() == "probe succeeded" for r in caplog.records
    )
    for where, text in texts.items():
        assert_hidden(text, where)


@pytest.mark.parametrize("source", SOURCES)
async def test_config_page_shows_secret_headers_as_placeholders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aiohttp_client: AiohttpClient, source: str
) -> None:
    url = "http://127.0.0.1:9/v1"
    config = secret_config(source, tmp_path, monkeypatch, {"a": (url, SENTINEL), "b": (url, WRONG)})
    client = await aiohttp_client(create_app(make_state(config)))

    data = yaml.safe_load(await (await client.get("/config")).text())

    if source == "defaults-header":
        assert data["defaults"]["headers"] == {"Authorization": "<secret>"}
    if source in ("header", "defaults-header"):
        assert data["targets"][0]["headers"] == {"Authorization": "<secret>"}
    assert_hidden(yaml.safe_dump(data), "/config")


# Object reprs and config errors


def _repr_cases() -> list[Any]:
    cases = []
    for source in SOURCES:
        cases.append(pytest.param(source, id=source))
    return cases


@pytest.mark.parametrize("source", _repr_cases())
def test_str_and_repr_of_config_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    config = secret_config(
        source, tmp_path, monkeypatch, {"a": ("http://127.0.0.1:9/v1", SENTINEL)}
    )
    target = config.targets[0]
    assert target.secrets() != []  # the target holds the key
    for obj in (config, target, config.defaults, target.api_key):
        assert_hidden(str(obj), f"str({type(obj).__name__})")
        assert_hidden(repr(obj), f"repr({type(obj).__name__})")
        assert_hidden(f"{obj!r} {obj}", f"format({type(obj).__name__})")


BASE = {"name": "a", "protocol": "openai-chat", "url": "http://127.0.0.1:9/v1", "model": "m"}


@pytest.mark.parametrize(
    ("source", "extra", "problem"),
    [
        (
            "env",
            {"prompt": "hi", "timeout": "20s"},
            "targets[0].timeout: must be below interval (15s)",
        ),
        (
            "file",
            {"prompt": "hi", "url": "ftp://x"},
            "targets[0].url: must be an absolute http:// or https:// URL",
        ),
        ("header", {"prompt": "hi", "bogus": 1}, "targets[0].bogus: unknown field"),
        (
            "header",
            {"prompt": "hi", "api_key_env": "TTFT_TEST_KEY_A"},
            "targets[0].headers: Authorization is set by api_key_env/api_key_file; do not set both",
        ),
        (
            "env",
            {"prompt": "hi", "max_tokens": SENTINEL},
            "targets[0].max_tokens: must be a valid integer, unable to parse string as an integer",
        ),
        ("header", {}, "targets[0].prompt: set exactly one of prompt or messages"),
    ],
    ids=[
        "env-timeout",
        "file-url",
        "header-unknown",
        "header-and-env",
        "secret-as-value",
        "header-no-prompt",
    ],
)
def test_config_errors_never_show_the_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    extra: dict[str, Any],
    problem: str,
) -> None:
    monkeypatch.setenv("TTFT_TEST_KEY_A", SENTINEL)
    target = {**BASE, **key_fields(source, SENTINEL, tmp_path, monkeypatch, "a"), **extra}
    path = tmp_path / "ttft.yml"
    path.write_text(yaml.safe_dump({"targets": [target]}), encoding="utf-8")

    with pytest.raises(ConfigError) as parsed:
        parse_config({"targets": [target]})
    with pytest.raises(ConfigError) as loaded:
        load_config(path)

    assert [str(p) for p in parsed.value.problems] == [problem]
    assert str(loaded.value) == f"invalid configuration {path}:\n  {problem}"
    for exc in (parsed.value, loaded.value):
        for text in (str(exc), repr(exc), "".join(traceback.format_exception(exc))):
            assert_hidden(text, "ConfigError")


@pytest.mark.parametrize("source", SOURCES)
async def test_failed_reload_response_never_shows_the_key(
    make_llm_sim: SimFactory,
    aiohttp_client: AiohttpClient,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = await make_llm_sim(api_key=SENTINEL, m=FAST)
    config = secret_config(source, tmp_path, monkeypatch, {"a": (f"{sim.url}/v1", SENTINEL)})
    data = config.model_dump(mode="json", exclude_defaults=True)
    data["defaults"] = config.defaults.model_dump(mode="json", exclude_none=True)
    data["targets"][0]["timeout"] = "1m"  # above the interval: invalid
    path = tmp_path / "ttft.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    client = await aiohttp_client(create_app(make_state(config, path=path)))

    resp = await client.post("/-/reload")
    text = await resp.text()

    assert resp.status == 500
    assert text == (
        f"failed to reload config: invalid configuration {path}:\n"
        "  targets[0].timeout: must be below interval (10s)\n"
    )
    for where, log_text in enumerate(formatted_logs(caplog)):
        assert_hidden(log_text, f"log output {where}")


# A probe failing at every stage


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


STAGES: dict[str, tuple[ModelBehaviour | None, dict[str, Any], FailureReason]] = {
    # name: (simulator model, target fields, expected reason)
    "dns": (None, {"url": "http://ttft-test.invalid/v1"}, FailureReason.DNS),
    "connect": (None, {"url": "http://127.0.0.1:{refused}/v1"}, FailureReason.CONNECT),
    "tls": (FAST, {"url": "https://127.0.0.1:{sim}/v1"}, FailureReason.TLS),
    "http-status": (ModelBehaviour(status=429), {}, FailureReason.HTTP_STATUS),
    "timeout-headers": (ModelBehaviour(headers_delay=2.0), {}, FailureReason.TIMEOUT),
    "timeout-stream": (ModelBehaviour(ttft=0.0, stall_after=1), {}, FailureReason.TIMEOUT),
    "stream-error": (ModelBehaviour(ttft=0.0, error_after=1), {}, FailureReason.STREAM_ERROR),
    "dropped": (ModelBehaviour(ttft=0.0, drop_after=1), {}, FailureReason.PROTOCOL),
    "malformed": (ModelBehaviour(ttft=0.0, malformed_after=1), {}, FailureReason.PROTOCOL),
    "no-tokens": (ModelBehaviour(ttft=0.0, tokens=0), {}, FailureReason.NO_TOKENS),
    "mismatch": (FAST, {"expect": "^never$"}, FailureReason.CONTENT_MISMATCH),
}


async def run_probe(
    target: TargetConfig, deadline: float
) -> tuple[BaseException, ProbeResult, list[str]]:
    """Run one probe, returning what it raised, its failed result and its log."""
    async with create_session(target.tls, reuse_connections=False) as session:
        prepared = get_prober(target.protocol)(target, session, SystemClock())
        try:
            async with asyncio.timeout(deadline):
                await prepared.run()
        except Exception as exc:  # noqa: BLE001 - the executor's boundary, observed
            return exc, prepared.failure(exc, deadline), prepared.log
    pytest.fail("the probe succeeded")


def exception_texts(exc: BaseException) -> list[str]:
    texts = [str(exc), "".join(traceback.format_exception(exc))]
    if isinstance(exc, ProbeFailure):
        texts += [repr(exc), exc.detail]
    return texts


@pytest.mark.parametrize("source", ["env", "file", "header"])
@pytest.mark.parametrize("stage", list(STAGES))
async def test_probe_failing_at_every_stage_never_shows_the_key(
    make_llm_sim: SimFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    stage: str,
) -> None:
    behaviour, fields, reason = STAGES[stage]
    sim: RunningSim | None = None
    if behaviour is not None:
        sim = await make_llm_sim(api_key=SENTINEL, m=behaviour)
    fields = {
        "url": f"{sim.url}/v1" if sim else "",
        **fields,
    }
    fields["url"] = fields["url"].format(refused=_refused_port(), sim=sim.port if sim else 0)
    target = make_config(
        {"name": "a", **fields, **key_fields(source, SENTINEL, tmp_path, monkeypatch, "a")}
    ).targets[0]

    # Only the timeout stages wait for the deadline (0.3 s, under the 2 s header delay
    # and the stall); the others end by themselves, and a 0.3 s deadline on them raced
    # the failure on a loaded box (DNS of .invalid through the resolver's thread took
    # longer: TIMEOUT instead of DNS). 10 s is the default target timeout.
    deadline = 0.3 if reason is FailureReason.TIMEOUT else 10.0
    exc, result, log = await run_probe(target, deadline=deadline)

    assert result.reason is reason, result.detail
    if sim is not None and stage != "tls":
        assert sim.state.requests[-1].headers["Authorization"] == f"Bearer {SENTINEL}"
    for text in [*exception_texts(exc), result.detail, *log]:
        assert_hidden(text, f"{stage} failure")


# A server that echoes the key back


def _echo_cases() -> list[Any]:
    return [
        pytest.param(
            source,
            id=source,
        )
        for source in ("env", "file", "header")
    ]


@pytest.mark.parametrize("source", _echo_cases())
async def test_key_echoed_by_the_server_is_redacted(
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await echo_server(aiohttp_server)
    config = secret_config(
        source, tmp_path, monkeypatch, {"echo": (str(server.make_url("/v1")), SENTINEL)}
    )
    state: ExporterState = make_state(config)
    client = await aiohttp_client(create_app(state))
    await wait_for(lambda: len(state.history.records()) == 1, "the first probe")

    debug = await (await client.get("/probe?target=echo&debug=true")).text()
    record = state.history.records()[0]
    logs = await (await client.get(f"/logs?id={record.id}")).text()

    assert record.result.reason is FailureReason.HTTP_STATUS
    assert record.result.detail == (
        'HTTP 401: {"error": {"message": "Incorrect API key provided: <secret>. Check your key.", '
        '"type": "invalid_request_error", "code": "invalid_api_key"}}'
    )
    for where, text in {
        "detail": record.result.detail,
        "/probe debug": debug,
        "/logs": logs,
        **{f"log output {i}": t for i, t in enumerate(formatted_logs(caplog))},
    }.items():
        assert_hidden(text, where)


@pytest.mark.parametrize("source", _echo_cases())
async def test_key_echoed_by_the_server_is_not_in_the_exception(
    aiohttp_server: AiohttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    server = await echo_server(aiohttp_server)
    target = make_config(
        {
            "name": "a",
            "url": str(server.make_url("/v1")),
            **key_fields(source, SENTINEL, tmp_path, monkeypatch, "a"),
        }
    ).targets[0]

    exc, result, _ = await run_probe(target, deadline=2.0)

    assert result.reason is FailureReason.HTTP_STATUS
    for text in exception_texts(exc):
        assert_hidden(text, "the raised ProbeFailure")


async def test_key_cut_by_the_excerpt_limit_is_not_partly_shown(
    aiohttp_server: AiohttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def reject(request: web.Request) -> web.Response:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        # The excerpt keeps 200 characters: the key starts 15 before the cut.
        return web.Response(status=401, text="x" * 185 + key + " is not valid")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", reject)
    server = await aiohttp_server(app)
    monkeypatch.setenv("TTFT_TEST_KEY", SENTINEL)
    target = make_config(
        {"name": "a", "url": str(server.make_url("/v1")), "api_key_env": "TTFT_TEST_KEY"}
    ).targets[0]

    _, result, log = await run_probe(target, deadline=2.0)

    assert result.reason is FailureReason.HTTP_STATUS
    assert result.detail.startswith("HTTP 401: xxxxx")
    for text in [result.detail, *log]:
        assert_hidden(text, "the failure detail")


# A hostile server that echoes the key back in every form (issue #8 item 13 and 14)

KEY = "SENTINEL-SECRET-0123456789"


def assert_no_prefix(text: str, where: str) -> None:
    """Neither the key nor any 8+ character prefix of it is in `text`."""
    for length in range(8, len(KEY) + 1):
        assert KEY[:length] not in text, f"{KEY[:length]!r} leaked into {where}:\n{text}"


def _u_escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if i % 2 else c for i, c in enumerate(text))


def _percent(text: str) -> str:
    """Every byte percent-encoded (valid in a URL; quote() would leave this key as is)."""
    return "".join(f"%{b:02X}" for b in text.encode())


def _sse(*events: str) -> bytes:
    return "".join(f"data: {e}\n\n" for e in events).encode()


ROLE = '{"choices":[{"index":0,"delta":{"role":"assistant"}}]}'
ECHOES: dict[str, tuple[int, Callable[[str], bytes]]] = {
    # name: (status, body from the key the server received)
    # 4096 is the engine's bounded read: the key straddles it, before whitespace collapse.
    "error-body-straddles-read": (401, lambda k: (" \n" * 2036 + "bad key: " + k).encode()),
    "error-body-straddles-excerpt": (401, lambda k: ("x" * 180 + k + " y" * 3000).encode()),
    "json-u-escaped": (
        401,
        lambda k: ('{"error": {"message": "Incorrect API key: ' + _u_escaped(k) + '"}}').encode(),
    ),
    "url-encoded": (
        401,
        lambda k: ("see https://example.com/login?key=" + _percent(k)).encode(),
    ),
    # The engine used to keep data[:80] of a malformed event: the key straddles 80.
    "malformed-json": (200, lambda k: _sse(ROLE, '{"x": "' + "y" * 70 + k + '", ')),
    "stream-error": (
        200,
        lambda k: _sse(ROLE, json.dumps({"error": {"message": "z" * 1990 + k + " " * 50}})),
    ),
}
HEADER_SOURCES = [
    "api_key_env",
    "x-auth-token",
    "ocp-apim-value-env",
    # Gemini API (x-goog-api-key) and Vertex AI (a Bearer token re-read per probe) (#10)
    "gemini-api-key",
    "vertex-token-file",
    # Azure OpenAI: the key in api-key (#10)
    "azure-api-key",
]
# The base path each protocol's URL names on the hostile server (Gemini, Azure).
_GEMINI_PATHS = {
    "gemini-api-key": "/v1beta",
    "vertex-token-file": "/v1/projects/p/locations/l/publishers/google",
    "azure-api-key": "/",
}


def _source_fields(
    source: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path | None = None
) -> dict[str, Any]:
    monkeypatch.setenv("TTFT_TEST_ECHO_KEY", KEY)
    if source == "gemini-api-key":
        return {"protocol": "gemini", "api_key_env": "TTFT_TEST_ECHO_KEY"}
    if source == "azure-api-key":
        return {"protocol": "azure-openai", "api_key_env": "TTFT_TEST_ECHO_KEY"}
    if source == "vertex-token-file":
        assert tmp_path is not None
        token = tmp_path / "vertex.token"
        token.write_text(KEY)
        return {"protocol": "gemini", "access_token_file": str(token)}
    if source == "api_key_env":
        return {"api_key_env": "TTFT_TEST_ECHO_KEY"}
    if source == "x-auth-token":
        return {"headers": {"X-Auth-Token": KEY, "X-Team": {"value": "ml", "secret": False}}}
    return {"headers": {"Ocp-Apim-Subscription-Key": {"value_env": "TTFT_TEST_ECHO_KEY"}}}


async def hostile_server(aiohttp_server: AiohttpServer, echo: str) -> TestServer:
    status, body = ECHOES[echo]

    async def handler(request: web.Request) -> web.StreamResponse:
        sent = [v.removeprefix("Bearer ") for v in request.headers.values() if "SENTINEL" in v]
        assert sent == [KEY], "the probe did not send the key"
        content_type = "text/event-stream" if status == 200 else "text/plain"
        return web.Response(status=status, body=body(sent[0]), content_type=content_type)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    for path in _GEMINI_PATHS.values():
        app.router.add_post(f"{path}/models/{{action}}", handler)
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", handler)
    return await aiohttp_server(app)


async def echo_surfaces(
    aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture, config: Config
) -> tuple[ProbeResult, ProbeResult, dict[str, str]]:
    """Serve `config` (one target, `echo`) until its first probe, then probe once more
    directly: both results, and every text a user or a log could see (the pages, the
    probe's detail, answer and log, the exception, the log output) by where."""
    state = make_state(config)
    client = await aiohttp_client(create_app(state))
    await wait_for(lambda: len(state.history.records()) == 1, "the first probe")

    texts: dict[str, str] = {}
    for page in ("/probe?target=echo&debug=true", "/config", "/metrics", "/"):
        resp = await client.get(page)
        assert resp.status == 200, page
        texts[page] = await resp.text()
    record = state.history.records()[-1]
    texts["/logs"] = await (await client.get(f"/logs?id={record.id}")).text()
    texts["detail"] = record.result.detail
    texts["answer"] = record.result.answer_excerpt
    exc, result, log = await run_probe(config.targets[0], deadline=2.0)
    for index, text in enumerate([*exception_texts(exc), result.detail, *log]):
        texts[f"exception {index}"] = text
    for index, text in enumerate(formatted_logs(caplog)):
        texts[f"log output {index}"] = text
    return record.result, result, texts


@pytest.mark.parametrize("source", HEADER_SOURCES)
@pytest.mark.parametrize("echo", list(ECHOES))
async def test_echoed_key_never_leaks_in_any_form(
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    source: str,
    echo: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await hostile_server(aiohttp_server, echo)
    url = str(server.make_url(_GEMINI_PATHS.get(source, "/v1")))
    config = make_config(
        {"name": "echo", "url": url, **_source_fields(source, monkeypatch, tmp_path)}
    )
    first, _, texts = await echo_surfaces(aiohttp_client, caplog, config)

    expected = FailureReason.HTTP_STATUS if ECHOES[echo][0] != 200 else None
    assert first.reason in (
        {expected} if expected else {FailureReason.PROTOCOL, FailureReason.STREAM_ERROR}
    )
    # The key was either replaced, or beyond a cut made after redaction.
    assert "<secret>" in first.detail or first.detail.endswith("…")
    for where, text in texts.items():
        assert_no_prefix(text, where)


@pytest.mark.parametrize("source", ["x-auth-token", "ocp-apim-value-env"])
async def test_every_header_value_is_masked_unless_public(
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    server = await hostile_server(aiohttp_server, "json-u-escaped")
    fields = _source_fields(source, monkeypatch)
    config = make_config(
        {"name": "echo", "url": str(server.make_url("/v1")), **fields},
        defaults={"headers": {"X-Org": "org-SENTINEL-defaults"}},
    )
    client = await aiohttp_client(create_app(make_state(config)))

    shown = yaml.safe_load(await (await client.get("/config")).text())
    debug = await (await client.get("/probe?target=echo&debug=true")).text()

    assert shown["defaults"]["headers"] == {"X-Org": "<secret>"}
    headers = shown["targets"][0]["headers"]
    if source == "x-auth-token":
        assert headers == {
            "X-Auth-Token": "<secret>",
            "X-Team": {"value": "ml", "secret": False},
            "X-Org": "<secret>",
        }
        assert "X-Team:\n    value: ml\n" in debug
    else:
        assert headers == {
            "Ocp-Apim-Subscription-Key": {"value_env": "TTFT_TEST_ECHO_KEY", "secret": True},
            "X-Org": "<secret>",
        }
    for text in (yaml.safe_dump(shown), debug):
        assert_no_prefix(text, "/config or /probe?debug")
        assert "org-SENTINEL-defaults" not in text


# Every protocol's own auth header (issue #10): the key a protocol sends in its header
# (named by its model in the registry: `auth_header`, `auth_scheme`) reaches the server
# there and is hidden on every surface, whatever the stage a probe fails at, and when a
# server echoes it back in the protocol's own error and malformed events. One table,
# one entry per registered protocol: test_every_registered_protocol_has_a_sentinel_case
# fails when a protocol is added to PROTOCOLS without one.


def _ndjson(*lines: str) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()


def _data(*events: str, space: str = " ") -> bytes:
    # TGI writes `data:` without the space.
    return "".join(f"data:{space}{e}\n\n" for e in events).encode()


def _named(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()


def _long(k: str) -> str:
    """An error message with the key past the excerpt limit, trailing spaces after it."""
    return "z" * 1990 + k + " " * 50


def _cut(k: str) -> str:
    """The start of a JSON object, cut with the key straddling the old 80-character
    excerpt of a malformed event."""
    return '{"x": "' + "y" * 70 + k + '", '


def _openai_error(k: str) -> bytes:
    return _data(ROLE, json.dumps({"error": {"message": _long(k)}}))


def _openai_malformed(k: str) -> bytes:
    return _data(ROLE, _cut(k))


TGI_TOKEN = '{"index":1,"token":{"id":5,"text":"Hi","special":false}}'
OLLAMA_ECHOES: dict[str, Callable[[str], bytes]] = {
    "error-event": lambda k: _ndjson(
        '{"response":"","done":false}', json.dumps({"error": _long(k)})
    ),
    "error-event-short": lambda k: _ndjson(json.dumps({"error": f"bad key {k}"})),
    "malformed-event": lambda k: _ndjson(_cut(k)),
}


@dataclass(frozen=True)
class ProtocolCase:
    """How the sentinel tests reach one protocol: the base its target URL names under a
    server's root, the path its probe posts to there (the simulator mode's route), and
    how its server writes the key back inside a 200 stream: `echoes` names a body per
    echo, with at least an error event and a malformed event."""

    base: str
    path: str
    echoes: dict[str, Callable[[str], bytes]]
    content_type: str = "text/event-stream"


PROTOCOL_CASES: dict[str, ProtocolCase] = {
    "openai-chat": ProtocolCase(
        "/v1",
        "/v1/chat/completions",
        {"error-event": _openai_error, "malformed-event": _openai_malformed},
    ),
    "openai-completions": ProtocolCase(
        "/v1",
        "/v1/completions",
        {"error-event": _openai_error, "malformed-event": _openai_malformed},
    ),
    "gemini": ProtocolCase(
        "/v1beta",
        "/v1beta/models/m:streamGenerateContent",
        {
            "error-event": lambda k: _data(
                json.dumps({"error": {"code": 500, "message": _long(k), "status": "INTERNAL"}})
            ),
            "malformed-event": lambda k: _data(_cut(k)),
        },
    ),
    "azure-openai": ProtocolCase(
        "",
        "/openai/deployments/m/chat/completions",
        {"error-event": _openai_error, "malformed-event": _openai_malformed},
    ),
    "ollama-chat": ProtocolCase("", "/api/chat", OLLAMA_ECHOES, "application/x-ndjson"),
    "ollama-generate": ProtocolCase("", "/api/generate", OLLAMA_ECHOES, "application/x-ndjson"),
    "tgi": ProtocolCase(
        "",
        "/generate_stream",
        {
            "error-event": lambda k: _data(
                TGI_TOKEN,
                json.dumps({"error": _long(k), "error_type": "generation"}),
                space="",
            ),
            "error-event-short": lambda k: _data(
                json.dumps({"error": f"Authorization {k} refused", "error_type": "validation"}),
                space="",
            ),
            "malformed-event": lambda k: _data(TGI_TOKEN, _cut(k), space=""),
        },
    ),
    "anthropic": ProtocolCase(
        "",
        "/v1/messages",
        {
            "error-event": lambda k: _named(
                "error",
                json.dumps(
                    {"type": "error", "error": {"type": "api_error", "message": "z" * 1990 + k}}
                ),
            ),
            "malformed-event": lambda k: _named(
                "content_block_delta",
                '{"type":"content_block_delta","delta":{"text":"' + "y" * 70 + k,
            ),
        },
    ),
    "openai-responses": ProtocolCase(
        "/v1",
        "/v1/responses",
        {
            "error-event": lambda k: _named(
                "error",
                json.dumps({"type": "error", "code": "server_error", "message": "z" * 1990 + k}),
            ),
            "malformed-event": lambda k: _named(
                "response.output_text.delta",
                '{"type":"response.output_text.delta","delta":"' + "y" * 70 + k,
            ),
        },
    ),
}
# The stages a probe fails at whatever the key source; the rest run with api_key_env.
SOURCE_STAGES = ["http-status", "timeout-stream", "stream-error", "dropped", "malformed"]
STAGE_CASES = [
    pytest.param(protocol, stage, source, id=f"{protocol}-{stage}-{source}")
    for protocol in PROTOCOL_CASES
    for stage in STAGES
    for source in ("env", "file", "header")
    if source == "env" or stage in SOURCE_STAGES
]
ECHO_CASES = [
    pytest.param(protocol, echo, id=f"{protocol}-{echo}")
    for protocol, case in PROTOCOL_CASES.items()
    for echo in ["error-body", *case.echoes]
]


def test_every_registered_protocol_has_a_sentinel_case() -> None:
    # A protocol added to the registry without a case here would send its key in a
    # header no sentinel test ever looked at.
    assert set(PROTOCOL_CASES) == set(PROTOCOL_NAMES)
    for protocol, case in PROTOCOL_CASES.items():
        assert {"error-event", "malformed-event"} <= set(case.echoes), protocol


def protocol_key_fields(
    protocol: str, source: str, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tag: str
) -> dict[str, Any]:
    """Target fields that make a `protocol` target send `key` in its auth header."""
    if source != "header":
        return key_fields(source, key, tmp_path, monkeypatch, tag)
    model = get_protocol(protocol).model
    return {"headers": {model.auth_header: f"{model.auth_scheme}{key}"}}


def sent_auth(sim: RunningSim, protocol: str) -> set[str | None]:
    header = get_protocol(protocol).model.auth_header
    return {r.headers.get(header) for r in sim.state.requests}


@pytest.mark.parametrize("source", ["env", "file", "header"])
@pytest.mark.parametrize("protocol", list(PROTOCOL_CASES))
async def test_protocol_key_is_hidden_on_every_surface(
    make_llm_sim: SimFactory,
    aiohttp_client: AiohttpClient,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
    source: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = await make_llm_sim(api_key=SENTINEL, m=FAST)
    url = f"{sim.url}{PROTOCOL_CASES[protocol].base}"
    targets = [
        {
            "name": name,
            "protocol": protocol,
            "url": url,
            **protocol_key_fields(protocol, source, key, tmp_path, monkeypatch, name),
        }
        for name, key in (("good", SENTINEL), ("wrong", WRONG))
    ]
    state = make_state(make_config(*targets))
    client = await aiohttp_client(create_app(state))
    await wait_for(lambda: len(state.history.records()) == 2, "the first probes")

    texts: dict[str, str] = {}
    for page in ("/metrics", "/probe?target=good&debug=true", "/probe?target=wrong&debug=true"):
        resp = await client.get(page)
        assert resp.status == 200, page
        texts[page] = await resp.text()
    texts["/config"] = await (await client.get("/config")).text()
    for record in state.history.records():
        texts[f"/logs?id={record.id}"] = await (await client.get(f"/logs?id={record.id}")).text()
        texts[f"detail of probe {record.id}"] = record.result.detail
        texts[f"log of probe {record.id}"] = "\n".join(record.log)
    for index, text in enumerate(formatted_logs(caplog)):
        texts[f"log output {index}"] = text

    # The probes really sent the keys, in the protocol's header, so something could leak.
    model = get_protocol(protocol).model
    assert sent_auth(sim, protocol) == {
        f"{model.auth_scheme}{SENTINEL}",
        f"{model.auth_scheme}{WRONG}",
    }
    results = {r.target: r.result for r in state.history.records()}
    assert results["good"].success, results["good"].detail
    assert results["wrong"].reason is FailureReason.HTTP_STATUS
    for where, text in texts.items():
        assert_hidden(text, where)


@pytest.mark.parametrize(("protocol", "stage", "source"), STAGE_CASES)
async def test_protocol_probe_failing_at_every_stage_never_shows_the_key(
    make_llm_sim: SimFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
    stage: str,
    source: str,
) -> None:
    behaviour, fields, reason = STAGES[stage]
    sim = await make_llm_sim(api_key=SENTINEL, m=behaviour) if behaviour is not None else None
    case = PROTOCOL_CASES[protocol]
    fields = {"url": f"{sim.url}{case.base}" if sim else "", **fields}
    fields["url"] = fields["url"].format(refused=_refused_port(), sim=sim.port if sim else 0)
    target = make_config(
        {
            "name": "a",
            "protocol": protocol,
            **fields,
            **protocol_key_fields(
                protocol, source, SENTINEL, tmp_path, monkeypatch, protocol.replace("-", "_")
            ),
        }
    ).targets[0]

    # Only the timeout stages wait for the deadline (0.3 s, under the 2 s header delay
    # and the stall); the others end by themselves, and a 0.3 s deadline on them raced
    # the failure on a loaded box (DNS of .invalid through the resolver's thread took
    # longer: TIMEOUT instead of DNS). 10 s is the default target timeout.
    deadline = 0.3 if reason is FailureReason.TIMEOUT else 10.0
    exc, result, log = await run_probe(target, deadline=deadline)

    # The simulator checks the key in the protocol's header: a wrong one is HTTP 401.
    assert result.reason is reason, result.detail
    if sim is not None and stage != "tls":
        model = get_protocol(protocol).model
        assert sent_auth(sim, protocol) == {f"{model.auth_scheme}{SENTINEL}"}
        recorded = sim.state.requests[-1]
        assert recorded.path == case.path
        assert_hidden(json.dumps(recorded.to_json()), "/sim/requests")
    for text in [*exception_texts(exc), result.detail, *log]:
        assert_hidden(text, f"{protocol} {stage} failure")


@pytest.mark.parametrize(("protocol", "echo"), ECHO_CASES)
async def test_protocol_key_echoed_by_the_server_never_leaks(
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
    echo: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    case = PROTOCOL_CASES[protocol]
    model = get_protocol(protocol).model

    async def handler(request: web.Request) -> web.StreamResponse:
        key = request.headers.get(model.auth_header, "").removeprefix(model.auth_scheme)
        assert key == KEY, "the probe did not send the key in its auth header"
        if echo == "error-body":
            body = json.dumps({"type": "error", "error": {"message": f"bad key {key}"}})
            return web.Response(status=401, text=body, content_type="application/json")
        return web.Response(body=case.echoes[echo](key), content_type=case.content_type)

    app = web.Application()
    app.router.add_post(case.path, handler)
    server = await aiohttp_server(app)
    monkeypatch.setenv("TTFT_TEST_ECHO_KEY", KEY)
    config = make_config(
        {
            "name": "echo",
            "protocol": protocol,
            "url": str(server.make_url(case.base)).rstrip("/"),
            "api_key_env": "TTFT_TEST_ECHO_KEY",
        }
    )
    first, result, texts = await echo_surfaces(aiohttp_client, caplog, config)

    expected = (
        FailureReason.HTTP_STATUS
        if echo == "error-body"
        else FailureReason.PROTOCOL
        if echo == "malformed-event"
        else FailureReason.STREAM_ERROR
    )
    assert first.reason is expected, first.detail
    assert result.reason is expected, result.detail
    # The key was either replaced, or beyond a cut made after redaction.
    for detail in (first.detail, result.detail):
        assert "<secret>" in detail or detail.endswith("…"), detail
    for where, text in texts.items():
        assert_no_prefix(text, where)


# Proxy credentials (issue #10 §5)


@pytest.mark.parametrize("source", ["proxy_url", "environment"])
async def test_proxy_password_is_hidden_on_every_surface(
    make_llm_sim: SimFactory,
    aiohttp_client: AiohttpClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    """A real forward proxy that accepts SENTINEL and refuses WRONG (407): both
    passwords are secrets, on every surface of a running exporter."""
    caplog.set_level(logging.DEBUG)
    proxy = await ForwardProxy(credentials=("probe", SENTINEL)).start()
    try:
        sim = await make_llm_sim(m=FAST)
        url = f"{sim.url}/v1"
        for name in ("http_proxy", "https_proxy", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(name.upper(), raising=False)
        if source == "proxy_url":
            good = {"proxy_url": proxy.url_with("probe", SENTINEL)}
            wrong = {"proxy_url": proxy.url_with("probe", WRONG)}
            config = make_config(
                {"name": "good", "url": url, **good}, {"name": "wrong", "url": url, **wrong}
            )
        else:
            # One environment for the whole process: the wrong password is a second run.
            monkeypatch.setenv("HTTP_PROXY", proxy.url_with("probe", SENTINEL))
            config = make_config({"name": "good", "url": url, "proxy_from_environment": True})
        state = make_state(config)
        client = await aiohttp_client(create_app(state))
        expected = len(config.targets)
        await wait_for(lambda: len(state.history.records()) == expected, "the first probes")

        pages = ["/metrics", "/config", "/"] + [
            f"/probe?target={t.name}&debug=true" for t in config.targets
        ]
        texts: dict[str, str] = {}
        for page in pages:
            resp = await client.get(page)
            assert resp.status == 200, page
            texts[page] = await resp.text()
        for record in state.history.records():
            texts[f"detail of probe {record.id}"] = record.result.detail
            texts[f"log of probe {record.id}"] = "\n".join(record.log)
        for index, text in enumerate(formatted_logs(caplog)):
            texts[f"log output {index}"] = text
        for target in config.targets:
            texts[f"repr of {target.name}"] = f"{target!r} {target}"
    finally:
        await proxy.close()

    results = {r.target: r.result for r in state.history.records()}
    assert results["good"].success, results["good"].detail
    if "wrong" in results:
        assert results["wrong"].reason is FailureReason.PROXY
    assert all(r.proxy_authorization for r in proxy.requests)
    if source == "proxy_url":
        assert f"http://<secret>@127.0.0.1:{proxy.port}" in texts["/config"]
    for where, text in texts.items():
        assert_hidden(text, where)


# The OTLP exporters' headers (issue #11)


class _RefusingCollector:
    """A gRPC OTLP collector that refuses every token and echoes it in its status
    details, which the SDK's failure log line quotes."""

    def __init__(self) -> None:
        self.received: list[str] = []

    async def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method
        token = dict(context.invocation_metadata()).get("authorization", "")
        self.received.append(token)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"invalid token {token!r}")


@pytest.mark.parametrize(
    ("protocol", "source"),
    [
        ("http/protobuf", "inline"),
        ("http/protobuf", "env"),
        ("http/protobuf", "file"),
        ("grpc", "inline"),
    ],
)
async def test_otlp_header_secret_never_shows(
    make_llm_sim: SimFactory,
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
    source: str,
) -> None:
    """A collector that refuses the token and echoes it (in a 401 body, in a gRPC
    status), as some gateways do: the SDK's failure log line may quote it; it must be
    redacted there, as everywhere: /config, /metrics and every log line."""
    caplog.set_level(logging.DEBUG)
    received: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "")
        received.append(token)
        return web.Response(status=401, text=f"invalid token {token!r} for this tenant")

    grpc_server = None
    if protocol == "grpc":
        servicer = _RefusingCollector()
        received = servicer.received
        grpc_server = grpc.aio.server()
        # The generated gRPC stubs carry no type hints.
        add_metrics: Any = metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server
        add_traces: Any = trace_service_pb2_grpc.add_TraceServiceServicer_to_server
        add_metrics(servicer, grpc_server)
        add_traces(servicer, grpc_server)
        port = grpc_server.add_insecure_port("127.0.0.1:0")
        await grpc_server.start()
    else:
        app = web.Application()
        app.router.add_post("/v1/metrics", refuse)
        app.router.add_post("/v1/traces", refuse)
        port = (await aiohttp_server(app)).port
    if source == "env":
        monkeypatch.setenv("TTFT_TEST_OTLP_TOKEN", f"Bearer {SENTINEL}")
        header: Any = {"value_env": "TTFT_TEST_OTLP_TOKEN"}
    elif source == "file":
        (tmp_path / "otlp.token").write_text(f"Bearer {SENTINEL}\n")
        header = {"value_file": str(tmp_path / "otlp.token")}
    else:
        header = f"Bearer {SENTINEL}"
    sim = await make_llm_sim(m=FAST)
    config = make_config(
        {"name": "good", "url": f"{sim.url}/v1", "interval": "1s", "timeout": "900ms"},
        otel={
            "endpoint": f"http://127.0.0.1:{port}",
            "protocol": protocol,
            "interval": "1s",
            "timeout": "500ms",
            "headers": {"Authorization": header},
        },
    )
    state = make_state(config)
    client = await aiohttp_client(create_app(state))
    failures = state.metrics.registry.get_sample_value

    def refused() -> bool:
        labels = {"signal": "metrics"}
        return (failures("ttft_exporter_otlp_export_failures_total", labels) or 0) >= 1

    try:
        await wait_for(refused, "a refused OTLP export", cap=30)
        assert f"Bearer {SENTINEL}" in received  # sent, so it was the real secret
        for path in ("/config", "/metrics", "/"):
            assert_hidden(await (await client.get(path)).text(), path)
        await client.close()  # the last export at shutdown logs too
    finally:
        if grpc_server is not None:
            await grpc_server.stop(grace=None)
    texts = formatted_logs(caplog)
    assert any("Failed to export" in text for text in texts), "no SDK failure line logged"
    for text in texts:
        assert_hidden(text, "logs")
