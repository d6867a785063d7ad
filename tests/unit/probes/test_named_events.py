"""The core trap matrix of the protocols whose SSE events are named and repeat the name
in the data's `type` (Anthropic Messages, OpenAI Responses: probes/event_json.py
`named_event`), one parametrized test per trap: the decoder on malformed data, and the
engine against each protocol's simulator mode over real HTTP (reasoning first,
multi-token events, usage missing, a length end, an error event inside a 200 stream,
stall, drop, truncation, a malformed event, a server keeping the connection open,
framing quirks). What only one protocol has (its event shapes, request builder, auth,
hostile servers) stays in test_anthropic.py and test_openai_responses.py.

Timing bounds hold on a loaded 2-core machine (`stress-ng --cpu 2`): lower bounds come
from the simulator's own sleeps measured from the request start (it never writes an
event before its deadline), upper bounds are generous (seconds, not milliseconds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import SimFactory, make_target, probe_once
from ttft_exporter.config import TargetConfig
from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.anthropic import MessagesDecoder
from ttft_exporter.probes.base import StreamDecoder
from ttft_exporter.probes.framing import Frame
from ttft_exporter.probes.openai_responses import ResponsesDecoder
from ttft_exporter.sim.llm import ModelBehaviour

# Generous: a loaded CI box may delay a probe by a lot, never make it faster than the
# simulator's sleeps.
SLACK = 2.0


@dataclass(frozen=True)
class Proto:
    """What the shared traps need to know of one protocol."""

    name: str
    # Appended to the simulator's URL (the Responses base URL ends in /v1).
    suffix: str
    # The request body field max_tokens is sent as.
    max_tokens_field: str
    # In the failure detail of the simulator's error event (error_after=3).
    stream_error: str
    # What the usage reports as reasoning tokens for 4 thinking tokens: Anthropic
    # reports none apart, Responses does.
    reasoning_tokens: int | None
    # The seed of the split-writes case (where the pieces are cut).
    split_seed: int

    def target(self, url: str, **fields: Any) -> TargetConfig:
        return make_target(protocol=self.name, url=f"{url}{self.suffix}", **fields)


ANTHROPIC = Proto(
    name="anthropic",
    suffix="",
    max_tokens_field="max_tokens",
    stream_error="Overloaded (overloaded_error)",
    reasoning_tokens=None,
    split_seed=7,
)
RESPONSES = Proto(
    name="openai-responses",
    suffix="/v1",
    max_tokens_field="max_output_tokens",
    stream_error="after 3 tokens",
    reasoning_tokens=4,
    split_seed=11,
)
PROTOS = pytest.mark.parametrize("proto", [ANTHROPIC, RESPONSES], ids=lambda p: p.name)


# The pure decoders


@pytest.mark.parametrize(
    ("decoder", "name", "data"),
    [
        (MessagesDecoder(), "content_block_delta", '{"type":"content_block_delta","delta":{'),
        (MessagesDecoder(), "content_block_delta", "[1, 2]"),
        (MessagesDecoder(), "content_block_delta", "nope"),
        (
            ResponsesDecoder(),
            "response.output_text.delta",
            '{"type":"response.output_text.delta","delta":',
        ),
        (ResponsesDecoder(), "response.output_text.delta", "[]"),
        (ResponsesDecoder(), "response.output_text.delta", "x"),
    ],
    ids=[
        "anthropic-cut",
        "anthropic-array",
        "anthropic-text",
        "openai-responses-cut",
        "openai-responses-array",
        "openai-responses-text",
    ],
)
def test_malformed_is_protocol(decoder: StreamDecoder, name: str, data: str) -> None:
    with pytest.raises(ProbeFailure) as info:
        decoder.decode(Frame(data, name))
    assert info.value.reason is FailureReason.PROTOCOL
    assert info.value.excerpt == data


# The engine against each protocol's simulator mode, over real HTTP


@PROTOS
async def test_reasoning_before_the_answer(make_llm_sim: SimFactory, proto: Proto) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.1, itl=0.05, tokens=3, reasoning_tokens=4))
    result = await probe_once(proto.target(sim.url))
    assert result.success, result.detail
    assert result.time_to_first_token is not None and result.time_to_first_output_token is not None
    assert 0.1 <= result.time_to_first_token < 0.1 + SLACK
    # Four thinking chunks 50 ms apart come first: the first answer text is written at
    # 0.1 + 4 x 0.05 s at the earliest.
    assert result.time_to_first_output_token >= 0.1 + 4 * 0.05
    assert result.reasoning_chunks == 4 and result.token_chunks == 7
    assert result.output_tokens == 7  # usage counts thinking and answer tokens
    assert result.reasoning_tokens == proto.reasoning_tokens
    assert result.answer_excerpt.startswith("tok tok tok")


@PROTOS
async def test_multi_token_events_use_usage(make_llm_sim: SimFactory, proto: Proto) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.05, itl=0.02, tokens=20, tokens_per_chunk=4))
    result = await probe_once(proto.target(sim.url))
    assert result.success, result.detail
    assert result.token_chunks == 5
    assert result.output_tokens == 20 and result.usage_source == "usage"
    # The last chunk is written at 0.05 + 4 x 0.02 s at the earliest (a bound from the
    # request start; the decode window alone has none: a late first read shrinks it).
    assert result.duration is not None and result.duration >= 0.05 + 4 * 0.02
    assert result.time_per_output_token is not None and result.time_per_output_token > 0


@PROTOS
async def test_without_usage_tokens_are_counted_from_chunks(
    make_llm_sim: SimFactory, proto: Proto
) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=6, usage="never"))
    result = await probe_once(proto.target(sim.url))
    assert result.success, result.detail
    assert result.output_tokens == 6 and result.usage_source == "chunks"
    assert result.input_tokens is None


@PROTOS
async def test_max_tokens_is_a_length_end(make_llm_sim: SimFactory, proto: Proto) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=50))
    result = await probe_once(proto.target(sim.url, max_tokens=5))
    assert result.success, result.detail
    assert result.finish_reason == "length" and result.output_tokens == 5
    assert sim.state.requests[-1].body[proto.max_tokens_field] == 5


@PROTOS
async def test_error_event_inside_a_200_stream(make_llm_sim: SimFactory, proto: Proto) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=10, error_after=3))
    result = await probe_once(proto.target(sim.url))
    assert result.reason is FailureReason.STREAM_ERROR, result.detail
    assert result.http_status == 200
    assert proto.stream_error in result.detail
    assert result.token_chunks == 3 and result.finish_reason is None


@PROTOS
@pytest.mark.parametrize("keepalive", [None, 0.05], ids=["silent", "keepalives"])
async def test_stall_is_timeout(
    make_llm_sim: SimFactory, proto: Proto, keepalive: float | None
) -> None:
    # With keep-alives (Anthropic pings, Responses SSE comments) the server stays
    # chatty but never finishes: keep-alives do not keep a probe alive.
    sim = await make_llm_sim(
        m=ModelBehaviour(
            ttft=0.02, itl=0.01, tokens=10, stall_after=2, keepalive_interval=keepalive
        )
    )
    result = await probe_once(proto.target(sim.url, timeout="0.5s"))
    assert result.reason is FailureReason.TIMEOUT, result.detail
    assert "2 token chunks" in result.detail
    assert 0.5 <= result.elapsed < 0.5 + SLACK


@PROTOS
async def test_connection_drop_is_protocol(make_llm_sim: SimFactory, proto: Proto) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.01, tokens=10, drop_after=3))
    result = await probe_once(proto.target(sim.url))
    assert result.reason is FailureReason.PROTOCOL, result.detail
    assert "stream broken after 3 token chunks" in result.detail


@PROTOS
@pytest.mark.parametrize(
    ("knobs", "why"),
    [
        # The response ends cleanly mid-generation: no terminator at all.
        ({"truncate_after": 4}, "before its terminator"),
        # Anthropic: message_delta with its stop reason, but no message_stop.
        # Responses: no terminal event.
        ({"omit_done": True}, "before its terminator"),
        # Anthropic: message_stop, but the stop reason was null.
        # Responses: response.incomplete with incomplete_details: null.
        ({"finish_reason": None}, "without a finish reason"),
    ],
    ids=["cut", "no-terminator", "no-finish-reason"],
)
async def test_truncation(
    make_llm_sim: SimFactory, proto: Proto, knobs: dict[str, Any], why: str
) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=8, **knobs))
    result = await probe_once(proto.target(sim.url))
    assert result.reason is FailureReason.TRUNCATED, result.detail
    assert why in result.detail


@PROTOS
async def test_malformed_event_is_protocol(make_llm_sim: SimFactory, proto: Proto) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=10, malformed_after=2))
    result = await probe_once(proto.target(sim.url))
    assert result.reason is FailureReason.PROTOCOL, result.detail
    assert "malformed JSON" in result.detail


@PROTOS
async def test_server_keeping_the_connection_open_after_the_terminator(
    make_llm_sim: SimFactory, proto: Proto
) -> None:
    sim = await make_llm_sim(
        m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=3, keep_open_after_done=True)
    )
    result = await probe_once(proto.target(sim.url, timeout="3s"))
    assert result.success, result.detail
    # Ended at message_stop / response.completed, not at the deadline.
    assert result.elapsed < 3.0


QUIRKS: dict[str, dict[str, Any]] = {
    "crlf": {"crlf": True},
    "no-space": {"data_space": False},
    "split-writes": {"split_writes": True},
}


@PROTOS
@pytest.mark.parametrize("quirk", list(QUIRKS))
async def test_framing_quirks(make_llm_sim: SimFactory, proto: Proto, quirk: str) -> None:
    knobs = dict(QUIRKS[quirk])
    if quirk == "split-writes":
        knobs["seed"] = proto.split_seed  # where the pieces are cut
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.005, tokens=5, **knobs))
    result = await probe_once(proto.target(sim.url))
    assert result.success, result.detail
    assert result.output_tokens == 5 and result.finish_reason == "stop"
