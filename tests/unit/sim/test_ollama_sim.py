"""The simulator's Ollama mode (ttft_exporter/sim/protocols/ollama.py): the wire shapes
of llm-streaming.md §A.4 over real HTTP, its request checks and errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from tests.conftest import SimClient, sim_client


async def lines(client: SimClient, path: str, body: dict[str, Any], **headers: str) -> list[Any]:
    resp = await client.post(path, json=body, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/x-ndjson"
    text = await resp.text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


async def test_chat_stream_shape(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, tokens=3, reasoning_tokens=2, prompt_tokens=9)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    out = await lines(client, "/api/chat", body)
    assert out[0]["message"] == {"role": "assistant", "content": ""}  # the empty first line
    assert [o["message"].get("thinking") for o in out[1:3]] == ["tok ", "tok "]
    assert [o["message"]["content"] for o in out[3:6]] == ["tok "] * 3
    assert all(o["done"] is False for o in out[:-1])
    final = out[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["prompt_eval_count"] == 9 and final["eval_count"] == 5
    for field in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[field], int) and final[field] >= 0
    assert "context" not in final


async def test_generate_stream_shape_num_predict_and_think_false(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await sim_client(aiohttp_client, tokens=10, reasoning_tokens=4, role_chunk=False)
    body = {"model": "m", "prompt": "hi", "think": False, "options": {"num_predict": 3}}
    out = await lines(client, "/api/generate", body)
    assert [o["response"] for o in out[:-1]] == ["tok "] * 3
    assert not any("thinking" in o for o in out)
    assert out[-1]["done_reason"] == "length" and out[-1]["eval_count"] == 3
    assert isinstance(out[-1]["context"], list)


@pytest.mark.parametrize(
    ("knobs", "present", "absent"),
    [
        ({"error_after": 1}, {"error"}, {"done", "eval_count"}),
        ({"finish_reason": None}, {"done", "eval_count"}, {"done_reason"}),
        ({"usage": "never"}, {"done", "done_reason"}, {"eval_count", "prompt_eval_count"}),
    ],
    ids=["error-line", "no-done-reason", "no-counts"],
)
async def test_endings(
    aiohttp_client: AiohttpClient, knobs: dict[str, Any], present: set[str], absent: set[str]
) -> None:
    client = await sim_client(aiohttp_client, tokens=2, **knobs)
    out = await lines(client, "/api/generate", {"model": "m", "prompt": "x"})
    assert present <= set(out[-1]) and not absent & set(out[-1])


async def test_keepalives_are_blank_lines(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, ttft=0.12, tokens=1, keepalive_interval=0.05)
    resp = await client.post("/api/generate", json={"model": "m", "prompt": "x"})
    text = await resp.text()
    assert "\n\n" in text and all(json.loads(line) for line in text.split("\n") if line)


async def test_stream_false_is_one_object(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, tokens=2, reasoning_tokens=1)
    resp = await client.post(
        "/api/chat",
        json={"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": False},
    )
    assert resp.content_type == "application/json"
    whole = await resp.json()
    assert whole["message"] == {"role": "assistant", "content": "tok tok ", "thinking": "tok "}
    assert whole["done"] is True and whole["eval_count"] == 3


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        ({"model": "nope", "prompt": "x"}, {}, 404, 'model "nope" not found, try pulling it first'),
        ({"prompt": "x"}, {}, 400, "model is required"),
        ({"model": "m", "prompt": "x", "stream": "yes"}, {}, 400, "stream must be a boolean"),
        ({"model": "m", "prompt": "x", "options": {"num_predict": "9"}}, {}, 400, "num_predict"),
        ({"model": "m", "prompt": "x"}, {"X-Sim-Tokens": "-1"}, 400, "Invalid X-Sim-* override"),
        ({"model": "m", "prompt": "x"}, {"X-Sim-Status": "503"}, 503, "simulated error"),
    ],
    ids=["unknown-model", "no-model", "stream-not-bool", "num-predict", "bad-knob", "status-knob"],
)
async def test_errors_are_ollama_shaped(
    aiohttp_client: AiohttpClient,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    client = await sim_client(aiohttp_client)
    resp = await client.post("/api/generate", json=body, headers=headers)
    assert resp.status == status
    payload = await resp.json()
    assert set(payload) == {"error"} and error in payload["error"]


async def test_a_key_set_on_the_simulator_is_checked_as_a_bearer_token(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await sim_client(aiohttp_client, api_key="k-1", tokens=1)
    body = {"model": "m", "prompt": "x"}
    refused = await client.post("/api/generate", json=body, headers={"Authorization": "Bearer no"})
    assert refused.status == 401 and await refused.json() == {"error": "unauthorized"}
    assert await lines(client, "/api/generate", body, Authorization="Bearer k-1")
