"""OpenAI Responses streaming (llm-streaming.md §A.2): the pure event decoder on the
spec's shapes, the request builder, and the engine against the simulator's Responses
mode and a hostile server over real HTTP. The core trap matrix, shared with the other
protocols, is parametrized over them in test_trap_matrix.py.

Timing bounds hold on a loaded 2-core machine (`stress-ng --cpu 2`): lower bounds come
from the simulator's own sleeps measured from the request start (it never writes an
event before its deadline), upper bounds are generous (seconds, not milliseconds)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from tests.conftest import SimFactory, make_target, probe_once
from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.base import StreamItem, StreamTimeline, Usage, finish_reason_label
from ttft_exporter.probes.framing import Frame, SSEFramer
from ttft_exporter.probes.openai_responses import (
    OpenAIResponsesTarget,
    ResponsesDecoder,
    build_request,
    responses_url,
)
from ttft_exporter.sim.llm import ModelBehaviour

SLACK = 2.0
USAGE = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 40,
    "output_tokens_details": {"reasoning_tokens": 30},
    "total_tokens": 52,
}


def ev(name: str, **payload: Any) -> Frame:
    return Frame(json.dumps({"type": name, "sequence_number": 1, **payload}), name)


def responses_target(url: str, **fields: Any) -> OpenAIResponsesTarget:
    target = make_target(protocol="openai-responses", url=url, **fields)
    assert isinstance(target, OpenAIResponsesTarget)
    return target


# The pure decoder


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (ev("response.created", response={"status": "in_progress"}), StreamItem()),
        (ev("response.in_progress", response={"status": "in_progress"}), StreamItem()),
        (ev("response.queued", response={"status": "queued"}), StreamItem()),
        (ev("response.output_item.added", output_index=0, item={"type": "message"}), StreamItem()),
        (ev("response.content_part.added", part={"type": "output_text"}), StreamItem()),
        (ev("response.output_text.delta", delta="Hi", output_index=0), StreamItem(text="Hi")),
        (ev("response.output_text.delta", delta=""), StreamItem()),
        (ev("response.refusal.delta", delta="No."), StreamItem(text="No.")),
        (
            ev("response.reasoning_summary_text.delta", delta="think", summary_index=0),
            StreamItem(reasoning="think"),
        ),
        (ev("response.reasoning_text.delta", delta="raw"), StreamItem(reasoning="raw")),
        (ev("response.output_text.done", text="Hi there"), StreamItem()),
        (ev("response.function_call_arguments.delta", delta="{"), StreamItem()),
        (
            ev("response.completed", response={"status": "completed", "usage": USAGE}),
            StreamItem(
                usage=Usage(input_tokens=12, output_tokens=40, reasoning_tokens=30),
                finish_reason="stop",
                done=True,
            ),
        ),
        (
            ev(
                "response.incomplete",
                response={
                    "status": "incomplete",
                    "incomplete_details": {"reason": "max_output_tokens"},
                    "usage": USAGE,
                },
            ),
            StreamItem(
                usage=Usage(input_tokens=12, output_tokens=40, reasoning_tokens=30),
                finish_reason="length",
                done=True,
            ),
        ),
        (
            ev(
                "response.incomplete", response={"incomplete_details": {"reason": "content_filter"}}
            ),
            StreamItem(finish_reason="content_filter", done=True),
        ),
        (
            ev("response.incomplete", response={"incomplete_details": None}),
            StreamItem(done=True),
        ),
        # A proxy that dropped the `event:` lines: the data's type decides.
        (Frame('{"type":"response.output_text.delta","delta":"x"}'), StreamItem(text="x")),
    ],
    ids=[
        "created",
        "in_progress",
        "queued",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "empty-delta",
        "refusal.delta",
        "reasoning_summary",
        "reasoning_text",
        "output_text.done",
        "function_call_arguments",
        "completed",
        "incomplete-max-tokens",
        "incomplete-content-filter",
        "incomplete-no-reason",
        "unnamed",
    ],
)
def test_decoder(frame: Frame, expected: StreamItem) -> None:
    assert ResponsesDecoder().decode(frame) == expected


def test_finish_labels() -> None:
    decoder = ResponsesDecoder()
    completed = decoder.decode(ev("response.completed", response={}))
    assert completed is not None and finish_reason_label(completed.finish_reason) == "stop"
    odd = decoder.decode(
        ev("response.incomplete", response={"incomplete_details": {"reason": "x"}})
    )
    assert odd is not None and finish_reason_label(odd.finish_reason) == "other"


@pytest.mark.parametrize(
    ("frame", "text"),
    [
        (
            ev("error", code="server_error", message="The server had an error", param=None),
            "The server had an error (code server_error)",
        ),
        (
            ev(
                "response.failed",
                response={"status": "failed", "error": {"code": "rate_limit", "message": "slow"}},
            ),
            "slow (code rate_limit)",
        ),
        (ev("response.failed", response={"status": "failed"}), "response.failed"),
    ],
    ids=["error", "failed", "failed-without-error"],
)
def test_error_shapes_are_stream_error(frame: Frame, text: str) -> None:
    with pytest.raises(ProbeFailure) as info:
        ResponsesDecoder().decode(frame)
    assert info.value.reason is FailureReason.STREAM_ERROR
    assert text in info.value.detail


def test_wire_bytes_through_the_framer() -> None:
    raw = (
        b'event: response.created\ndata: {"type":"response.created","response":{}}\n\n'
        b": keep-alive\n\n"
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n'
        b'event: response.completed\ndata: {"type":"response.completed","response":{"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
    )
    framer, decoder = SSEFramer(), ResponsesDecoder()
    timeline = StreamTimeline(0, max_tokens=64)
    for t, frame in enumerate(framer.feed(raw)):
        item = decoder.decode(frame)
        assert item is not None
        timeline.on_item(t, item)
    assert framer.comments == 1
    assert timeline.usage == Usage(input_tokens=3, output_tokens=1)
    assert timeline.done and timeline.finish_reason == "stop" and timeline.answer == "Hi"


# The request builder


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://api.openai.com/v1", "https://api.openai.com/v1/responses"),
        ("https://api.openai.com/v1/", "https://api.openai.com/v1/responses"),
        ("http://ollama:11434/v1/responses", "http://ollama:11434/v1/responses"),
    ],
)
def test_url_forms(base: str, url: str) -> None:
    assert responses_url(base) == url


def test_request_headers_and_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPONSES_TEST_KEY", "sk-resp-0123456789")
    target = responses_target(
        "https://api.openai.com/v1",
        model="gpt-5-mini",
        prompt="Say hi",
        instructions="Be brief.",
        max_tokens=32,
        api_key_env="RESPONSES_TEST_KEY",
        extra_body={"reasoning": {"effort": "low", "summary": "auto"}},
    )
    request = build_request(target, "[n1]")
    assert request.url == "https://api.openai.com/v1/responses"
    assert request.headers["Authorization"] == "Bearer sk-resp-0123456789"
    assert json.loads(request.body) == {
        "model": "gpt-5-mini",
        "input": "[n1] Say hi",
        "stream": True,
        "max_output_tokens": 32,
        "instructions": "Be brief.",
        "reasoning": {"effort": "low", "summary": "auto"},
    }


def test_no_nonce() -> None:
    body = json.loads(build_request(responses_target("http://h/v1"), None).body)
    assert body["input"] == "hello" and "instructions" not in body


# The engine against the simulator's Responses mode, over real HTTP


async def test_happy_path_with_keepalives(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(
        api_key="sk-resp-sim-123456",
        m=ModelBehaviour(ttft=0.3, itl=0.02, tokens=10, keepalive_interval=0.05),
    )
    target = make_target(
        protocol="openai-responses",
        url=f"{sim.url}/v1",
        headers={"Authorization": "Bearer sk-resp-sim-123456"},
        cache_bust=False,
    )
    result = await probe_once(target)
    assert result.success, result.detail
    assert result.time_to_first_token is not None
    assert 0.3 <= result.time_to_first_token < 0.3 + SLACK
    # response.created comes with the headers: a chunk, not a token.
    assert result.time_to_first_chunk is not None
    assert result.time_to_first_chunk < result.time_to_first_token
    assert result.output_tokens == 10 and result.usage_source == "usage"
    assert result.input_tokens == 1 and result.finish_reason == "stop"
    assert result.token_chunks == 10
    recorded = sim.state.requests[-1]
    assert recorded.path == "/v1/responses" and recorded.body["max_output_tokens"] == 64


async def test_wrong_key_is_http_status(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(api_key="sk-right-0123456789", m=ModelBehaviour())
    target = make_target(
        protocol="openai-responses",
        url=f"{sim.url}/v1",
        headers={"Authorization": "Bearer sk-wrong-0123456789"},
    )
    result = await probe_once(target)
    assert result.reason is FailureReason.HTTP_STATUS and result.http_status == 401


async def test_response_failed_after_text_from_a_hostile_server(
    aiohttp_server: AiohttpServer,
) -> None:
    # A real server sending text, then response.failed, inside a 200 stream.
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(
            b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n'
        )
        await asyncio.sleep(0.05)
        failed = {
            "type": "response.failed",
            "response": {"status": "failed", "error": {"code": "server_error", "message": "boom"}},
        }
        await response.write(f"event: response.failed\ndata: {json.dumps(failed)}\n\n".encode())
        return response

    app = web.Application()
    app.router.add_post("/v1/responses", handler)
    server = await aiohttp_server(app)
    result = await probe_once(
        make_target(protocol="openai-responses", url=str(server.make_url("/v1")))
    )
    assert result.reason is FailureReason.STREAM_ERROR, result.detail
    assert "boom (code server_error)" in result.detail and result.token_chunks == 1
