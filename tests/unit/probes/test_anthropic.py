"""Anthropic Messages streaming (llm-streaming.md §A.3): the pure event decoder on the
spec's shapes, the request builder, and the engine against the simulator's Anthropic
mode and hostile servers over real HTTP. The core trap matrix, shared with the other
protocols, is parametrized over them in test_trap_matrix.py.

Timing bounds hold on a loaded 2-core machine (`stress-ng --cpu 2`): lower bounds come
from the simulator's own sleeps (it never writes an event before its deadline), upper
bounds are generous (seconds, not milliseconds), and orderings are compared, not
differences of a few ms."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from tests.conftest import SimFactory, make_target, probe_once
from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.anthropic import (
    AnthropicTarget,
    MessagesDecoder,
    build_request,
    messages_url,
)
from ttft_exporter.probes.base import StreamItem, Usage, finish_reason_label
from ttft_exporter.probes.framing import Frame, SSEFramer
from ttft_exporter.sim.llm import ModelBehaviour

# Generous: a loaded CI box may delay a probe by a lot, never make it faster than the
# simulator's sleeps.
SLACK = 2.0


def ev(name: str, **payload: Any) -> Frame:
    return Frame(json.dumps({"type": name, **payload}), name)


def anthropic_target(url: str, **fields: Any) -> AnthropicTarget:
    target = make_target(protocol="anthropic", url=url, **fields)
    assert isinstance(target, AnthropicTarget)
    return target


# The pure decoder, on the spec's shapes


MESSAGE_START = ev(
    "message_start",
    message={
        "id": "msg_1",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "usage": {
            "input_tokens": 25,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    },
)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        # Only the input count: output_tokens 1 is a placeholder.
        (MESSAGE_START, StreamItem(usage=Usage(input_tokens=25))),
        (
            ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
            StreamItem(),
        ),
        (
            ev("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
            StreamItem(),
        ),
        (ev("ping"), None),
        (
            ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hello"}),
            StreamItem(text="Hello"),
        ),
        (
            ev("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "hm"}),
            StreamItem(reasoning="hm"),
        ),
        (
            ev("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "x"}),
            StreamItem(),
        ),
        (
            ev(
                "content_block_delta",
                index=1,
                delta={"type": "input_json_delta", "partial_json": "{"},
            ),
            StreamItem(),
        ),
        (
            ev("content_block_delta", index=0, delta={"type": "text_delta", "text": ""}),
            StreamItem(),
        ),
        (ev("content_block_stop", index=0), StreamItem()),
        (
            ev(
                "message_delta",
                delta={"stop_reason": "end_turn", "stop_sequence": None},
                usage={"output_tokens": 15},
            ),
            StreamItem(finish_reason="end_turn", usage=Usage(output_tokens=15)),
        ),
        (ev("message_stop"), StreamItem(done=True)),
        (ev("some_future_event", x=1), StreamItem()),
        # A proxy that dropped the `event:` lines: the data's type decides.
        (Frame('{"type":"ping"}'), None),
        (Frame('{"type":"message_stop"}'), StreamItem(done=True)),
    ],
    ids=[
        "message_start",
        "text-block-start",
        "thinking-block-start",
        "ping",
        "text_delta",
        "thinking_delta",
        "signature_delta",
        "input_json_delta",
        "empty-text_delta",
        "block-stop",
        "message_delta",
        "message_stop",
        "unknown-event",
        "unnamed-ping",
        "unnamed-stop",
    ],
)
def test_decoder(frame: Frame, expected: StreamItem | None) -> None:
    assert MessagesDecoder().decode(frame) == expected


def test_cached_prompt_tokens_count_as_input() -> None:
    frame = ev(
        "message_start",
        message={
            "usage": {
                "input_tokens": 5,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 1000,
                "output_tokens": 1,
            }
        },
    )
    item = MessagesDecoder().decode(frame)
    assert item is not None and item.usage == Usage(input_tokens=1105)


def test_message_delta_without_usage_and_with_null_stop_reason() -> None:
    item = MessagesDecoder().decode(ev("message_delta", delta={"stop_reason": None}))
    assert item == StreamItem()


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "other"),
    ],
)
def test_stop_reasons_map_to_the_bounded_label(raw: str, label: str) -> None:
    item = MessagesDecoder().decode(ev("message_delta", delta={"stop_reason": raw}))
    assert item is not None and finish_reason_label(item.finish_reason) == label


@pytest.mark.parametrize(
    "frame",
    [
        ev("error", error={"type": "overloaded_error", "message": "Overloaded"}),
        # Named otherwise (or not at all), the data's type still says error.
        Frame('{"type":"error","error":{"type":"api_error","message":"boom"}}'),
    ],
)
def test_error_event_is_stream_error(frame: Frame) -> None:
    with pytest.raises(ProbeFailure) as info:
        MessagesDecoder().decode(frame)
    assert info.value.reason is FailureReason.STREAM_ERROR
    assert "error in stream" in info.value.detail


def test_usage_is_merged_across_events_by_the_timeline() -> None:
    # The wire bytes of the spec's example through the real framer and decoder.
    from ttft_exporter.probes.base import StreamTimeline

    raw = (
        b"event: message_start\n"
        b'data: {"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}\n\n'
        b'event: ping\ndata: {"type": "ping"}\n\n'
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n'
        b"event: message_delta\n"
        b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    framer, decoder = SSEFramer(), MessagesDecoder()
    timeline = StreamTimeline(0, max_tokens=64)
    for t, frame in enumerate(framer.feed(raw)):
        item = decoder.decode(frame)
        if item is not None:
            timeline.on_item(t, item)
    assert timeline.usage == Usage(input_tokens=25, output_tokens=15)
    assert timeline.done and timeline.finish_reason == "end_turn"


# The request builder


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://api.anthropic.com", "https://api.anthropic.com/v1/messages"),
        ("https://api.anthropic.com/", "https://api.anthropic.com/v1/messages"),
        ("http://gw:8080/anthropic/v1", "http://gw:8080/anthropic/v1/messages"),
        ("http://gw/v1/messages", "http://gw/v1/messages"),
    ],
)
def test_url_forms(base: str, url: str) -> None:
    assert messages_url(base) == url


def test_request_headers_and_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", "sk-ant-test-0123456789")
    target = anthropic_target(
        "https://api.anthropic.com",
        model="claude-sonnet-4-5",
        prompt="Say hi",
        system="Be brief.",
        max_tokens=32,
        api_key_env="ANTHROPIC_TEST_KEY",
        headers={"anthropic-beta": "foo-2025-01-01"},
        extra_body={"temperature": 0, "thinking": {"type": "enabled", "budget_tokens": 1024}},
    )
    request = build_request(target, "[n1]")
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant-test-0123456789"
    assert "Authorization" not in request.headers
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["anthropic-beta"] == "foo-2025-01-01"
    assert json.loads(request.body) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "[n1] Say hi"}],
        "stream": True,
        "system": "Be brief.",
        "temperature": 0,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }


def test_no_nonce_and_version_override() -> None:
    target = anthropic_target("http://h", anthropic_version="2024-01-01")
    request = build_request(target, None)
    body = json.loads(request.body)
    assert body["messages"][0]["content"] == "hello" and "system" not in body
    assert request.headers["anthropic-version"] == "2024-01-01"


def test_x_api_key_set_twice_is_refused() -> None:
    from ttft_exporter.errors import ConfigError

    with pytest.raises(ConfigError, match="x-api-key"):
        anthropic_target("http://h", api_key_file=__file__, headers={"x-api-key": "k"})


# The engine against the simulator's Anthropic mode, over real HTTP


async def test_happy_path_with_keepalive_pings(make_llm_sim: SimFactory) -> None:
    # A 1.08 s decode window (9 gaps of 120 ms): the simulator writes on absolute
    # deadlines, so a first token delivered as late as the whole window comes with
    # all the others in one read, a burst with no gaps by definition; 180 ms was
    # within a loaded box's stalls, 1.08 s is beyond its 1 s stall budget.
    sim = await make_llm_sim(
        api_key="sk-ant-sim-key-123456",
        m=ModelBehaviour(ttft=0.3, itl=0.12, tokens=10, keepalive_interval=0.05),
    )
    target = make_target(
        protocol="anthropic",
        url=sim.url,
        headers={"x-api-key": "sk-ant-sim-key-123456"},
        cache_bust=False,
    )
    result = await probe_once(target)
    assert result.success, result.detail
    # The first text_delta is written at 0.3 s at the earliest: pings (every 50 ms
    # before it) and message_start never count as a token.
    assert result.time_to_first_token is not None
    assert 0.3 <= result.time_to_first_token < 0.3 + SLACK
    # message_start comes with the headers, before the first token.
    assert result.time_to_first_chunk is not None
    assert result.time_to_first_chunk < result.time_to_first_token
    assert result.output_tokens == 10 and result.usage_source == "usage"
    assert result.input_tokens == 1  # "hello", the simulator counts words
    assert result.token_chunks == 10 and result.finish_reason == "stop"
    gaps = result.inter_chunk_gaps
    assert gaps is not None and gaps.count == 9
    recorded = sim.state.requests[-1]
    assert recorded.path == "/v1/messages"
    assert recorded.headers["anthropic-version"] == "2023-06-01"
    assert recorded.to_json()["headers"]["x-api-key"] == "REDACTED"


async def test_ping_before_anything_is_not_the_first_chunk(
    aiohttp_server: AiohttpServer,
) -> None:
    # A real server that pings at once and sends message_start only after 0.3 s: the
    # first chunk is message_start (a lower bound from the server's own sleep), never
    # the ping, as an SSE keep-alive comment never is.
    import asyncio

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'event: ping\ndata: {"type":"ping"}\n\n')
        await asyncio.sleep(0.3)
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"message": {"usage": {"input_tokens": 3, "output_tokens": 1}}}),
            ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            (
                "message_delta",
                {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}},
            ),
            ("message_stop", {}),
        ]
        for name, payload in events:
            data = json.dumps({"type": name, **payload})
            await response.write(f"event: {name}\ndata: {data}\n\n".encode())
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", handler)
    server = await aiohttp_server(app)
    result = await probe_once(make_target(protocol="anthropic", url=str(server.make_url(""))))
    assert result.success, result.detail
    assert result.time_to_first_chunk is not None and result.time_to_first_chunk >= 0.3
    assert result.time_to_first_byte is not None
    assert result.time_to_first_byte < result.time_to_first_chunk
    assert result.output_tokens == 1 and result.input_tokens == 3


@pytest.mark.parametrize(
    ("key", "version", "status"),
    [("wrong-key-0123456789", "2023-06-01", 401), ("sk-right-0123456789", None, 400)],
    ids=["wrong-key", "no-version"],
)
async def test_simulator_checks_key_and_version(
    make_llm_sim: SimFactory, key: str, version: str | None, status: int
) -> None:
    sim = await make_llm_sim(api_key="sk-right-0123456789", m=ModelBehaviour())
    headers = {"x-api-key": key}
    if version:
        headers["anthropic-version"] = version
    body = {
        "model": "m",
        "max_tokens": 8,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.url}/v1/messages", json=body, headers=headers) as response,
    ):
        assert response.status == status
        payload = await response.json()
    assert payload["type"] == "error" and payload["error"]["type"] in (
        "authentication_error",
        "invalid_request_error",
    )


async def test_http_error_status_is_http_status(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(status=529))
    result = await probe_once(make_target(protocol="anthropic", url=sim.url))
    assert result.reason is FailureReason.HTTP_STATUS and result.http_status == 529
    assert "overloaded_error" in result.detail


async def test_a_hostile_server_sending_only_pings_times_out(
    aiohttp_server: AiohttpServer,
) -> None:
    # A raw handler: pings in a loop and nothing else, bounded by the test's timeout.
    import asyncio

    async def pings(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(200):  # bounded: 200 x 10 ms, well past the probe's deadline
            await response.write(b'event: ping\ndata: {"type":"ping"}\n\n')
            await asyncio.sleep(0.01)
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", pings)
    server = await aiohttp_server(app)
    result = await probe_once(
        make_target(protocol="anthropic", url=str(server.make_url("")), timeout="0.4s")
    )
    assert result.reason is FailureReason.TIMEOUT, result.detail
    assert "0 token chunks" in result.detail


# Usage split across events: each part of the prompt count on its own (issue #10)


@pytest.mark.parametrize(
    "delta_usage",
    [
        # A proxy repeating only the uncached part in message_delta...
        {"output_tokens": 15, "input_tokens": 25},
        # ...or only the cache part.
        {"output_tokens": 15, "cache_read_input_tokens": 1000},
        # The API's own cumulative form, every part repeated.
        {
            "output_tokens": 15,
            "input_tokens": 25,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 1000,
        },
    ],
)
async def test_prompt_parts_split_across_events_are_all_counted(
    aiohttp_server: AiohttpServer, delta_usage: dict[str, int]
) -> None:
    # Before: message_delta's parts replaced the whole prompt count of message_start
    # (25 or 1000 instead of 1025), so the input tokens and their cost were undercounted.
    events = [
        ev(
            "message_start",
            message={
                "usage": {"input_tokens": 25, "cache_read_input_tokens": 1000, "output_tokens": 1}
            },
        ),
        ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hi"}),
        ev("message_delta", delta={"stop_reason": "end_turn"}, usage=delta_usage),
        ev("message_stop"),
    ]
    body = b"".join(f"event: {f.event}\ndata: {f.data}\n\n".encode() for f in events)

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", handler)
    server = await aiohttp_server(app)
    result = await probe_once(anthropic_target(f"http://127.0.0.1:{server.port}"))
    assert result.success, result.detail
    assert result.input_tokens == 1025
    assert result.output_tokens == 15 and result.usage_source == "usage"
