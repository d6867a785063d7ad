"""OpenAI chunk decoders and request bodies (llm-streaming.md §A.1), and llama.cpp's
`timings` (§B.4) against the simulator over 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SimFactory, make_target, probe_once
from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.base import ServerTimings, StreamItem, Usage
from ttft_exporter.probes.framing import Frame
from ttft_exporter.probes.openai import (
    ChatDecoder,
    CompletionsDecoder,
    build_chat_request,
    build_completions_request,
)
from ttft_exporter.sim.llm import ModelBehaviour
from ttft_exporter.sinks.prometheus.record import record_result
from ttft_exporter.sinks.prometheus.series import MetricStore


def chat(delta: dict[str, object], **extra: object) -> Frame:
    obj = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        "usage": None,
        **extra,
    }
    return Frame(json.dumps(obj))


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (chat({"role": "assistant", "content": ""}), StreamItem()),
        (chat({"role": "assistant"}), StreamItem()),
        (chat({}), StreamItem()),
        (chat({"content": "Hi"}), StreamItem(text="Hi")),
        (chat({"content": None, "refusal": "No."}), StreamItem(text="No.")),
        (chat({"reasoning": "hmm"}), StreamItem(reasoning="hmm")),
        (chat({"reasoning_content": "hmm"}), StreamItem(reasoning="hmm")),
        (chat({"content": "x"}, obfuscation="padding-not-content"), StreamItem(text="x")),
        (Frame("[DONE]"), StreamItem(done=True)),
    ],
    ids=[
        "role-only-empty",
        "role-only",
        "empty-delta",
        "content",
        "refusal",
        "reasoning",
        "reasoning_content",
        "obfuscation-ignored",
        "done",
    ],
)
def test_chat_decoder(event: Frame, expected: StreamItem) -> None:
    assert ChatDecoder().decode(event) == expected


def test_usage_only_chunk_has_no_choices_and_no_text() -> None:
    event = Frame(
        json.dumps(
            {
                "choices": [],
                "usage": {
                    "prompt_tokens": 7,
                    "completion_tokens": 40,
                    "total_tokens": 47,
                    "completion_tokens_details": {"reasoning_tokens": 12},
                },
            }
        )
    )
    item = ChatDecoder().decode(event)
    assert item == StreamItem(usage=Usage(input_tokens=7, output_tokens=40, reasoning_tokens=12))


def test_finish_reason_kept() -> None:
    event = Frame(json.dumps({"choices": [{"delta": {}, "finish_reason": "length"}]}))
    item = ChatDecoder().decode(event)
    assert item is not None and item.finish_reason == "length" and not item.text


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("stop", "stop"), ("tool_calls", "tool_calls"), (7, "<int>")],
    ids=["null", "empty", "stop", "tool_calls", "not-a-string"],
)
@pytest.mark.parametrize("decoder", [ChatDecoder, CompletionsDecoder])
def test_finish_reason_values(
    decoder: type[ChatDecoder | CompletionsDecoder], value: object, expected: str | None
) -> None:
    # null while generating (some servers send ""); a non-string is kept as its type
    # name, which no known reason matches, so it is counted as `other`.
    choice = {"index": 0, "delta": {}, "text": "", "finish_reason": value}
    item = decoder().decode(Frame(json.dumps({"choices": [choice]})))
    assert item is not None and item.finish_reason == expected


@pytest.mark.parametrize(
    "payload",
    [
        {"error": {"message": "boom", "type": "server_error", "code": 500}},
        {"error": {"message": "bad", "http_status_code": 422}},
        {"error": "plain string error"},
    ],
    ids=["openai-vllm", "tgi", "string"],
)
def test_error_payload_is_stream_error(payload: dict[str, object]) -> None:
    with pytest.raises(ProbeFailure) as info:
        ChatDecoder().decode(Frame(json.dumps(payload)))
    assert info.value.reason is FailureReason.STREAM_ERROR


@pytest.mark.parametrize(
    "data",
    ['{"choices": [', "not json", "[1, 2]", '{"choices": "x"}', '{"choices": [1]}'],
    ids=["truncated", "text", "array", "choices-string", "choices-ints"],
)
def test_malformed_is_protocol(data: str) -> None:
    with pytest.raises(ProbeFailure) as info:
        ChatDecoder().decode(Frame(data))
    assert info.value.reason is FailureReason.PROTOCOL


def test_completions_decoder_text_and_usage() -> None:
    decoder = CompletionsDecoder()
    item = decoder.decode(Frame('{"choices":[{"index":0,"text":" once","finish_reason":null}]}'))
    assert item == StreamItem(text=" once")
    usage = decoder.decode(
        Frame('{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9}}')
    )
    assert usage == StreamItem(usage=Usage(input_tokens=3, output_tokens=9))


def test_chat_request_body_with_nonce_and_usage_options() -> None:
    target = make_target(
        url="http://h:1/v1", prompt="Say hi", max_tokens=12, continuous_usage_stats=True
    )
    request = build_chat_request(target, "[probe abc]")  # type: ignore[arg-type]
    body = json.loads(request.body)
    assert request.url == "http://h:1/v1/chat/completions"
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "[probe abc] Say hi"}],
        "stream": True,
        "max_tokens": 12,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }


def test_chat_request_messages_nonce_first_and_extra_body() -> None:
    target = make_target(
        url="http://h:1/v1/chat/completions",
        prompt=None,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        include_usage=False,
        extra_body={"ignore_eos": True, "temperature": 0},
    )
    body = json.loads(build_chat_request(target, "[n]").body)  # type: ignore[arg-type]
    assert body["messages"][0]["content"] == "[n] Be brief."
    assert body["messages"][1]["content"] == "Hi"
    assert "stream_options" not in body
    assert body["ignore_eos"] is True and body["temperature"] == 0


def test_completions_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "k-123")
    target = make_target(
        protocol="openai-completions", url="http://h:1/v1", prompt="Once", api_key_env="TEST_KEY"
    )
    request = build_completions_request(target, None)  # type: ignore[arg-type]
    assert request.url == "http://h:1/v1/completions"
    assert request.headers["Authorization"] == "Bearer k-123"
    assert json.loads(request.body)["prompt"] == "Once"


def test_usage_numbers_are_kept_as_reported_for_the_plausibility_check() -> None:
    # Negative, fractional or absurd counts reach check_usage (which rejects and
    # counts them) instead of being silently dropped here; non-numbers are absent.
    event = Frame(
        '{"choices":[],"usage":{"prompt_tokens":-2,"completion_tokens":1e18,'
        '"completion_tokens_details":{"reasoning_tokens":"many"}}}'
    )
    item = ChatDecoder().decode(event)
    assert item is not None and item.usage == Usage(input_tokens=-2, output_tokens=1e18)
    flag = ChatDecoder().decode(Frame('{"choices":[],"usage":{"completion_tokens":true}}'))
    assert flag is not None and flag.usage == Usage()


# --- llama.cpp's `timings` on the last chunk (issue #10 section 3) -------------------

LLAMACPP_TIMINGS = {
    "prompt_n": 12,
    "prompt_ms": 40.5,
    "prompt_per_token_ms": 3.375,
    "prompt_per_second": 296.3,
    "predicted_n": 16,
    "predicted_ms": 250.0,
    "predicted_per_token_ms": 15.625,
    "predicted_per_second": 64.0,
}


def test_llamacpp_timings_on_the_usage_chunk_are_server_timings() -> None:
    usage_chunk = {
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": 16},
        "timings": LLAMACPP_TIMINGS,
    }
    item = ChatDecoder().decode(Frame(json.dumps(usage_chunk)))
    assert item is not None
    assert item.server_timings == ServerTimings(prefill=0.0405, decode=0.25)


def test_llamacpp_timings_on_a_completions_finish_chunk() -> None:
    finish = {
        "object": "text_completion",
        "choices": [{"index": 0, "text": "", "finish_reason": "stop"}],
        "timings": LLAMACPP_TIMINGS,
    }
    item = CompletionsDecoder().decode(Frame(json.dumps(finish)))
    assert item is not None and item.finish_reason == "stop"
    assert item.server_timings == ServerTimings(prefill=0.0405, decode=0.25)


@pytest.mark.parametrize(
    "timings",
    [
        "fast",
        [1, 2],
        {"prompt_ms": "40", "predicted_ms": -1},
        {"prompt_ms": 1e300, "predicted_ms": True},
        {"prompt_ms": None},
    ],
    ids=["string", "list", "string-and-negative", "huge-and-bool", "null"],
)
def test_hostile_llamacpp_timings_are_not_reported(timings: object) -> None:
    item = ChatDecoder().decode(chat({"content": "x"}, timings=timings))
    assert item == StreamItem(text="x")


def test_chunks_without_timings_carry_none() -> None:
    item = ChatDecoder().decode(chat({"content": "x"}))
    assert item is not None and item.server_timings is None


@pytest.mark.parametrize("include_usage", [True, False], ids=["on-usage-chunk", "on-finish"])
async def test_llamacpp_timings_from_the_simulator_give_the_queueing_overhead(
    make_llm_sim: SimFactory, include_usage: bool
) -> None:
    # The simulator plays llama-server: 100 ms waiting for a slot (headers_delay, which
    # llama.cpp does not count), the first token due at 300 ms, so prompt_ms reports
    # 200 ms and the 100 ms of queueing shows in the overhead.
    sim = await make_llm_sim(
        m=ModelBehaviour(headers_delay=0.1, ttft=0.3, itl=0.02, tokens=10, llamacpp_timings=True)
    )
    target = make_target(url=sim.url + "/v1", include_usage=include_usage)
    result = await probe_once(target)
    assert result.success, result.detail
    server = result.server_timings
    assert server is not None and server.load is None and server.total is None
    assert server.prefill == pytest.approx(0.2, abs=1e-9)
    assert server.decode == pytest.approx(9 * 0.02, abs=1e-9)
    overhead = result.prefill_overhead
    # Lower bound: no token is written before arrival + 300 ms, and the client started
    # before the simulator's arrival stamp (1 ms for float rounding). Upper bound:
    # 100 ms of queueing plus 2 s for reads delayed on a loaded 2-core box
    # (stress-ng --cpu 2) over loopback.
    assert overhead is not None and 0.1 - 0.001 <= overhead <= 0.1 + 2.0
    store = MetricStore()
    record_result(store.ensure("t", {"target": "t"}), result, timeout=5.0)
    assert store.series["t", "default"].get("ttft_probe_server_prefill_seconds") == server.prefill
    assert store.series["t", "default"].get("ttft_probe_server_load_seconds") is None
