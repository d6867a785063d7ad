"""The simulator's TGI mode (ttft_exporter/sim/protocols/tgi.py): the wire shapes of
llm-streaming.md §A.5 over real HTTP, its request checks and errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from tests.conftest import SimClient, sim_client

DETAILS = {"inputs": "a b c", "parameters": {"max_new_tokens": 20, "details": True}}


async def events(client: SimClient, body: dict[str, Any], **headers: str) -> tuple[str, list[Any]]:
    resp = await client.post("/generate_stream", json=body, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/event-stream"
    assert resp.headers["X-Accel-Buffering"] == "no"
    text = await resp.text()
    data = [line.removeprefix("data:") for line in text.split("\n") if line.startswith("data:")]
    return text, [json.loads(d) for d in data]


async def test_stream_shape(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, tokens=3)
    text, out = await events(client, DETAILS)
    assert "data: " not in text and "[DONE]" not in text  # TGI's framing
    assert out[0]["token"]["special"] is True  # <s>
    assert [o["token"]["text"] for o in out[1:4]] == ["tok "] * 3
    assert all(o["generated_text"] is None and o["details"] is None for o in out[:-1])
    final = out[-1]
    assert final["token"] == {"id": 2, "text": "</s>", "logprob": -0.01, "special": True}
    assert final["generated_text"] == "tok tok tok "
    assert final["details"] == {
        "finish_reason": "eos_token",
        "generated_tokens": 4,
        "seed": None,
        "input_length": 3,
    }
    assert [o["index"] for o in out] == [1, 2, 3, 4, 5]


async def test_length_and_no_details_unless_asked(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, tokens=10, role_chunk=False)
    _, out = await events(client, {"inputs": "x", "parameters": {"max_new_tokens": 2}})
    assert len(out) == 2 and out[-1]["token"]["special"] is False
    assert out[-1]["generated_text"] == "tok tok " and out[-1]["details"] is None
    _, out = await events(client, {**DETAILS, "parameters": {"max_new_tokens": 2, "details": True}})
    assert out[-1]["details"]["finish_reason"] == "length"


async def test_error_event(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, tokens=5, error_after=1)
    _, out = await events(client, DETAILS)
    assert out[-1]["error_type"] == "generation" and "error" in out[-1]


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        ({"parameters": {}}, {}, 422, "missing field `inputs`"),
        ({"inputs": "x", "parameters": {"max_new_tokens": 0}}, {}, 422, "strictly positive"),
        ({"inputs": "x"}, {"X-Sim-Model": "nope"}, 404, "is not served"),
        ({"inputs": "x"}, {"X-Sim-Tokens": "-1"}, 422, "Invalid X-Sim-* override"),
        ({"inputs": "x"}, {"X-Sim-Status": "503"}, 503, "simulated error"),
    ],
    ids=["no-inputs", "max-new-tokens", "unknown-model", "bad-knob", "status-knob"],
)
async def test_errors_are_tgi_shaped(
    aiohttp_client: AiohttpClient,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    client = await sim_client(aiohttp_client)
    resp = await client.post("/generate_stream", json=body, headers=headers)
    assert resp.status == status
    payload = await resp.json()
    assert set(payload) == {"error", "error_type"} and error in payload["error"]


async def test_a_key_set_on_the_simulator_is_checked(aiohttp_client: AiohttpClient) -> None:
    client = await sim_client(aiohttp_client, api_key="hf_1", tokens=1)
    refused = await client.post("/generate_stream", json=DETAILS)
    assert refused.status == 401
    assert (await events(client, DETAILS, Authorization="Bearer hf_1"))[1]
