"""Hugging Face TGI's native API (llm-streaming.md §A.5): the event decoder on the wire
shapes, the request body, and the engine against the simulator's TGI mode over real
HTTP (special and empty tokens, keep-alive comments, multi-token events, usage only in
the final event). The traps shared with the other protocols (an error event inside a
200 stream, stall, drop, truncation, a malformed event, no tokens, a connection kept
open after the final event) are parametrized over them in test_trap_matrix.py.

Timing bounds: lower bounds come from the simulator's own sleeps (a measurement can
be late under load, never early; 1 ms off for clock rounding); upper bounds are
generous (seconds), so the tests hold on a 2-core box running `stress-ng --cpu 2`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import SimFactory, make_target, probe_once, within
from ttft_exporter.config import TargetConfig
from ttft_exporter.errors import ConfigError, FailureReason, ProbeFailure
from ttft_exporter.probes.base import StreamItem, Usage, finish_reason_label
from ttft_exporter.probes.framing import Frame, SSEFramer
from ttft_exporter.probes.tgi import FINAL_WITHOUT_DETAILS, TGIDecoder, TGITarget, build_request
from ttft_exporter.sim.llm import ModelBehaviour

# The shapes of §A.5, as TGI writes them (`data:` without the space).
TOKEN = (
    'data:{"index":3,"token":{"id":28723,"text":" the","logprob":-0.61,"special":false},'
    '"generated_text":null,"details":null}\n\n'
)
SPECIAL = (
    'data:{"index":1,"token":{"id":1,"text":"<s>","logprob":0.0,"special":true},'
    '"generated_text":null,"details":null}\n\n'
)
FINAL_EOS = (
    'data:{"index":9,"token":{"id":2,"text":"</s>","logprob":-0.01,"special":true},'
    '"generated_text":"Hello the world","details":{"finish_reason":"eos_token",'
    '"generated_tokens":9,"seed":null,"input_length":5}}\n\n'
)
FINAL_LENGTH = (
    'data:{"index":64,"token":{"id":7,"text":" end","logprob":-1.2,"special":false},'
    '"top_tokens":[{"id":7,"text":" end","logprob":-1.2,"special":false}],'
    '"generated_text":"... end","details":{"finish_reason":"length","generated_tokens":64,'
    '"seed":42,"input_length":12}}\n\n'
)


def frame(wire: str) -> Frame:
    """The frame the engine's SSE framer makes of these bytes (the TGI framing)."""
    frames = SSEFramer().feed(wire.encode())
    assert len(frames) == 1
    return frames[0]


def target(url: str, **fields: Any) -> TargetConfig:
    return make_target(protocol="tgi", url=url, **fields)


# --- decoder ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (TOKEN, StreamItem(text=" the")),
        (SPECIAL, StreamItem()),
        # An incomplete UTF-8 sequence: TGI streams the token with empty text.
        ('data:{"index":2,"token":{"id":5,"text":"","special":false}}\n\n', StreamItem()),
        (
            FINAL_EOS,
            StreamItem(
                usage=Usage(input_tokens=5, output_tokens=9), finish_reason="eos_token", done=True
            ),
        ),
        (
            FINAL_LENGTH,
            StreamItem(
                text=" end",
                usage=Usage(input_tokens=12, output_tokens=64),
                finish_reason="length",
                done=True,
            ),
        ),
        (
            'data:{"index":3,"token":{"id":3,"text":"!","special":false},"generated_text":"Hi!",'
            '"details":null}\n\n',
            StreamItem(text="!", finish_reason=FINAL_WITHOUT_DETAILS, done=True),
        ),
    ],
    ids=["token", "special", "empty-text", "final-eos", "final-length", "final-without-details"],
)
def test_decoder(wire: str, expected: StreamItem) -> None:
    assert TGIDecoder().decode(frame(wire)) == expected


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("eos_token", "stop"),
        ("stop_sequence", "stop"),
        ("length", "length"),
        ("something-new", "other"),
        (None, "other"),
        (7, "other"),
    ],
)
def test_finish_reasons_are_bounded_labels(reason: object, label: str) -> None:
    event = {"token": {"text": "", "special": True}, "generated_text": "x"}
    event["details"] = {"finish_reason": reason, "generated_tokens": 1}
    item = TGIDecoder().decode(Frame(json.dumps(event)))
    assert item.done and finish_reason_label(item.finish_reason) == label


@pytest.mark.parametrize(
    "wire",
    [
        'data:{"error":"Request failed during generation: Server error: CUDA OOM",'
        '"error_type":"generation"}\n\n',
        'data:{"error":"Input validation error: too long","error_type":"validation"}\n\n',
        'data:{"error":"overloaded"}\n\n',
    ],
    ids=["generation", "validation", "no-type"],
)
def test_error_event_is_stream_error(wire: str) -> None:
    with pytest.raises(ProbeFailure) as info:
        TGIDecoder().decode(frame(wire))
    assert info.value.reason is FailureReason.STREAM_ERROR
    assert info.value.detail.startswith("error in stream: ")


@pytest.mark.parametrize(
    "data",
    ['{"index":1,"token":{"id":', "not json", "[1]", "null"],
    ids=["truncated", "text", "array", "null"],
)
def test_malformed_event_is_protocol(data: str) -> None:
    with pytest.raises(ProbeFailure) as info:
        TGIDecoder().decode(Frame(data))
    assert info.value.reason is FailureReason.PROTOCOL


def test_usage_numbers_are_kept_as_reported() -> None:
    event = {"generated_text": "x", "details": {"finish_reason": "length"}}
    event["details"]["generated_tokens"] = -3  # type: ignore[index]
    item = TGIDecoder().decode(Frame(json.dumps(event)))
    assert item.usage == Usage(output_tokens=-3)


# --- request builder and config --------------------------------------------------------


def test_request_url_body_and_nonce_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TEST_TOKEN", "hf_test123")
    t = make_target(
        protocol="tgi",
        url="https://xyz.us-east-1.aws.endpoints.huggingface.cloud",
        model="meta-llama/Llama-3.1-8B-Instruct",
        prompt="Say hi",
        max_tokens=12,
        api_key_env="HF_TEST_TOKEN",
        extra_body={"parameters": {"temperature": 0.5}},
    )
    assert isinstance(t, TGITarget)
    request = build_request(t, "[probe abc]")
    assert request.url == "https://xyz.us-east-1.aws.endpoints.huggingface.cloud/generate_stream"
    assert request.headers["Authorization"] == "Bearer hf_test123"
    # TGI serves one model: the model names the label and is not sent.
    assert json.loads(request.body) == {
        "inputs": "[probe abc] Say hi",
        "parameters": {"max_new_tokens": 12, "details": True, "temperature": 0.5},
    }


def test_an_endpoint_url_is_kept_and_without_a_key_no_auth() -> None:
    t = make_target(protocol="tgi", url="http://tgi:8080/generate_stream")
    assert isinstance(t, TGITarget)
    request = build_request(t, None)
    assert request.url == "http://tgi:8080/generate_stream"
    assert "Authorization" not in request.headers
    assert json.loads(request.body)["inputs"] == "hello"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"extra_body": {"parameters": {"max_new_tokens": 9}}}, "set max_tokens instead"),
        ({"extra_body": {"parameters": [1]}}, "parameters must be a mapping"),
        ({"prompt": ""}, "prompt"),
        ({"messages": [{"role": "user", "content": "x"}]}, "messages: unknown field"),
    ],
    ids=["max-new-tokens-twice", "parameters-not-a-mapping", "empty-prompt", "no-messages"],
)
def test_config_problems(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_target(protocol="tgi", url="http://tgi:8080", **fields)
    assert message in str(info.value)


# --- the engine against the simulator's TGI mode ---------------------------------------


async def test_ttft_skips_special_tokens_and_keepalives(make_llm_sim: SimFactory) -> None:
    # A special <s> token with the headers, keep-alive comments every 50 ms, the first
    # text token at 500 ms and 9 more 120 ms apart, then the EOS (special) with details.
    # A 1.08 s decode window (9 gaps of 120 ms): the simulator writes on absolute
    # deadlines, so a first token delivered as late as the whole window comes with
    # all the others in one read, a burst with no gaps by definition; 180 ms was
    # within a loaded box's stalls, 1.08 s is beyond its 1 s stall budget.
    sim = await make_llm_sim(
        m=ModelBehaviour(ttft=0.5, itl=0.12, tokens=10, keepalive_interval=0.05, prompt_tokens=7)
    )
    result = await probe_once(target(sim.url))
    assert result.success, result.detail
    assert within(result.time_to_first_token, 0.5)
    assert result.time_to_first_chunk is not None and result.time_to_first_token is not None
    assert result.time_to_first_chunk < result.time_to_first_token
    assert within(result.duration, 0.5 + 9 * 0.12)
    assert result.token_chunks == 10 and result.finish_reason == "stop"
    # generated_tokens counts the EOS token: one more than the text tokens.
    assert result.output_tokens == 11 and result.usage_source == "usage"
    assert result.input_tokens == 7
    assert result.answer_excerpt == "tok " * 10  # no <s> or </s>
    gaps = result.inter_chunk_gaps
    assert gaps is not None and gaps.count == 9
    body = sim.state.requests[-1].body
    assert sim.state.requests[-1].path == "/generate_stream"
    assert body["parameters"] == {"max_new_tokens": 64, "details": True}


async def test_length_ends_on_the_last_text_token(make_llm_sim: SimFactory) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.01, tokens=50))
    result = await probe_once(target(sim.url, max_tokens=8))
    assert result.success, result.detail
    assert result.finish_reason == "length"
    assert result.output_tokens == 8 and result.token_chunks == 8


async def test_multi_token_events_count_tokens_from_details(make_llm_sim: SimFactory) -> None:
    # A coalescing proxy (or a server bundling speculative tokens): 4 tokens an event.
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.05, itl=0.02, tokens=16, tokens_per_chunk=4))
    result = await probe_once(target(sim.url))
    assert result.success, result.detail
    assert result.token_chunks == 4 and result.output_tokens == 17
    assert result.usage_source == "usage"


@pytest.mark.parametrize(
    ("knobs", "fields"),
    [({"usage": "never"}, {}), ({}, {"extra_body": {"parameters": {"details": False}}})],
    ids=["server-drops-details", "details-turned-off"],
)
async def test_without_details_tokens_are_events_and_the_reason_is_other(
    make_llm_sim: SimFactory, knobs: dict[str, Any], fields: dict[str, Any]
) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.01, tokens=6, **knobs))
    result = await probe_once(target(sim.url, **fields))
    assert result.success, result.detail
    assert result.output_tokens == 6 and result.usage_source == "chunks"
    assert result.finish_reason == "other"


async def test_reasoning_is_plain_text_in_tgi(make_llm_sim: SimFactory) -> None:
    # TGI has no reasoning field: a thinking model's thoughts are tokens like any other.
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.1, itl=0.01, tokens=3, reasoning_tokens=4))
    result = await probe_once(target(sim.url))
    assert result.success, result.detail
    assert result.reasoning_chunks == 0 and result.token_chunks == 7
    assert result.time_to_first_output_token == result.time_to_first_token


@pytest.mark.parametrize(
    "framing",
    [{"crlf": True}, {"split_writes": True, "token_text": "héllo🙂"}],
    ids=["crlf", "split-writes-multibyte"],
)
async def test_framing_variants(make_llm_sim: SimFactory, framing: dict[str, Any]) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.01, tokens=6, **framing))
    result = await probe_once(target(sim.url))
    assert result.success, result.detail
    assert result.token_chunks == 6 and result.output_tokens == 7
    assert result.answer_excerpt.startswith(f"{framing.get('token_text', 'tok')} ")


async def test_http_status_and_bearer_key(
    make_llm_sim: SimFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = await make_llm_sim(api_key="hf_k", m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=2))
    refused = await probe_once(target(sim.url))
    assert refused.reason is FailureReason.HTTP_STATUS and refused.http_status == 401
    monkeypatch.setenv("TGI_KEY", "hf_k")
    ok = await probe_once(target(sim.url, api_key_env="TGI_KEY"))
    assert ok.success, ok.detail
    assert sim.state.requests[-1].headers["Authorization"] == "Bearer hf_k"
    busy = await probe_once(
        target(
            sim.url,
            api_key_env="TGI_KEY",
            headers={"X-Sim-Status": {"value": "429", "secret": False}},
        )
    )
    assert busy.reason is FailureReason.HTTP_STATUS and busy.http_status == 429
