"""Tests for the OpenAI-compatible streaming LLM simulator in ttft_exporter.sim.llm."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import re
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from ttft_exporter.sim import (
    LLM_SIM_STATE,
    LLMSimConfig,
    ModelBehaviour,
    create_llm_app,
    run_llm_sim,
)
from ttft_exporter.sim.llm import (
    SimEvent,
    SimRequest,
    SSEFramer,
    iter_events,
    plan_generation,
)

Client = TestClient[web.Request, web.Application]

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
FAST: dict[str, Any] = {"ttft": 0.0, "itl": 0.0, "tokens": 2}
# Bounds on the simulator's real sleeps, which hold on a starved machine (a 2-core box
# under stress-ng --cpu 2): nothing is sent before its due time (1 ms below for timer
# rounding), and a generous STARVED above it. Exact due times are the pure plan's
# (plan_generation, iter_events), tested above without any clock.
EARLY = 0.001
STARVED = 2.0


def due(measured: float, at: float) -> bool:
    return at - EARLY <= measured <= at + STARVED


async def sim_client(aiohttp_client: AiohttpClient, **knobs: Any) -> Client:
    """Start a simulator serving model "m" with fast defaults overridden by knobs."""
    config = LLMSimConfig(models={"m": ModelBehaviour(**{**FAST, **knobs})})
    return await aiohttp_client(create_llm_app(config))


def chat_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": "say hi now"}],
        "stream": True,
        **extra,
    }


def completion_body(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "prompt": "once upon a time", "stream": True, **extra}


def blocks(raw: bytes, eol: str = "\n") -> list[str]:
    """Split a raw SSE body into its events (without the blank-line terminators)."""
    parts = raw.decode().split(eol * 2)
    assert parts[-1] == "", f"stream does not end with a blank line: {raw!r}"
    return parts[:-1]


def payloads(raw: bytes) -> list[Any]:
    """Decode every data event: JSON objects, with the [DONE] sentinel kept as a str."""
    out: list[Any] = []
    for block in blocks(raw):
        if block.startswith(":"):
            continue
        assert block.startswith("data: ")
        data = block.removeprefix("data: ")
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def deltas(raw: bytes) -> list[dict[str, Any]]:
    return [
        p["choices"][0]["delta"] for p in payloads(raw) if isinstance(p, dict) and p.get("choices")
    ]


def normalise(raw: bytes) -> str:
    text = raw.decode()
    text = re.sub(r'"id":"(chatcmpl|cmpl)-[0-9a-f]{32}"', r'"id":"\1-ID"', text)
    return re.sub(r'"created":\d+', '"created":0', text)


async def stream(client: Client, body: dict[str, Any], path: str = CHAT, **kw: Any) -> bytes:
    async with client.post(path, json=body, **kw) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-cache"
        return await resp.read()


async def timed_events(resp: aiohttp.ClientResponse) -> list[tuple[float, str]]:
    """Each complete event with the perf_counter at which its last byte arrived."""
    buffer = b""
    events: list[tuple[float, str]] = []
    async for piece in resp.content.iter_any():
        now = time.perf_counter()
        buffer += piece
        *done, buffer = buffer.split(b"\n\n")
        events.extend((now, event.decode()) for event in done)
    return events


async def read_until(resp: aiohttp.ClientResponse, marker: bytes) -> bytes:
    buffer = b""
    async with asyncio.timeout(2):
        while marker not in buffer:
            buffer += await resp.content.readany()
    return buffer


def decodes(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


async def drain(resp: aiohttp.ClientResponse, sink: list[bytes]) -> None:
    async for piece in resp.content.iter_any():
        sink.append(piece)


def tok(n: int = 1) -> str:
    return "tok " * n


# Pure parts: the plan, the events and the framing.


def test_plan_counts_reasoning_against_max_tokens() -> None:
    behaviour = ModelBehaviour(reasoning_tokens=3, tokens=5)
    request = SimRequest(api="chat", model="m", max_tokens=4)
    plan = plan_generation(behaviour, request, random.Random(0))
    assert (plan.reasoning_tokens, plan.answer_tokens) == (3, 1)
    assert plan.finish_reason == "length"
    assert [c.field for c in plan.chunks] == ["reasoning"] * 3 + ["content"]


def test_plan_completions_ignore_reasoning() -> None:
    behaviour = ModelBehaviour(reasoning_tokens=3, tokens=2)
    plan = plan_generation(behaviour, SimRequest(api="completions", model="m"), random.Random())
    assert (plan.reasoning_tokens, plan.answer_tokens, plan.finish_reason) == (0, 2, "stop")


def test_plan_deadlines_follow_ttft_and_itl() -> None:
    behaviour = ModelBehaviour(ttft=0.3, itl=0.02, tokens=4, tokens_per_chunk=2)
    plan = plan_generation(behaviour, SimRequest(api="chat", model="m"), random.Random())
    assert [c.at for c in plan.chunks] == pytest.approx([0.3, 0.32])
    assert [c.tokens for c in plan.chunks] == [2, 2]
    assert plan.end_at == pytest.approx(0.32)


def test_plan_headers_delay_holds_back_early_chunks() -> None:
    behaviour = ModelBehaviour(ttft=0.1, itl=0.1, tokens=3, headers_delay=0.25)
    plan = plan_generation(behaviour, SimRequest(api="chat", model="m"), random.Random())
    assert [c.at for c in plan.chunks] == pytest.approx([0.25, 0.25, 0.3])


def test_plan_fault_cuts_a_multi_token_chunk() -> None:
    behaviour = ModelBehaviour(tokens=5, tokens_per_chunk=2, error_after=3, ttft=0.1, itl=0.1)
    plan = plan_generation(behaviour, SimRequest(api="chat", model="m"), random.Random())
    assert [c.tokens for c in plan.chunks] == [2, 1]
    assert plan.fault == "error"
    # The fault takes the place of the next chunk, one itl later.
    assert plan.end_at == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("knobs", "fault"),
    [
        ({"error_after": 2, "stall_after": 2, "drop_after": 2}, "error"),
        ({"stall_after": 1, "drop_after": 2}, "stall"),
        ({"error_after": 3, "drop_after": 1}, "drop"),
        ({"error_after": 9}, None),
    ],
    ids=["tie-error-first", "earliest-stall", "earliest-drop", "beyond-total"],
)
def test_plan_earliest_fault_wins(knobs: dict[str, int], fault: str | None) -> None:
    behaviour = ModelBehaviour(tokens=3, **knobs)
    plan = plan_generation(behaviour, SimRequest(api="chat", model="m"), random.Random())
    assert plan.fault == fault


def test_jitter_is_seeded_and_never_makes_gaps_negative() -> None:
    behaviour = ModelBehaviour(ttft=0.01, itl=0.01, jitter=0.05, tokens=200, seed=7)
    request = SimRequest(api="chat", model="m")
    first = [c.at for c in plan_generation(behaviour, request, random.Random(7)).chunks]
    again = [c.at for c in plan_generation(behaviour, request, random.Random(7)).chunks]
    other = [c.at for c in plan_generation(behaviour, request, random.Random(8)).chunks]
    assert first == again
    assert first != other
    assert first[0] >= 0
    assert all(b >= a for a, b in itertools.pairwise(first))
    assert len({round(b - a, 9) for a, b in itertools.pairwise(first)}) > 10


def _events(behaviour: ModelBehaviour, request: SimRequest) -> list[SimEvent]:
    return list(iter_events(behaviour, request, completion_id="x", created=0, rng=random.Random()))


def test_keepalives_fill_gaps_and_stop_after_done() -> None:
    behaviour = ModelBehaviour(ttft=0.1, itl=0.07, tokens=2, keepalive_interval=0.03)
    events = _events(behaviour, SimRequest(api="chat", model="m"))
    kinds = [(e.kind, round(e.at, 3)) for e in events]
    assert kinds == [
        ("data", 0.0),  # role chunk
        ("comment", 0.03),
        ("comment", 0.06),
        ("comment", 0.09),
        ("data", 0.1),
        ("comment", 0.13),
        ("comment", 0.16),
        ("data", 0.17),
        ("data", 0.17),  # finish
        ("data", 0.17),  # [DONE]
    ]
    behaviour = behaviour.model_copy(update={"keep_open_after_done": True})
    assert _events(behaviour, SimRequest(api="chat", model="m"))[-1].kind == "hold"


def test_stall_with_keepalives_pings_forever() -> None:
    behaviour = ModelBehaviour(ttft=0.0, tokens=3, stall_after=1, keepalive_interval=1.0)
    events = iter_events(
        behaviour,
        SimRequest(api="chat", model="m"),
        completion_id="x",
        created=0,
        rng=random.Random(),
    )
    head = list(itertools.islice(events, 50))
    assert [e.text for e in head[:2]] == [False, True]
    assert all(e.kind == "comment" for e in head[2:])
    # The keep-alive clock runs from the last write, the token at 0 s.
    assert [e.at for e in head[2:5]] == pytest.approx([1.0, 2.0, 3.0])


def test_stall_without_keepalives_ends_in_stall() -> None:
    behaviour = ModelBehaviour(tokens=3, stall_after=1)
    events = _events(behaviour, SimRequest(api="chat", model="m"))
    assert [e.kind for e in events] == ["data", "data", "stall"]


@pytest.mark.parametrize(
    ("data_space", "crlf", "expected"),
    [
        (True, False, b"data: {}\n\n"),
        (False, False, b"data:{}\n\n"),
        (True, True, b"data: {}\r\n\r\n"),
        (False, True, b"data:{}\r\n\r\n"),
    ],
    ids=["default", "no-space", "crlf", "no-space-crlf"],
)
def test_framer_data(data_space: bool, crlf: bool, expected: bytes) -> None:
    framer = SSEFramer(data_space=data_space, crlf=crlf)
    assert framer.frame(SimEvent(0.0, "data", "{}")) == [expected]


def test_framer_comment() -> None:
    assert SSEFramer(crlf=True).frame(SimEvent(0.0, "comment", "keep-alive")) == [
        b": keep-alive\r\n\r\n"
    ]


@pytest.mark.parametrize("seed", range(20))
def test_framer_split_cuts_inside_multibyte_characters(seed: int) -> None:
    framer = SSEFramer(split_writes=True, rng=random.Random(seed))
    event = SimEvent(0.0, "data", '{"content":"héllo🙂 "}')
    pieces = framer.frame(event)
    assert 2 <= len(pieces) <= 3
    assert all(pieces)
    assert b"".join(pieces) == 'data: {"content":"héllo🙂 "}\n\n'.encode()
    assert not all(decodes(piece) for piece in pieces)


def test_framer_split_ascii() -> None:
    pieces = SSEFramer(split_writes=True, rng=random.Random(1)).frame(
        SimEvent(0.0, "data", "[DONE]")
    )
    assert len(pieces) >= 2
    assert b"".join(pieces) == b"data: [DONE]\n\n"


# Wire format over HTTP.


async def test_chat_stream_exact_bytes(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client)
    raw = await stream(client, chat_body())
    head = '{"id":"chatcmpl-ID","object":"chat.completion.chunk","created":0,"model":"m"'
    choice = '"logprobs":null,"finish_reason":'
    assert normalise(raw) == (
        f'data: {head},"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},'
        f"{choice}null}}]}}\n\n"
        f'data: {head},"choices":[{{"index":0,"delta":{{"content":"tok "}},{choice}null}}]}}\n\n'
        f'data: {head},"choices":[{{"index":0,"delta":{{"content":"tok "}},{choice}null}}]}}\n\n'
        f'data: {head},"choices":[{{"index":0,"delta":{{}},{choice}"stop"}}]}}\n\n'
        "data: [DONE]\n\n"
    )
    ids = {p["id"] for p in payloads(raw)[:-1]}
    assert len(ids) == 1


async def test_completions_stream_exact_bytes(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, reasoning_tokens=3)
    raw = await stream(client, completion_body(), COMPLETIONS)
    head = '{"id":"cmpl-ID","object":"text_completion","created":0,"model":"m"'
    choice = '"logprobs":null,"finish_reason":'
    assert normalise(raw) == (
        f'data: {head},"choices":[{{"index":0,"text":"tok ",{choice}null}}]}}\n\n'
        f'data: {head},"choices":[{{"index":0,"text":"tok ",{choice}null}}]}}\n\n'
        f'data: {head},"choices":[{{"index":0,"text":"",{choice}"stop"}}]}}\n\n'
        "data: [DONE]\n\n"
    )


async def test_role_chunk_off(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, role_chunk=False)
    raw = await stream(client, chat_body())
    assert deltas(raw) == [{"content": tok()}, {"content": tok()}, {}]


async def test_tokens_per_chunk_and_max_tokens(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, tokens=5, tokens_per_chunk=2)
    raw = await stream(client, chat_body())
    assert deltas(raw)[1:] == [{"content": tok(2)}, {"content": tok(2)}, {"content": tok()}, {}]
    raw = await stream(client, chat_body(max_tokens=3))
    assert deltas(raw)[1:] == [{"content": tok(2)}, {"content": tok()}, {}]
    assert payloads(raw)[-2]["choices"][0]["finish_reason"] == "length"
    raw = await stream(client, chat_body(max_completion_tokens=1, max_tokens=4))
    assert deltas(raw)[1:] == [{"content": tok()}, {}]


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
async def test_reasoning_before_answer(aiohttp_client: AiohttpClient, field: str) -> None:
    client = await sim_client(
        aiohttp_client, reasoning_tokens=2, tokens=1, reasoning_field=field, usage="always"
    )
    raw = await stream(client, chat_body())
    assert deltas(raw) == [
        {"role": "assistant", "content": ""},
        {field: tok()},
        {field: tok()},
        {"content": tok()},
        {},
    ]
    usage = payloads(raw)[-2]["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 2}


@pytest.mark.parametrize(
    ("usage", "include", "expected"),
    [
        ("auto", False, False),
        ("auto", True, True),
        ("always", False, True),
        ("never", True, False),
    ],
)
async def test_usage_modes(
    aiohttp_client: AiohttpClient, usage: str, include: bool, expected: bool
) -> None:
    client = await sim_client(aiohttp_client, usage=usage, prompt_tokens=None)
    body = chat_body(stream_options={"include_usage": include})
    chunks = payloads(await stream(client, body))
    assert chunks[-1] == "[DONE]"
    if expected:
        assert chunks[-2]["choices"] == []
        assert chunks[-2]["usage"] == {
            "prompt_tokens": 3,
            "completion_tokens": 2,
            "total_tokens": 5,
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        assert all(c["usage"] is None for c in chunks[:-2])
    else:
        assert all("usage" not in c for c in chunks[:-1])


async def test_prompt_tokens_knob_and_completions_usage(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, prompt_tokens=42, usage="always")
    chunks = payloads(await stream(client, completion_body(), COMPLETIONS))
    assert chunks[-2]["usage"]["prompt_tokens"] == 42
    assert chunks[-2]["object"] == "text_completion"


async def test_continuous_usage(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(
        aiohttp_client, continuous_usage=True, tokens=3, tokens_per_chunk=2, reasoning_tokens=1
    )
    options = {"include_usage": True, "continuous_usage_stats": True}
    chunks = payloads(await stream(client, chat_body(stream_options=options)))
    running = [(c["usage"]["completion_tokens"], c["choices"] != []) for c in chunks[:-1]]
    # role, reasoning, two answer chunks, finish, usage-only chunk
    assert running == [(0, True), (1, True), (3, True), (4, True), (4, True), (4, False)]
    assert chunks[2]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 1}
    chunks = payloads(await stream(client, chat_body(stream_options={"include_usage": True})))
    assert all(c["usage"] is None for c in chunks[:-2])


# Timing over HTTP.


async def test_first_text_chunk_matches_ttft(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, ttft=0.15, itl=0.03, tokens=3)
    start = time.perf_counter()
    async with client.post(CHAT, json=chat_body()) as resp:
        events = await timed_events(resp)
    text = [at - start for at, event in events if '"content":"tok' in event]
    # Bounds (real clock): the first text is due at ttft, the last at ttft + 2 * itl.
    assert due(text[0], 0.15)
    assert due(text[2], 0.21)
    # The role chunk goes out with the headers, before the first text: an ordering,
    # since a starved client may read both at once.
    role = next(at - start for at, event in events if '"role"' in event)
    assert role <= text[0]
    state = client.app[LLM_SIM_STATE]
    record = state.requests[-1]
    assert record.first_text_written is not None
    assert due(record.first_text_written - record.arrival, 0.15)  # server-side bound
    assert list(state.first_token_written) == [record.first_text_written]


async def test_headers_delay(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, headers_delay=0.1)
    start = time.perf_counter()
    async with client.post(CHAT, json=chat_body()) as resp:
        elapsed = time.perf_counter() - start
        await resp.read()
    assert due(elapsed, 0.1)  # bound (real clock)


async def test_keepalive_comments(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, ttft=0.1, itl=0.07, keepalive_interval=0.03)
    raw = await stream(client, chat_body())
    kinds = ["ping" if b == ": keep-alive" else "data" for b in blocks(raw)]
    assert kinds == ["data", "ping", "ping", "ping", "data", "ping", "ping", "data", "data", "data"]


# Fault injection over HTTP.


async def test_status_error(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, status=503)
    async with client.post(CHAT, json=chat_body()) as resp:
        assert resp.status == 503
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body["error"]["type"] == "server_error"
    assert body["error"]["code"] == 503


async def test_error_after(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, tokens=4, error_after=2)
    chunks = payloads(await stream(client, chat_body(stream_options={"include_usage": True})))
    assert [c["choices"][0]["delta"] for c in chunks[1:3]] == [{"content": tok()}] * 2
    assert chunks[3:] == [
        {
            "error": {
                "message": "Simulated server error after 2 tokens.",
                "type": "server_error",
                "code": 500,
            }
        },
        "[DONE]",
    ]


async def test_stall_after(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, tokens=3, stall_after=1)
    async with client.post(CHAT, json=chat_body()) as resp:
        received = await read_until(resp, b'"content":"tok "')
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(resp.content.readany(), 0.2)
        assert not resp.content.at_eof()
    assert received.count(b"data: ") == 2


async def test_stall_after_keeps_pinging(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, tokens=3, stall_after=1, keepalive_interval=0.02)
    async with client.post(CHAT, json=chat_body()) as resp:
        received = await read_until(resp, b'"content":"tok "')
        await asyncio.sleep(0.15)
        later = resp.content.read_nowait()
    assert received.count(b"data: ") == 2
    assert later
    assert set(blocks(later)) == {": keep-alive"}


async def test_drop_after(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, tokens=3, drop_after=1)
    pieces: list[bytes] = []
    async with client.post(CHAT, json=chat_body()) as resp:
        assert resp.status == 200
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
            await drain(resp, pieces)
    received = b"".join(pieces)
    assert received.count(b"data: ") == 2
    assert b"[DONE]" not in received


async def test_malformed_after(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, malformed_after=1)
    raw = await stream(client, chat_body())
    events = blocks(raw)
    assert events[2] == 'data: {"choices": ['
    assert [json.loads(e.removeprefix("data: "))["choices"][0]["delta"] for e in events[3:5]] == [
        {"content": tok()},
        {},
    ]
    assert events[-1] == "data: [DONE]"


# How a stream ends (issue #9): finish_reason, omit_done, truncate_after, burst.


def finishes(raw: bytes) -> list[Any]:
    """The finish_reason of every chunk that has a choice."""
    return [
        p["choices"][0]["finish_reason"]
        for p in payloads(raw)
        if isinstance(p, dict) and p.get("choices")
    ]


@pytest.mark.parametrize("reason", ["content_filter", "tool_calls", "weird-reason"])
async def test_finish_reason_knob_is_sent_as_is(aiohttp_client: AiohttpClient, reason: str) -> None:
    client = await sim_client(aiohttp_client, tokens=2, finish_reason=reason)
    raw = await stream(client, chat_body(stream_options={"include_usage": True}))
    chunks = payloads(raw)
    assert finishes(raw) == [None, None, None, reason]
    # The usage chunk still comes after the finish chunk, with no choice.
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["completion_tokens"] == 2
    assert chunks[-1] == "[DONE]"


async def test_finish_reason_null_is_done_without_a_finish_chunk(
    aiohttp_client: AiohttpClient,
) -> None:
    # llama-cpp-python, a generation interrupted by another request: [DONE] and no
    # finish_reason anywhere.
    client = await sim_client(aiohttp_client, tokens=3, finish_reason=None)
    raw = await stream(client, chat_body())
    assert finishes(raw) == [None] * 4  # role chunk and three tokens
    assert payloads(raw)[-1] == "[DONE]"


async def test_finish_reason_auto_follows_max_tokens(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, tokens=5)
    assert finishes(await stream(client, chat_body(max_tokens=3)))[-1] == "length"
    assert finishes(await stream(client, chat_body()))[-1] == "stop"


async def test_omit_done_ends_the_response_cleanly(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, tokens=2, omit_done=True)
    raw = await stream(client, chat_body(stream_options={"include_usage": True}), COMPLETIONS)
    chunks = payloads(raw)
    assert "[DONE]" not in chunks
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []  # the usage chunk, then a clean EOF


async def test_truncate_after_ends_cleanly_mid_generation(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, tokens=5, truncate_after=2)
    # stream() reads to a clean EOF (no ClientPayloadError): the chunked body ended.
    raw = await stream(client, chat_body(stream_options={"include_usage": True}))
    assert deltas(raw) == [
        {"role": "assistant", "content": ""},
        {"content": tok()},
        {"content": tok()},
    ]
    assert finishes(raw) == [None, None, None]
    assert b"[DONE]" not in raw and b'"usage":{' not in raw


@pytest.mark.parametrize(("knobs", "fault"), [({"truncate_after": 1, "drop_after": 1}, "drop")])
def test_plan_truncate_yields_to_the_other_faults(knobs: dict[str, int], fault: str) -> None:
    plan = plan_generation(
        ModelBehaviour(tokens=3, **knobs), SimRequest("chat", "m"), random.Random(0)
    )
    assert plan.fault == fault


async def test_burst_writes_tokens_and_ending_in_one_write(aiohttp_client: AiohttpClient) -> None:
    # 8 tokens 30 ms apart, held back and written at once when the last is due: the
    # client sees them arrive together, at the last token's time (TTFT = e2e), as a
    # buffering proxy or a starved client would. Bounds hold on a loaded machine: the
    # burst cannot arrive before its deadline, and its events arrive in one read.
    client = await sim_client(aiohttp_client, ttft=0.05, itl=0.03, tokens=8, burst=True)
    started = time.perf_counter()
    async with client.post(CHAT, json=chat_body()) as resp:
        events = await timed_events(resp)
    texts = [(t, e) for t, e in events if '"content":"tok' in e]
    assert len(texts) == 8
    assert len({t for t, _ in texts}) == 1  # one read for all of them
    assert texts[0][0] - started >= 0.05 + 7 * 0.03 - 0.001
    assert events[-1][1] == "data: [DONE]"
    assert events[-1][0] == texts[0][0]  # the ending came in the same write


async def test_keep_open_after_done(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, keep_open_after_done=True)
    async with client.post(CHAT, json=chat_body()) as resp:
        received = await read_until(resp, b"data: [DONE]\n\n")
        assert received.endswith(b"data: [DONE]\n\n")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(resp.content.readany(), 0.2)
        assert not resp.content.at_eof()


async def test_client_disconnects_are_quiet(
    aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await sim_client(aiohttp_client, ttft=5.0)
    caplog.set_level(logging.DEBUG)
    async with client.post(CHAT, json=chat_body()) as resp:
        await read_until(resp, b'"role"')
    async with client.post(CHAT, json=chat_body(), headers={"X-Sim-Stall-After": "0"}) as resp:
        await read_until(resp, b'"role"')
    headers = {"X-Sim-Drop-After": "0", "X-Sim-Ttft": "0"}
    async with client.post(CHAT, json=chat_body(), headers=headers) as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    await asyncio.sleep(0.05)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []


# Framing knobs over HTTP.


async def test_data_space_off(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, data_space=False)
    events = blocks(await stream(client, chat_body()))
    assert all(e.startswith("data:") and not e.startswith("data: ") for e in events)
    assert events[-1] == "data:[DONE]"


async def test_crlf(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, crlf=True, keepalive_interval=0.01, ttft=0.03)
    raw = await stream(client, chat_body())
    assert b"\n" not in raw.replace(b"\r\n", b"")
    events = blocks(raw, "\r\n")
    assert ": keep-alive" in events
    assert events[-1] == "data: [DONE]"


async def test_split_writes_with_multibyte_text(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, split_writes=True, token_text="héllo🙂", seed=3)
    async with client.post(CHAT, json=chat_body()) as resp:
        pieces = [piece async for piece in resp.content.iter_any()]
    raw = b"".join(pieces)
    assert deltas(raw)[1:] == [{"content": "héllo🙂 "}] * 2 + [{}]
    assert payloads(raw)[-1] == "[DONE]"


# Per-request overrides and runtime control.


async def test_header_overrides(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client)
    headers = {"X-Sim-Tokens": "1", "X-Sim-Usage": "always", "X-Sim-Token-Text": '"x"'}
    chunks = payloads(await stream(client, chat_body(), headers=headers))
    assert chunks[1]["choices"][0]["delta"] == {"content": "x "}
    assert chunks[-2]["usage"]["completion_tokens"] == 1
    # Overrides apply to one request only.
    assert len(deltas(await stream(client, chat_body()))) == 4


async def test_header_override_of_timing(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client)
    start = time.perf_counter()
    async with client.post(CHAT, json=chat_body(), headers={"X-Sim-Ttft": "0.1"}) as resp:
        events = await timed_events(resp)
    first = next(at for at, event in events if '"content":"tok' in event)
    # Bound (real clock): the override's 100 ms, where the model's own ttft is 0.
    assert due(first - start, 0.1)


@pytest.mark.parametrize(
    "headers",
    [{"X-Sim-Ttft": "abc"}, {"X-Sim-Ttft": "-1"}, {"X-Sim-No-Such-Knob": "1"}],
    ids=["not-a-number", "negative", "unknown-knob"],
)
async def test_invalid_header_override(
    aiohttp_client: AiohttpClient, headers: dict[str, str]
) -> None:
    client = await sim_client(aiohttp_client)
    async with client.post(CHAT, json=chat_body(), headers=headers) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert "X-Sim-" in body["error"]["message"]


async def test_patch_models(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client)
    async with client.patch("/sim/models/m", json={"tokens": 1, "token_text": "y"}) as resp:
        assert resp.status == 200
        updated = await resp.json()
    assert (updated["tokens"], updated["token_text"], updated["ttft"]) == (1, "y", 0.0)
    assert deltas(await stream(client, chat_body()))[1:] == [{"content": "y "}, {}]

    async with client.patch("/sim/models/new", json={"tokens": 1}) as resp:
        assert resp.status == 200
    async with client.get("/sim/models") as resp:
        models = (await resp.json())["models"]
    assert set(models) == {"m", "new"}
    assert models["new"]["ttft"] == ModelBehaviour().ttft
    assert client.app[LLM_SIM_STATE].config.models["m"].tokens == 1


@pytest.mark.parametrize(
    ("body", "needle"),
    [({"ttft": -1}, "ttft"), ({"nope": 1}, "nope"), ({"status": 302}, "status"), ([1], "")],
    ids=["negative", "unknown", "bad-status", "not-an-object"],
)
async def test_patch_models_rejects_bad_knobs(
    aiohttp_client: AiohttpClient, body: object, needle: str
) -> None:
    client = await sim_client(aiohttp_client)
    async with client.patch("/sim/models/m", json=body) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert needle in error["message"]
    assert client.app[LLM_SIM_STATE].config.models["m"].ttft == 0.0


async def test_set_model_leaves_callers_config_alone() -> None:
    config = LLMSimConfig()
    app = create_llm_app(config)
    app[LLM_SIM_STATE].set_model("sim-model", ModelBehaviour(tokens=1))
    assert config.models["sim-model"].tokens == 16
    assert app[LLM_SIM_STATE].config.models["sim-model"].tokens == 1


async def test_api_key_and_recorded_requests(aiohttp_client: AiohttpClient) -> None:
    config = LLMSimConfig(models={"m": ModelBehaviour(**FAST)}, api_key="sekret", record_requests=2)
    client = await aiohttp_client(create_llm_app(config))
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        async with client.post(CHAT, json=chat_body(), headers=headers) as resp:
            assert resp.status == 401
            error = (await resp.json())["error"]
        assert error["code"] == "invalid_api_key"
    async with client.get("/v1/models") as resp:
        assert resp.status == 401
    await stream(client, chat_body(), headers={"Authorization": "Bearer sekret"})

    state = client.app[LLM_SIM_STATE]
    assert len(state.requests) == 2
    assert state.requests[-1].headers["Authorization"] == "Bearer sekret"
    assert state.requests[-1].body == chat_body()
    async with client.get("/sim/requests", params={"limit": "1"}) as resp:
        recorded = (await resp.json())["requests"]
    assert len(recorded) == 1
    assert recorded[0]["path"] == CHAT
    assert recorded[0]["headers"]["Authorization"] == "REDACTED"
    assert recorded[0]["body"] == chat_body()
    async with client.get("/sim/requests") as resp:
        assert [r["path"] for r in (await resp.json())["requests"]] == ["/v1/models", CHAT]
    # A limit above what is held returns all of it (it once returned the last 1 here).
    async with client.get("/sim/requests", params={"limit": "3"}) as resp:
        assert [r["path"] for r in (await resp.json())["requests"]] == ["/v1/models", CHAT]
    async with client.get("/sim/requests", params={"limit": "x"}) as resp:
        assert resp.status == 400


# Request errors, non-streaming answers and the model list.


async def test_unknown_model(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client)
    async with client.post(CHAT, json=chat_body(model="x")) as resp:
        assert resp.status == 404
        body = await resp.json()
    assert body["error"]["message"] == "The model `x` does not exist."
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        b"[]",
        json.dumps({"messages": []}).encode(),
        json.dumps({"model": "m"}).encode(),
        json.dumps(chat_body(max_tokens=0)).encode(),
        json.dumps(chat_body(stream="yes")).encode(),
    ],
    ids=["bad-json", "not-object", "no-model", "no-messages", "zero-max-tokens", "bad-stream"],
)
async def test_bad_requests(aiohttp_client: AiohttpClient, data: bytes) -> None:
    client = await sim_client(aiohttp_client)
    headers = {"Content-Type": "application/json"}
    async with client.post(CHAT, data=data, headers=headers) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error"]["type"] == "invalid_request_error"


async def test_non_streaming_chat(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, reasoning_tokens=1, ttft=0.05, itl=0.02)
    start = time.perf_counter()
    async with client.post(CHAT, json=chat_body(stream=False)) as resp:
        assert resp.status == 200
        body = await resp.json()
    # Bound (real clock): the whole answer waits for its last token, due at 90 ms.
    assert due(time.perf_counter() - start, 0.09)
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": tok(2), "reasoning": tok()},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"]["completion_tokens"] == 3
    assert body["usage"]["prompt_tokens"] == 3


async def test_non_streaming_completions(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, tokens=5)
    body = completion_body(stream=False, max_tokens=3)
    async with client.post(COMPLETIONS, json=body) as resp:
        body = await resp.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == tok(3)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["total_tokens"] == 4 + 3


async def test_non_streaming_error_after(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, error_after=1)
    async with client.post(CHAT, json=chat_body(stream=False)) as resp:
        assert resp.status == 500
        assert (await resp.json())["error"]["type"] == "server_error"


async def test_non_streaming_drop_and_stall(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client)
    headers = {"X-Sim-Drop-After": "1"}
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.post(CHAT, json=chat_body(stream=False), headers=headers)
    headers = {"X-Sim-Stall-After": "1"}
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            client.post(CHAT, json=chat_body(stream=False), headers=headers), 0.2
        )


async def test_models_list(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client)
    async with client.get("/v1/models") as resp:
        body = await resp.json()
    assert body["object"] == "list"
    assert [(m["id"], m["object"]) for m in body["data"]] == [("m", "model")]


async def test_run_llm_sim() -> None:
    runner, port = await run_llm_sim(LLMSimConfig(models={"m": ModelBehaviour(**FAST)}))
    try:
        assert port > 0
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{port}{CHAT}", json=chat_body()) as resp,
        ):
            raw = await resp.read()
        assert raw.endswith(b"data: [DONE]\n\n")
    finally:
        await runner.cleanup()


async def test_shutdown_releases_held_streams() -> None:
    behaviour = ModelBehaviour(**FAST, keep_open_after_done=True)
    # run_llm_sim's runner, with a 30 s grace period instead of 1 s: streams the app
    # did not release would hold cleanup() for all of it.
    app = create_llm_app(LLMSimConfig(models={"m": behaviour}))
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=30.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}{CHAT}"
    stalled = {"X-Sim-Stall-After": "1", "X-Sim-Keepalive-Interval": "0.01"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=chat_body()) as held,
        session.post(url, json=chat_body(), headers=stalled) as pinging,
    ):
        await read_until(held, b"[DONE]")
        await read_until(pinging, b": keep-alive")
        start = time.perf_counter()
        await runner.cleanup()
        # Bound (real clock): far below the 30 s grace period, even on a starved box.
        assert time.perf_counter() - start < 5.0
        with pytest.raises(aiohttp.ClientPayloadError):
            await held.read()


@pytest.mark.parametrize(
    ("extra", "on_usage_chunk"),
    [({"stream_options": {"include_usage": True}}, True), ({}, False)],
    ids=["usage-chunk", "finish-chunk"],
)
async def test_llamacpp_timings_ride_on_the_last_chunk(
    aiohttp_client: AiohttpClient, extra: dict[str, Any], on_usage_chunk: bool
) -> None:
    # As llama-server's to_json_oaicompat_chat_stream: `timings` on the last chunk
    # before [DONE], the usage chunk when one is sent. The figures are the plan's: the
    # first token due at 50 ms less 20 ms of headers_delay (queueing, not prefill),
    # then 3 gaps of 10 ms.
    client = await sim_client(
        aiohttp_client,
        headers_delay=0.02,
        ttft=0.05,
        itl=0.01,
        tokens=4,
        prompt_tokens=5,
        llamacpp_timings=True,
    )
    out = [p for p in payloads(await stream(client, chat_body(**extra))) if isinstance(p, dict)]
    with_timings = [p for p in out if "timings" in p]
    assert len(with_timings) == 1 and with_timings[0] is out[-1]
    assert (out[-1]["choices"] == []) is on_usage_chunk
    timings = out[-1]["timings"]
    assert timings["prompt_n"] == 5 and timings["predicted_n"] == 4
    assert timings["prompt_ms"] == pytest.approx(30.0)
    assert timings["predicted_ms"] == pytest.approx(30.0)


async def test_no_llamacpp_timings_by_default(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, tokens=2)
    raw = await stream(client, chat_body(stream_options={"include_usage": True}))
    assert b"timings" not in raw
