"""The parsers of server-reported timings (Ollama's final line, llama.cpp's `timings`)
against the real shapes and hostile values: each bad field is "not reported", never an
exception and never a number that cannot be true."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ttft_exporter.probes.server_timings import (
    MAX_SERVER_SECONDS,
    ServerTimings,
    from_llamacpp,
    from_ollama,
)

# The final line of llm-streaming.md §A.4, as Ollama writes it.
OLLAMA_FINAL: dict[str, Any] = {
    "model": "m",
    "done": True,
    "done_reason": "stop",
    "total_duration": 174560334,
    "load_duration": 101397084,
    "prompt_eval_count": 11,
    "prompt_eval_duration": 13074791,
    "eval_count": 18,
    "eval_duration": 52479709,
}
# result_timings::to_json() of llama.cpp's server, on the last chunk of a stream.
LLAMACPP_TIMINGS: dict[str, Any] = {
    "cache_n": 0,
    "prompt_n": 12,
    "prompt_ms": 40.5,
    "prompt_per_token_ms": 3.375,
    "prompt_per_second": 296.3,
    "predicted_n": 16,
    "predicted_ms": 250.0,
    "predicted_per_token_ms": 15.625,
    "predicted_per_second": 64.0,
}

HOSTILE: list[Any] = [
    "13074791",  # a number in a string
    True,  # JSON true is not 1 ns
    -1,
    -0.5,
    math.nan,
    math.inf,
    -math.inf,
    1e300,
    10**400,  # beyond any float: must not raise OverflowError
    None,
    [1],
    {"ns": 1},
]


def test_ollama_final_line_in_seconds() -> None:
    timings = from_ollama(OLLAMA_FINAL)
    assert timings is not None
    assert timings.load == pytest.approx(0.101397084)
    assert timings.prefill == pytest.approx(0.013074791)
    assert timings.decode == pytest.approx(0.052479709)
    assert timings.total == pytest.approx(0.174560334)
    assert timings.time_to_first_token == pytest.approx(0.101397084 + 0.013074791)


def test_llamacpp_timings_in_seconds_without_load_or_total() -> None:
    timings = from_llamacpp(LLAMACPP_TIMINGS)
    assert timings == ServerTimings(prefill=0.0405, decode=0.25)
    # No load reported: llama-server has its model loaded before it serves.
    assert timings.time_to_first_token == pytest.approx(0.0405)


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
@pytest.mark.parametrize(
    ("field", "attr"),
    [
        ("load_duration", "load"),
        ("prompt_eval_duration", "prefill"),
        ("eval_duration", "decode"),
        ("total_duration", "total"),
    ],
)
def test_a_hostile_ollama_field_is_not_reported_and_leaves_the_others(
    field: str, attr: str, value: Any
) -> None:
    timings = from_ollama({**OLLAMA_FINAL, field: value})
    assert timings is not None
    assert getattr(timings, attr) is None
    others = {"load", "prefill", "decode", "total"} - {attr}
    assert all(getattr(timings, other) is not None for other in others)


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_a_hostile_llamacpp_prompt_ms_is_not_reported(value: Any) -> None:
    assert from_llamacpp({**LLAMACPP_TIMINGS, "prompt_ms": value}) == ServerTimings(decode=0.25)


@pytest.mark.parametrize(
    "timings",
    [None, "timings", 42, [LLAMACPP_TIMINGS], {}, {"prompt_n": 3, "predicted_n": 4}],
    ids=repr,
)
def test_llamacpp_timings_that_are_not_an_object_with_durations_are_none(timings: Any) -> None:
    assert from_llamacpp(timings) is None


def test_an_ollama_line_without_timings_is_none() -> None:
    assert from_ollama({"model": "m", "done": True, "eval_count": 3}) is None
    assert from_ollama(dict.fromkeys(OLLAMA_FINAL, "x")) is None


def test_the_bounds_are_inclusive_and_zero_is_a_value() -> None:
    # A fully cached prompt can take 0 ms of prefill: reported, not missing.
    assert from_llamacpp({"prompt_ms": 0}) == ServerTimings(prefill=0.0)
    top = int(MAX_SERVER_SECONDS * 1e9)
    at_cap = from_ollama({"load_duration": top})
    assert at_cap is not None and at_cap.load == pytest.approx(MAX_SERVER_SECONDS)
    assert from_ollama({"load_duration": top + 1}) is None


def test_merge_keeps_what_the_later_report_omits() -> None:
    first = ServerTimings(prefill=0.1, decode=0.2)
    assert first.merge(ServerTimings(decode=0.5)) == ServerTimings(prefill=0.1, decode=0.5)
    assert first.merge(None) is first


def test_within_drops_durations_longer_than_the_request() -> None:
    timings = ServerTimings(load=0.2, prefill=0.5, decode=3.0, total=3.2)
    # The client timed 1 s from send to stream end: 3 s of decode did not happen in it.
    assert timings.within(1.0) == ServerTimings(load=0.2, prefill=0.5)
    # Clock rates and rounding: up to 1 % + 1 ms over is kept.
    assert ServerTimings(total=1.0105).within(1.0) == ServerTimings(total=1.0105)
    assert ServerTimings(total=3.0).within(1.0) is None


def test_time_to_first_token_needs_a_prefill() -> None:
    assert ServerTimings(load=0.5, decode=1.0).time_to_first_token is None
    assert not ServerTimings().reported
