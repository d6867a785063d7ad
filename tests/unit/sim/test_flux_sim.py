"""Tests for the Flux-compatible simulator (ttft_exporter.sim.flux and flux_state),
one or more per point of flux-api.md "What a faithful test double must do"."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient
from pydantic import ValidationError
from pytest_aiohttp import AiohttpClient

from ttft_exporter.sim.flux import (
    FLUX_SIM,
    FluxPublishError,
    FluxSim,
    FluxSimConfig,
    create_flux_app,
    run_flux_sim,
)
from ttft_exporter.sim.flux_state import (
    RateLimiter,
    StateEngine,
    TokenError,
    decode_event,
    extract_bearer_token,
    format_rfc3339,
    parse_client_message,
    rust_debug,
    uuid7,
)

Client = TestClient[web.Request, web.Application]
WS = aiohttp.ClientWebSocketResponse

MARK = "--test-mark--"
JSON_TYPE = {"Content-Type": "application/json"}
NAMESPACES = {"acme": "tok-acme", "beta": "tok-beta"}
RFC3339_Z = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"
METRICS_RE = re.compile(
    r'\{"type":"metrics_update","timestamp":"' + RFC3339_Z + r'",'
    r'"entities":\{"total":(\d+)\},'
    r'"events":\{"total":(\d+),"rate_per_second":(\d+\.\d+)\},'
    r'"websocket":\{"connections":(\d+)\},'
    r'"publishers":\{"active":(\d+)\}\}'
)
STATE_RE = re.compile(
    r'\{"type":"state_update","entity_id":"[^"]+","property":"[^"]+",'
    r'"value":.+,"timestamp":"' + RFC3339_Z + r'"\}'
)


async def start(aiohttp_client: AiohttpClient, **knobs: Any) -> tuple[Client, FluxSim]:
    """A simulator whose metrics ticker stays out of the way unless a test sets it."""
    config = FluxSimConfig(**{"metrics_interval": 3600.0, **knobs})
    client = await aiohttp_client(create_flux_app(config))
    return client, client.app[FLUX_SIM]


def event(
    entity: str | None = "e1", stream: str = "test.events", source: str = "src", **props: Any
) -> dict[str, Any]:
    payload: dict[str, Any] = {"properties": props or {"v": 1}}
    if entity is not None:
        payload["entity_id"] = entity
    return {"stream": stream, "source": source, "timestamp": 1_700_000_000_000, "payload": payload}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post_json(client: Client, path: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
    response = await client.post(path, data=json.dumps(body), **kwargs)
    return response.status, await response.json()


async def connect(client: Client, path: str = "/api/ws") -> WS:
    """A WS client that surfaces PONG frames (``roundtrip`` relies on them)."""
    return await client.ws_connect(path, autoping=False)


async def drain(sim: FluxSim, ws: WS) -> list[str]:
    """Every frame the server queued for ``ws`` so far (a marker frame closes the list)."""
    await sim.wait_applied()
    sim.inject_frames([MARK])
    frames: list[str] = []
    while True:
        message = await ws.receive(timeout=2)
        if message.data == MARK:
            return frames
        frames.append(message.data)


async def roundtrip(ws: WS) -> None:
    """Ping and wait for the pong: the server has read everything sent before."""
    await ws.ping(b"rt")
    while (await ws.receive(timeout=2)).type is not WSMsgType.PONG:
        pass


async def expect_quiet(ws: WS, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        await ws.receive(timeout=seconds)


def updates(frames: list[str]) -> list[tuple[str, str, Any]]:
    parsed = [json.loads(frame) for frame in frames]
    return [
        (item["entity_id"], item["property"], item["value"])
        for item in parsed
        if item["type"] == "state_update"
    ]


# ---------------------------------------------------------------------------- HTTP surface


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health", 404),
        ("GET", "/metrics", 404),
        ("GET", "/", 404),
        ("GET", "/api/state/entities/a/b", 404),
        ("PUT", "/api/events", 405),
        ("GET", "/api/state/entities/delete", 405),
    ],
    ids=["health", "metrics", "root", "raw-slash-id", "wrong-method", "delete-is-static"],
)
async def test_unlisted_routes_are_bare(
    aiohttp_client: AiohttpClient, method: str, path: str, status: int
) -> None:
    client, _ = await start(aiohttp_client)
    response = await client.request(method, path)
    assert response.status == status
    assert await response.read() == b""


def _col(body: str, needle: str) -> int:
    return body.index(needle) + len(needle)


_BASE = '"source":"s","timestamp":1,"payload":{}'
_VALIDATION_CASES = [
    (
        '{"source":"s","timestamp":1,"payload":{}}',
        "missing field `stream` at line 1 column 41",
    ),
    ('{"stream":"a","source":"s","payload":{}}', "missing field `timestamp` at line 1 column 40"),
    ('{"stream":"a","source":"s","timestamp":1}', "missing field `payload` at line 1 column 41"),
    (
        '{"stream":5,' + _BASE + "}",
        "invalid type: integer `5`, expected a string at line 1 column 11",
    ),
    (
        '{"stream":{"x":1},' + _BASE + "}",
        "invalid type: map, expected a string at line 1 column 10",
    ),
    (
        '{"stream":"a","source":"s","timestamp":"soon","payload":{}}',
        'invalid type: string "soon", expected i64 at line 1 column 45',
    ),
    (
        '{"stream":"a","source":"s","timestamp":1.5,"payload":{}}',
        "invalid type: floating point `1.5`, expected i64 at line 1 column 42",
    ),
    (
        '{"stream":"a","source":"s","timestamp":9223372036854775808,"payload":{}}',
        "invalid value: integer `9223372036854775808`, expected i64 at line 1 column 58",
    ),
    ('{"stream":"a","stream":"b",' + _BASE + "}", "duplicate field `stream` at line 1 column 22"),
    ('{\n  "stream": 5\n}', "invalid type: integer `5`, expected a string at line 2 column 13"),
    ("", "EOF while parsing a value at line 1 column 0"),
    ('{"stream":"a"', "EOF while parsing an object at line 1 column 13"),
    ('{"stream":"a",' + _BASE + "} x", "trailing characters at line 1 column 56"),
    ('"event"', 'invalid type: string "event", expected struct FluxEvent at line 1 column 7'),
    ('{"stream":"",' + _BASE + "}", "stream is required"),
    ('{"stream":"Bad","source":"","timestamp":1,"payload":{}}', "source is required"),
    ('{"stream":"a","source":"s","timestamp":1,"payload":null}', "payload is required"),
    (
        '{"stream":"Bad_Stream",' + _BASE + "}",
        "invalid stream format 'Bad_Stream': must be lowercase with optional dots",
    ),
    (
        '{"stream":"a..b",' + _BASE + "}",
        "invalid stream format 'a..b': must be lowercase with optional dots",
    ),
    ('{"stream":"a","source":"s","timestamp":0,"payload":{}}', "timestamp must be positive, got 0"),
    (
        '{"stream":"a","source":"s","timestamp":-5,"payload":[]}',
        "timestamp must be positive, got -5",
    ),
    ('{"stream":"a","source":"s","timestamp":1,"payload":[1]}', "payload must be a JSON object"),
]


@pytest.mark.parametrize(
    ("body", "error"), _VALIDATION_CASES, ids=[e for _, e in _VALIDATION_CASES]
)
async def test_envelope_validation_texts(
    aiohttp_client: AiohttpClient, body: str, error: str
) -> None:
    client, sim = await start(aiohttp_client)
    response = await client.post("/api/events", data=body.encode())
    assert response.status == 400
    assert response.content_type == "application/json"
    assert await response.json() == {"error": error}
    await sim.wait_applied()
    assert sim.events_total == 0


async def test_publish_ack_ids_and_unknown_fields(aiohttp_client: AiohttpClient) -> None:
    client, _ = await start(aiohttp_client)
    status, body = await post_json(client, "/api/events", {**event(), "extra": [1], "eventId": ""})
    assert status == 200
    assert list(body) == ["eventId", "stream"]
    generated = uuid.UUID(body["eventId"])
    assert (generated.version, generated.variant) == (7, uuid.RFC_4122)
    assert body["stream"] == "test.events"
    status, body = await post_json(client, "/api/events", {**event(), "eventId": "not-a-uuid"})
    assert (status, body) == (200, {"eventId": "not-a-uuid", "stream": "test.events"})


async def test_body_limits(aiohttp_client: AiohttpClient) -> None:
    client, _ = await start(
        aiohttp_client, body_limit_single=100, body_limit_batch=400, axum_body_limit=1000
    )
    big = event(blob="x" * 150)
    assert await post_json(client, "/api/events", big) == (413, {"error": "payload too large"})
    status, _ = await post_json(client, "/api/events/batch", {"events": [big]})
    assert status == 200
    huge = {"events": [event(blob="x" * 1500)]}
    response = await client.post("/api/events/batch", data=json.dumps(huge))
    assert response.status == 413
    assert response.content_type == "text/plain"
    assert await response.text() == "Failed to buffer the request body: length limit exceeded"


# ------------------------------------------------------------------------------ auth


_AUTH_CASES = [
    ({}, "acme/x", 401, "Authorization token not provided"),
    ({"Authorization": "Basic tok-acme"}, "acme/x", 401, "Invalid authorization token format"),
    ({"Authorization": "Bearer"}, "acme/x", 401, "Invalid authorization token format"),
    (bearer("tok-acme"), None, 401, "Missing 'entity_id' field in payload"),
    (
        bearer("tok-acme"),
        "a/b/c",
        401,
        "Failed to parse entity_id 'a/b/c': InvalidFormat(\"Entity ID 'a/b/c' contains "
        "multiple '/' separators (expected at most one)\")",
    ),
    (
        bearer("tok-acme"),
        "AB/x",
        401,
        "Failed to parse entity_id 'AB/x': InvalidNamespace(\"Invalid namespace 'AB': TooShort\")",
    ),
    (
        bearer("tok-acme"),
        "Abc/x",
        401,
        "Failed to parse entity_id 'Abc/x': InvalidNamespace(\"Invalid namespace 'Abc': "
        'InvalidCharacters(\\"Invalid character \'A\' (must be [a-z0-9-_])\\")")',
    ),
    (
        bearer("tok-acme"),
        "plain",
        401,
        "Entity ID 'plain' missing namespace prefix (expected 'namespace/entity' format)",
    ),
    (
        bearer("tok-acme"),
        "nope/x",
        401,
        "Namespace 'nope' not found. Get a namespace at flux-universe.com",
    ),
    (
        bearer("tok-acme"),
        "beta/x",
        403,
        "Token does not have permission to write to namespace 'beta'",
    ),
]


@pytest.mark.parametrize(
    ("headers", "entity", "status", "error"), _AUTH_CASES, ids=[c[3][:40] for c in _AUTH_CASES]
)
async def test_auth_texts(
    aiohttp_client: AiohttpClient,
    headers: dict[str, str],
    entity: str | None,
    status: int,
    error: str,
) -> None:
    client, _ = await start(aiohttp_client, auth=True, namespaces=NAMESPACES)
    assert await post_json(client, "/api/events", event(entity), headers=headers) == (
        status,
        {"error": error},
    )


async def test_auth_accepts_any_scheme_case_and_keeps_reads_and_ws_open(
    aiohttp_client: AiohttpClient,
) -> None:
    client, sim = await start(aiohttp_client, auth=True, namespaces=NAMESPACES)
    headers = {"Authorization": "bEaReR tok-acme"}
    status, _ = await post_json(client, "/api/events", event("acme/x"), headers=headers)
    assert status == 200
    await sim.wait_applied()
    assert (await client.get("/api/state/entities")).status == 200
    assert (await client.get("/api/state/entities/acme%2Fx")).status == 200
    ws = await connect(client)
    await ws.close()
    with pytest.raises(TokenError, match=r"^Authorization token is empty$"):
        extract_bearer_token("Bearer   ")  # unreachable over HTTP: header values are trimmed


async def test_error_precedence(aiohttp_client: AiohttpClient) -> None:
    client, _ = await start(
        aiohttp_client,
        auth=True,
        namespaces=NAMESPACES,
        rate_limit_per_minute=1,
        body_limit_single=300,
    )
    sim = client.app[FLUX_SIM]
    good = bearer("tok-acme")
    assert (await post_json(client, "/api/events", event("acme/a"), headers=good))[0] == 200
    sim.set_fault(publish_status=500)
    too_big = b"{" + b" " * 400
    assert (await client.post("/api/events", data=too_big)).status == 413
    assert (await client.post("/api/events", data=b"{")).status == 400
    assert (await post_json(client, "/api/events", event("acme/a")))[0] == 401
    assert (await post_json(client, "/api/events", event("beta/a"), headers=good))[0] == 403
    assert (await post_json(client, "/api/events", event("acme/a"), headers=good))[0] == 429
    status, body = await post_json(
        client, "/api/events", event("beta/a", stream="x"), headers=bearer("tok-beta")
    )
    assert (status, body) == (500, {"error": "Failed to publish event to subject 'flux.events.x'"})


async def test_rate_limit_429_retry_after_and_batch_items(aiohttp_client: AiohttpClient) -> None:
    client, _ = await start(
        aiohttp_client, auth=True, namespaces=NAMESPACES, rate_limit_per_minute=2
    )
    headers = bearer("tok-acme")
    for _ in range(2):
        assert (await post_json(client, "/api/events", event("acme/x"), headers=headers))[0] == 200
    response = await client.post("/api/events", data=json.dumps(event("acme/x")), headers=headers)
    assert response.status == 429
    assert response.headers["Retry-After"] == "60"
    assert await response.json() == {"error": "rate limit exceeded"}
    beta = bearer("tok-beta")
    batch = {"events": [event("beta/x")] * 3}
    status, body = await post_json(client, "/api/events/batch", batch, headers=beta)
    assert (status, body["successful"], body["failed"]) == (200, 2, 1)
    assert body["results"][2]["error"] == "rate limit exceeded"
    assert body["results"][2]["eventId"] is not None


async def test_rate_limit_only_with_auth(aiohttp_client: AiohttpClient) -> None:
    client, _ = await start(aiohttp_client, rate_limit_per_minute=1)
    for _ in range(3):
        assert (await post_json(client, "/api/events", event()))[0] == 200


# ----------------------------------------------------------------------------- batch


async def test_batch_results_always_carry_three_keys(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client)
    bad = {**event(), "stream": "BAD"}
    status, body = await post_json(
        client, "/api/events/batch", {"events": [event(), bad, {**event(), "eventId": "mine"}]}
    )
    assert status == 200
    assert (body["successful"], body["failed"]) == (2, 1)
    assert all(list(result) == ["eventId", "stream", "error"] for result in body["results"])
    assert body["results"][0]["error"] is None
    assert body["results"][1] == {
        "eventId": None,
        "stream": "BAD",
        "error": "validation failed: invalid stream format 'BAD': must be lowercase with optional dots",
    }
    assert body["results"][2] == {"eventId": "mine", "stream": "test.events", "error": None}
    await sim.wait_applied()
    assert sim.events_total == 2


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"events": []}, "Batch request must contain at least one event"),
        ({}, "missing field `events` at line 1 column 2"),
        ({"events": {}}, "invalid type: map, expected a sequence at line 1 column 10"),
        (
            {"events": [{"stream": "a", "source": "s", "payload": {}}]},
            "missing field `timestamp` at line 1 column 51",
        ),
    ],
    ids=["empty", "no-events", "not-a-list", "element-decode-error"],
)
async def test_batch_whole_request_errors(
    aiohttp_client: AiohttpClient, body: dict[str, Any], error: str
) -> None:
    client, _ = await start(aiohttp_client)
    response = await client.post("/api/events/batch", data=json.dumps(body, separators=(",", ":")))
    assert (response.status, await response.json()) == (400, {"error": error})


async def test_batch_auth_failures_are_per_item(aiohttp_client: AiohttpClient) -> None:
    client, _ = await start(aiohttp_client, auth=True, namespaces=NAMESPACES)
    events = [event("acme/x"), event("beta/x"), event("nope/x"), event(None)]
    status, body = await post_json(
        client, "/api/events/batch", {"events": events}, headers=bearer("tok-acme")
    )
    assert status == 200
    assert [r["error"] for r in body["results"]] == [
        None,
        "authorization failed: Forbidden: Token does not have permission to write to namespace 'beta'",
        "authorization failed: Namespace not found: Namespace 'nope' not found. "
        "Get a namespace at flux-universe.com",
        "authorization failed: Invalid entity ID: Missing 'entity_id' field in payload",
    ]
    status, body = await post_json(client, "/api/events/batch", {"events": events[:1]})
    assert body["results"][0]["error"] == (
        "authorization failed: Invalid token: Authorization token not provided"
    )


# ------------------------------------------------------------------- failure injection


async def test_publish_faults(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client)
    sim.set_fault(publish_status=500)
    status, body = await post_json(client, "/api/events/batch", {"events": [event(stream="a.b")]})
    assert status == 200
    assert (
        body["results"][0]["error"]
        == "publish failed: Failed to publish event to subject 'flux.events.a.b'"
    )
    sim.set_fault(publish_status=502, publish_body="<html>bad gateway</html>", plain_text=True)
    response = await client.post("/api/events", data=json.dumps(event()))
    assert (response.status, response.content_type) == (502, "text/plain")
    assert await response.text() == "<html>bad gateway</html>"
    with pytest.raises(FluxPublishError) as caught:
        await sim.publish(event())
    assert (caught.value.status, caught.value.error) == (502, "<html>bad gateway</html>")
    sim.set_fault(publish_delay=0.1)
    started = time.perf_counter()
    assert (await post_json(client, "/api/events", event()))[0] == 200
    # Bounds (real clock): the delay is served, not skipped; 2 s more when starved.
    assert 0.09 <= time.perf_counter() - started < 0.1 + 2.0
    await sim.wait_applied()
    assert sim.events_total == 1


async def test_in_process_publish_validates(aiohttp_client: AiohttpClient) -> None:
    _, sim = await start(aiohttp_client)
    with pytest.raises(FluxPublishError) as caught:
        await sim.publish({**event(), "timestamp": 0})
    assert (caught.value.status, caught.value.error) == (400, "timestamp must be positive, got 0")
    ack = await sim.publish(event())
    assert ack["stream"] == "test.events"


# ------------------------------------------------------------------------ state engine


async def test_apply_is_asynchronous(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client, apply_delay=0.15)
    started = time.perf_counter()
    assert (await post_json(client, "/api/events", event("canary", ts=1)))[0] == 200
    assert (await client.get("/api/state/entities/canary")).status == 404
    assert sim.events_total == 0
    await sim.wait_applied()
    assert 0.14 <= time.perf_counter() - started < 0.15 + 2.0  # bounds, as above
    assert sim.events_total == 1
    assert (await client.get("/api/state/entities/canary")).status == 200


async def test_merge_tombstone_and_entityless_events(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client)
    await sim.publish(event("e1", a=1, b={"y": 2, "x": 1}))
    await sim.publish(event("e1", c=3, __deleted__=False))
    await sim.publish(event(None, a=1))
    await sim.publish({**event(), "payload": {"entity_id": "e9"}})
    await sim.wait_applied()
    assert sim.events_total == 4
    response = await client.get("/api/state/entities/e1")
    text = await response.text()
    assert text.startswith(
        '{"id":"e1","properties":{"__deleted__":false,"a":1,"b":{"x":1,"y":2},"c":3}'
    )
    last_updated = json.loads(text)["lastUpdated"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}\+00:00", last_updated)
    assert datetime.fromisoformat(last_updated).tzinfo is not None
    await sim.publish(event("e1", __deleted__=True))
    await sim.wait_applied()
    assert sim.events_total == 5
    assert set(sim.entities) == set()
    response = await client.get("/api/state/entities/e1")
    assert (response.status, await response.json()) == (404, {"error": "Entity not found"})


async def test_entity_listing_filters_and_encoded_ids(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client)
    for entity in ("acme/a", "acme/b", "acmex/c", "plain", "acme-d"):
        await sim.publish(event(entity))
    await sim.wait_applied()

    async def ids(query: str) -> set[str]:
        response = await client.get(f"/api/state/entities{query}")
        return {item["id"] for item in await response.json()}

    assert await ids("") == {"acme/a", "acme/b", "acmex/c", "plain", "acme-d"}
    assert await ids("?namespace=acme") == {"acme/a", "acme/b"}
    assert await ids("?prefix=acme") == {"acme/a", "acme/b", "acmex/c", "acme-d"}
    assert await ids("?namespace=acme&prefix=acme/b") == {"acme/b"}
    response = await client.get("/api/state/entities/acme%2Fa")
    assert (await response.json())["id"] == "acme/a"


async def test_deletion_routes(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client)
    for entity in ("ns1/a", "ns1/b", "ns2/c"):
        await sim.publish(event(entity))
    await sim.wait_applied()
    response = await client.delete("/api/state/entities/ns2%2Fc")
    body = await response.json()
    assert (response.status, list(body), body["entity_id"]) == (
        200,
        ["entity_id", "eventId"],
        "ns2/c",
    )
    assert (await client.delete("/api/state/entities/ghost")).status == 200
    status, body = await post_json(
        client, "/api/state/entities/delete", {"namespace": "ns1"}, headers=JSON_TYPE
    )
    assert (status, body) == (200, {"deleted": 2, "failed": 0, "errors": []})
    await sim.wait_applied()
    assert sim.entities == {}
    assert sim.events_total == 3 + 1 + 1 + 2
    response = await client.post("/api/state/entities/delete", data=b'{"namespace":"x"}')
    assert response.status == 415
    response = await client.post(
        "/api/state/entities/delete",
        json={"other": 1},
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 422
    assert "did not match any variant of untagged enum DeleteFilter" in await response.text()


async def test_deletion_auth_texts(aiohttp_client: AiohttpClient) -> None:
    client, _ = await start(aiohttp_client, auth=True, namespaces=NAMESPACES)
    cases = [
        ({}, "acme%2Fa", 401, "Missing Authorization header"),
        ({"Authorization": "bearer tok-acme"}, "acme%2Fa", 401, "Invalid Authorization format"),
        (bearer("tok-acme"), "plain", 401, "Entity has no namespace"),
        (bearer("tok-acme"), "beta%2Fa", 403, "Token does not own namespace"),
        (bearer("tok-acme"), "nope%2Fa", 403, "Token does not own namespace"),
    ]
    for headers, entity, status, error in cases:
        response = await client.delete(f"/api/state/entities/{entity}", headers=headers)
        assert (response.status, await response.json()) == (status, {"error": error})
    assert (
        await client.delete("/api/state/entities/acme%2Fa", headers=bearer("tok-acme"))
    ).status == 200
    status, body = await post_json(
        client,
        "/api/state/entities/delete",
        {"entity_ids": ["acme/a", "beta/b"]},
        headers={**bearer("tok-acme"), "Content-Type": "application/json"},
    )
    assert (status, body) == (403, {"error": "Token does not own namespace"})


async def test_event_history(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client)
    for n in range(4):
        await sim.publish({**event("h", n=n), "key": "k"})
    await sim.publish(event("other"))
    response = await client.get("/api/events", params={"entity": "h", "limit": "2"})
    history = await response.json()
    assert [item["payload"]["properties"]["n"] for item in history] == [1, 0]
    assert list(history[0]) == ["eventId", "stream", "source", "timestamp", "key", "payload"]
    response = await client.get("/api/events")
    assert (response.status, await response.json()) == (
        400,
        {"error": "entity parameter is required"},
    )
    response = await client.get("/api/events", params={"entity": "h", "since": "yesterday"})
    assert await response.json() == {"error": "invalid `since` timestamp (expected ISO 8601)"}
    response = await client.get(
        "/api/events", params={"entity": "h", "since": "2999-01-01T00:00:00Z"}
    )
    assert await response.json() == []
    response = await client.get("/api/events", params={"entity": "h", "limit": "x"})
    assert response.status == 400
    assert (
        await response.text() == "Failed to deserialize query string: invalid digit found in string"
    )


async def test_admin_config(aiohttp_client: AiohttpClient) -> None:
    client, _ = await start(aiohttp_client, rate_limit_per_minute=7)
    response = await client.get("/api/admin/config")
    assert await response.json() == {
        "rate_limit_enabled": True,
        "rate_limit_per_namespace_per_minute": 7,
        "body_size_limit_single_bytes": 1_048_576,
        "body_size_limit_batch_bytes": 10_485_760,
    }


# ------------------------------------------------------------------------- WebSocket


async def test_ws_open_quiet_on_connect_and_pong_only(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client)
    ws = await connect(client, "/api/ws?token=ignored")
    assert sim.connections == 1
    await expect_quiet(ws, 0.2)  # no hello, no snapshot, and the server never pings
    await ws.ping(b"are-you-there")
    pong = await ws.receive(timeout=1)
    assert (pong.type, pong.data) == (WSMsgType.PONG, b"are-you-there")
    await ws.close()
    response = await client.get("/api/ws")
    assert (response.status, await response.text()) == (
        400,
        "Connection header did not include 'upgrade'",
    )


async def test_metrics_shape_key_order_and_all_clients(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client, metrics_interval=0.05)
    first = await connect(client)
    second = await connect(client)
    await second.send_str('{"type":"subscribe","entity_id":"only-this"}')
    await sim.publish(event("e1"))
    await sim.wait_applied()
    for ws in (first, second):
        for _ in range(10):
            frame = (await ws.receive(timeout=1)).data
            match = METRICS_RE.fullmatch(frame)
            if match and match.group(2) == "1":
                break
        else:
            pytest.fail("no metrics_update counting the event")
        assert match.groups() == ("1", "1", "0.2", "2", "1")
        assert isinstance(json.loads(frame)["events"]["rate_per_second"], float)
    await first.close()
    await second.close()


async def test_rate_freezes_counts_everything_and_publishers_decay(
    aiohttp_client: AiohttpClient,
) -> None:
    _, sim = await start(aiohttp_client, publisher_window=10.0)
    fake_ms = [1_000_000]
    sim._engine.monotonic_ms = lambda: fake_ms[0]
    await sim.publish(event("e1", source="a"))
    await sim.publish(event(None, source="b"))
    await sim.publish(event("e1", source="a", __deleted__=True))
    await sim.wait_applied()
    snapshot = sim._engine.snapshot(connections=0, publisher_window=10.0)
    assert (snapshot.events_total, snapshot.rate_per_second, snapshot.publishers_active) == (
        3,
        0.6,
        2,
    )
    fake_ms[0] += 60_000  # traffic stopped a minute ago
    snapshot = sim._engine.snapshot(connections=0, publisher_window=10.0)
    assert (snapshot.rate_per_second, snapshot.publishers_active) == (0.6, 0)
    await sim.publish(event("e2", source="c"))
    await sim.wait_applied()
    snapshot = sim._engine.snapshot(connections=0, publisher_window=10.0)
    assert (snapshot.events_total, snapshot.rate_per_second, snapshot.publishers_active) == (
        4,
        0.2,
        1,
    )


async def test_state_update_frames_and_filtering(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client)
    everything = await connect(client)
    narrow = await connect(client)
    star = await connect(client)
    await narrow.send_str('{"type":"subscribe","entity_id":"e1","extra":true}')
    await star.send_str('{"type":"subscribe","entity_id":"e1"}')
    await star.send_str('{"type":"subscribe","entity_id":"*"}')
    for ws in (narrow, star):
        await roundtrip(ws)
    await sim.publish(event("e1", b=2, a={"z": 1, "y": 0}))
    await sim.publish(event("e2", c=3))
    all_updates = [("e1", "a", {"y": 0, "z": 1}), ("e1", "b", 2), ("e2", "c", 3)]
    frames = await drain(sim, everything)
    assert all(STATE_RE.fullmatch(frame) for frame in frames)
    assert '"value":{"y":0,"z":1}' in frames[0]
    assert updates(frames) == all_updates
    assert updates(await drain(sim, star)) == all_updates
    assert updates(await drain(sim, narrow)) == all_updates[:2]
    await narrow.send_str('{"type":"unsubscribe","entity_id":"e1"}')
    await roundtrip(narrow)
    await sim.publish(event("e2", c=4))
    assert updates(await drain(sim, narrow)) == [("e2", "c", 4)]
    for ws in (everything, narrow, star):
        await ws.close()


async def test_entity_deleted_goes_to_everyone_once(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client)
    await sim.publish(event("e2"))
    ws = await connect(client)
    await ws.send_str('{"type":"subscribe","entity_id":"e1"}')
    await roundtrip(ws)
    await sim.publish(event("e2", __deleted__=True))
    await sim.publish(event("e2", __deleted__=True))
    await sim.publish(event("ghost", __deleted__=True))
    frames = await drain(sim, ws)
    assert len(frames) == 1
    assert re.fullmatch(
        r'\{"type":"entity_deleted","entity_id":"e2","timestamp":"' + RFC3339_Z + r'"\}', frames[0]
    )
    await ws.close()


async def test_client_garbage_is_ignored_without_error_frames(
    aiohttp_client: AiohttpClient,
) -> None:
    client, sim = await start(aiohttp_client)
    ws = await connect(client)
    for junk in (
        "not json",
        '{"type":"subscribe"}',
        '{"type":"later","entity_id":"e9"}',
        '{"type":"subscribe","entity_id":5}',
        '["subscribe","e9"]',
    ):
        await ws.send_str(junk)
    await ws.send_bytes(b'{"type":"subscribe","entity_id":"e9"}')
    await roundtrip(ws)
    await sim.publish(event("e1"))
    assert updates(await drain(sim, ws)) == [("e1", "v", 1)]  # still unfiltered, still open
    await ws.close()


# ---------------------------------------------------------------------- failure modes


async def test_restart_resets_counters_refuses_connects_and_replays() -> None:
    config = FluxSimConfig(metrics_interval=3600.0, replay_idle=0.2)
    runner, port = await run_flux_sim(config)
    sim = runner.app[FLUX_SIM]
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for n in range(3):
                await sim.publish(event("e1", n=n))
            await sim.wait_applied()
            ws = await session.ws_connect(f"{base}/api/ws")
            restarting = asyncio.create_task(sim.restart(replay=5, gap=0.2))
            dropped = await ws.receive(timeout=1)
            assert dropped.type is WSMsgType.CLOSED  # no close frame
            with pytest.raises(aiohttp.ClientConnectorError):
                await session.get(f"{base}/api/state/entities")
            with pytest.raises(FluxPublishError):
                await sim.publish(event())
            await restarting
            assert sim.events_total == 5
            assert set(sim.entities) == {"e1"}
            ws = await session.ws_connect(f"{base}/api/ws")
            await sim.tick()
            match = METRICS_RE.fullmatch((await ws.receive(timeout=1)).data)
            assert match is not None
            assert match.groups() == ("1", "5", "1.0", "1", "2")
            await sim.publish(event("e1", during_replay=True))
            assert await drain(sim, ws) == []  # replay phase: metrics only
            await asyncio.sleep(0.25)
            await sim.publish(event("e1", live=True))
            assert updates(await drain(sim, ws)) == [("e1", "live", True)]
            await ws.close()
    finally:
        await runner.cleanup()


async def test_restart_gap_answers_503_when_listener_unknown(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client, replay_idle=0.0)
    restarting = asyncio.create_task(sim.restart(gap=0.3))
    await asyncio.sleep(0.05)
    response = await client.get("/api/state/entities")
    assert (response.status, await response.text()) == (503, "Service Unavailable")
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await connect(client)
    await restarting
    assert (await client.get("/api/state/entities")).status == 200


async def test_abrupt_and_clean_drops(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client)
    ws = await connect(client)
    await sim.drop_connections()
    message = await ws.receive(timeout=1)
    assert message.type is WSMsgType.CLOSED
    assert sim.connections == 0
    ws = await connect(client)
    await sim.drop_connections(clean=True)
    message = await ws.receive(timeout=1)
    assert (message.type, message.data) == (WSMsgType.CLOSE, 1000)


async def test_silence_keeps_socket_and_pongs(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client, metrics_interval=0.05)
    ws = await connect(client)
    assert METRICS_RE.fullmatch((await ws.receive(timeout=1)).data)
    sim.set_silent(True)
    await sim.publish(event())
    await ws.ping(b"p")
    pong = await ws.receive(timeout=1)
    while pong.type is WSMsgType.TEXT:  # a frame already on its way when silence began
        pong = await ws.receive(timeout=1)
    assert pong.type is WSMsgType.PONG
    await expect_quiet(ws, 0.3)
    assert sim.connections == 1
    sim.set_silent(False)
    assert METRICS_RE.fullmatch((await ws.receive(timeout=1)).data)
    await ws.close()


async def test_injected_frames_reach_clients_verbatim(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client)
    frames: list[str | bytes] = [
        '{"type":"metrics_update","events":{"total":1}',
        '{"type":"brand_new","x":1}',
        b"\x00\x01binary",
        '{"type":"metrics_update","timestamp":"2026-01-01T00:00:00Z","entities":{},"extra":1}',
    ]
    sim.inject_frames(frames[:1])  # nobody connected yet: held for the next client
    ws = await connect(client)
    sim.inject_frames(frames[1:])
    received = [await ws.receive(timeout=1) for _ in frames]
    assert [m.data for m in received] == frames
    assert [m.type for m in received] == [WSMsgType.TEXT] * 2 + [WSMsgType.BINARY, WSMsgType.TEXT]
    await ws.close()


async def test_slow_client_loses_oldest_updates_without_stalling_others(
    aiohttp_client: AiohttpClient,
) -> None:
    capacity, count = 4, 240
    client, sim = await start(aiohttp_client, state_channel_capacity=capacity)
    # Never read until the end. 240 x 100 kB is far beyond what the sockets buffer
    # (send-side autotuning stops at tcp_wmem's 4 MiB), so its sender blocks.
    slow = await connect(client)
    fast = await connect(client)
    blob = "x" * 100_000
    fast_seen: list[int] = []
    for first in range(0, count, capacity):
        for n in range(first, first + capacity):
            await sim.publish(event("big", v=[n, blob]))
        for _ in range(capacity):
            fast_seen.append(json.loads((await fast.receive(timeout=2)).data)["value"][0])
    assert fast_seen == list(range(count))
    # Read until the newest update (it is never dropped), not until a 0.3 s silence: a
    # loaded box can pause the sender longer than that mid-drain. 10 s per message is a
    # cap, not a wait. Then nothing may follow it.
    slow_seen: list[int] = []
    while not slow_seen or slow_seen[-1] != count - 1:
        message = await slow.receive(timeout=10)
        slow_seen.append(json.loads(message.data)["value"][0])
    with pytest.raises(TimeoutError):
        await slow.receive(timeout=0.3)
    assert len(slow_seen) < count
    assert slow_seen == sorted(slow_seen)
    assert slow_seen[-capacity:] == list(range(count - capacity, count))  # oldest lost first
    await slow.close()
    await fast.close()


async def test_drop_every_nth_state_update(aiohttp_client: AiohttpClient) -> None:
    client, sim = await start(aiohttp_client)
    ws = await connect(client)
    sim.set_drop_every(3)
    for n in range(9):
        await sim.publish(event("e1", v=n))
    assert [value for _, _, value in updates(await drain(sim, ws))] == [0, 1, 3, 4, 6, 7]
    sim.set_drop_every(None)
    await ws.close()


async def test_generator_publishes_in_background(aiohttp_client: AiohttpClient) -> None:
    _, sim = await start(aiohttp_client, generator_rate=400.0, generator_entities=6)
    for _ in range(100):
        await asyncio.sleep(0.02)
        if sim.events_total >= 5:
            break
    assert sim.events_total >= 5
    assert set(sim.entities) <= {f"{kind}-{n}" for kind in ("sensor", "host") for n in range(3)}


async def test_run_flux_sim_serves_and_stops_cleanly() -> None:
    before = asyncio.all_tasks()
    runner, port = await run_flux_sim(FluxSimConfig(metrics_interval=0.01))
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"http://127.0.0.1:{port}/api/state/entities")
        assert (response.status, await response.json()) == (200, [])
        await session.ws_connect(f"http://127.0.0.1:{port}/api/ws")
        await runner.cleanup()
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()


# ------------------------------------------------------------------------ pure parts


def test_config_rejects_unknown_keys_and_bad_namespaces() -> None:
    with pytest.raises(ValidationError):
        FluxSimConfig(unknown=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="TooShort"):
        FluxSimConfig(namespaces={"ab": "t"})
    with pytest.raises(ValidationError):
        FluxSimConfig(metrics_interval=0)


def test_wire_helpers() -> None:
    assert rust_debug('a"b\\c\n\x01') == '"a\\"b\\\\c\\n\\u{1}"'
    ns = 1_700_000_000_000_000_007
    assert format_rfc3339(ns, zulu=True) == "2023-11-14T22:13:20.000000007Z"
    assert format_rfc3339(ns, zulu=False) == "2023-11-14T22:13:20.000000007+00:00"
    generated = uuid.UUID(uuid7())
    assert (generated.version, generated.variant) == (7, uuid.RFC_4122)
    assert abs((generated.int >> 80) - time.time() * 1000) < 5_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type":"subscribe","entity_id":"a"}', ("subscribe", "a")),
        ('{"type":"unsubscribe","entity_id":"*","x":1}', ("unsubscribe", "*")),
        ('{"type":"subscribe"}', None),
        ('{"type":"error","entity_id":"a"}', None),
        ("nope", None),
        ('{"type":"subscribe","entity_id":NaN}', None),
    ],
)
def test_parse_client_message(text: str, expected: tuple[str, str] | None) -> None:
    assert parse_client_message(text) == expected


def test_token_bucket_refills_per_minute() -> None:
    limiter = RateLimiter()
    assert [limiter.check_and_consume("ns", 60, 0.0) for _ in range(61)].count(True) == 60
    assert not limiter.check_and_consume("ns", 60, 0.5)
    assert limiter.check_and_consume("ns", 60, 1.6)
    assert limiter.check_and_consume("other", 60, 1.6)


def test_engine_window_is_trimmed_only_by_new_events() -> None:
    now = [0]
    engine = StateEngine(monotonic_ms=lambda: now[0])
    for at in (0, 1000, 2000):
        now[0] = at
        engine.process(decode_event(json.dumps(event()).encode()))
    now[0] = 60_000
    rate = engine.snapshot(connections=0, publisher_window=10.0).rate_per_second
    assert rate == 0.6  # a minute of silence: frozen, not decayed
    engine.process(decode_event(json.dumps(event()).encode()))
    assert engine.events_total == 4
    assert engine.snapshot(connections=0, publisher_window=10.0).rate_per_second == 0.2
