"""The pure timeline: TTFT, TTFOT, gaps, TPOT, e2e and token counts from fake stamps."""

from __future__ import annotations

import tracemalloc

import pytest

from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.base import (
    BURST_MIN_SECONDS_PER_TOKEN,
    BURST_MIN_WINDOW_SECONDS,
    GapHistogram,
    ProbeResult,
    StreamItem,
    StreamTimeline,
    Usage,
    burst_bound,
    check_usage,
    finish_reason_label,
)

MS = 1_000_000


def finish(timeline: StreamTimeline) -> ProbeResult:
    return timeline.result(
        phases={}, http_status=200, headers_ns=5 * MS, started_at=1.0, end_ns=999 * MS
    )


def test_role_chunk_keepalive_and_usage_do_not_count() -> None:
    tl = StreamTimeline(0)
    tl.on_event(10 * MS)
    tl.on_item(10 * MS, StreamItem())  # role-only chunk with the headers
    tl.on_event(300 * MS)
    tl.on_item(300 * MS, StreamItem(text="a"))
    tl.on_event(320 * MS)
    tl.on_item(320 * MS, StreamItem(text="b"))
    tl.on_event(340 * MS)
    tl.on_item(340 * MS, StreamItem(text="c"))
    tl.on_event(341 * MS)
    tl.on_item(341 * MS, StreamItem(finish_reason="stop"))
    tl.on_event(500 * MS)
    tl.on_item(500 * MS, StreamItem(usage=Usage(input_tokens=5, output_tokens=3)))
    result = finish(tl)
    assert result.time_to_first_chunk == pytest.approx(0.010)
    assert result.time_to_first_token == pytest.approx(0.300)
    assert result.time_to_first_output_token == pytest.approx(0.300)
    # e2e ends at the last token chunk; finish and usage chunks do not extend it.
    assert result.duration == pytest.approx(0.340)
    gaps = result.inter_chunk_gaps
    assert gaps is not None and gaps.count == 2
    assert gaps.sum == pytest.approx(0.040)
    assert gaps.min == pytest.approx(0.020) and gaps.max == pytest.approx(0.020)
    assert result.time_per_output_token == pytest.approx(0.020)
    assert result.output_tokens == 3 and result.usage_source == "usage"
    assert result.input_tokens == 5
    assert result.time_to_first_byte == pytest.approx(0.005)
    assert result.output_tokens_per_second == pytest.approx(50.0)


def test_reasoning_before_answer_ttft_vs_ttfot() -> None:
    tl = StreamTimeline(0)
    tl.on_item(200 * MS, StreamItem(reasoning="think"))
    tl.on_item(250 * MS, StreamItem(reasoning="more"))
    tl.on_item(900 * MS, StreamItem(text="answer"))
    result = finish(tl)
    assert result.time_to_first_token == pytest.approx(0.2)
    assert result.time_to_first_output_token == pytest.approx(0.9)
    assert result.answer_excerpt == "answer"


def test_without_usage_tokens_are_chunks_and_say_so() -> None:
    tl = StreamTimeline(0)
    for i in range(5):
        tl.on_item((100 + 10 * i) * MS, StreamItem(text="xx"))
    result = finish(tl)
    assert result.output_tokens == 5 and result.usage_source == "chunks"
    assert result.time_per_output_token == pytest.approx(0.010)


def test_multi_token_chunks_use_usage_for_tpot() -> None:
    tl = StreamTimeline(0)
    for i in range(20):  # 20 chunks of 2 tokens, 20 ms apart
        tl.on_item((300 + 20 * i) * MS, StreamItem(text="ab"))
    tl.on_item(700 * MS, StreamItem(usage=Usage(output_tokens=40)))
    result = finish(tl)
    assert result.output_tokens == 40
    assert result.time_per_output_token == pytest.approx(0.380 / 39)
    assert result.inter_chunk_gaps is not None and result.inter_chunk_gaps.count == 19


def test_single_token_has_no_tpot() -> None:
    tl = StreamTimeline(0)
    tl.on_item(100 * MS, StreamItem(text="x"))
    result = finish(tl)
    assert result.time_per_output_token is None
    assert result.output_tokens_per_second is None
    assert result.inter_chunk_gaps is not None and result.inter_chunk_gaps.count == 0


def test_no_tokens_is_a_failure_never_a_zero_ttft() -> None:
    tl = StreamTimeline(0)
    tl.on_item(10 * MS, StreamItem())
    tl.on_item(20 * MS, StreamItem(usage=Usage(output_tokens=0), done=False))
    with pytest.raises(ProbeFailure) as info:
        finish(tl)
    assert info.value.reason is FailureReason.NO_TOKENS


def test_zero_usage_falls_back_to_chunks() -> None:
    tl = StreamTimeline(0)
    tl.on_item(10 * MS, StreamItem(text="a"))
    tl.on_item(20 * MS, StreamItem(text="b"))
    tl.on_item(30 * MS, StreamItem(usage=Usage(output_tokens=0)))
    result = finish(tl)
    assert result.output_tokens == 2 and result.usage_source == "chunks"


# --- usage is merged across events, not replaced (issue #10, section 1) -------------


@pytest.mark.parametrize(
    ("earlier", "later", "merged"),
    [
        # Anthropic: input in message_start, output in message_delta.
        (Usage(input_tokens=25, output_tokens=1), Usage(output_tokens=15), Usage(25, 15)),
        (Usage(input_tokens=25), Usage(output_tokens=15, reasoning_tokens=4), Usage(25, 15, 4)),
        # Cumulative counts: the later value is the total, never a sum.
        (Usage(5, 3, 1), Usage(6, 9, 2), Usage(6, 9, 2)),
        # A later 0 is a report, not an omission.
        (Usage(5, 3), Usage(output_tokens=0), Usage(5, 0)),
        (Usage(5, 3, 1), Usage(), Usage(5, 3, 1)),
        (Usage(5, 3, 1), None, Usage(5, 3, 1)),
    ],
    ids=["anthropic", "reasoning-later", "cumulative", "zero-wins", "empty", "none"],
)
def test_usage_merge(earlier: Usage, later: Usage | None, merged: Usage) -> None:
    assert earlier.merge(later) == merged


def test_input_and_output_tokens_from_different_events_both_survive() -> None:
    tl = StreamTimeline(0)
    tl.on_item(10 * MS, StreamItem(usage=Usage(input_tokens=25, output_tokens=1)))
    tl.on_item(100 * MS, StreamItem(text="a"))
    tl.on_item(120 * MS, StreamItem(text="b"))
    tl.on_item(140 * MS, StreamItem(text="c"))
    tl.on_item(150 * MS, StreamItem(usage=Usage(output_tokens=3), finish_reason="end_turn"))
    result = finish(tl)
    assert result.input_tokens == 25
    assert result.output_tokens == 3 and result.usage_source == "usage"
    assert result.finish_reason == "stop"


# --- gaps are bucketed as they arrive: fixed memory (issue #8, item 11) -------------


def test_gap_histogram_buckets_with_le_semantics() -> None:
    hist = GapHistogram((0.01, 0.02))
    for gap in (0.005, 0.01, 0.015, 0.02, 0.5):
        hist.observe(gap)
    assert hist.counts == [2, 2, 1]  # <=0.01, <=0.02, +Inf
    assert hist.count == 5 and hist.sum == pytest.approx(0.55)
    assert hist.min == 0.005 and hist.max == 0.5


def test_timeline_memory_does_not_grow_with_chunks() -> None:
    # 2 x 100,000 token chunks (a 200 MB response holds ~1.6 M): the timeline keeps
    # bucket counts, not one float per gap, so the second 100,000 chunks allocate
    # nothing that stays. Before: a list of every gap, +80 MB for 1.6 M chunks. The
    # answer excerpt kept for `expect` is bounded too (64 Ki characters), and full by
    # then. tracemalloc counts allocations exactly, no timing involved.
    tl = StreamTimeline(0)
    item = StreamItem(text="x")
    t_ms = 0
    tracemalloc.start()
    try:
        sizes = []
        for _ in range(2):
            for _ in range(100_000):
                t_ms += 20
                tl.on_item(t_ms * MS, item)
            sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert sizes[1] - sizes[0] < 4096, sizes
    result = finish(tl)
    assert result.inter_chunk_gaps is not None and result.inter_chunk_gaps.count == 199_999
    assert result.token_chunks == 200_000


def test_timeline_uses_the_bounds_it_is_given() -> None:
    tl = StreamTimeline(0, gap_bounds=(0.015,))
    for ms in (100, 110, 130):
        tl.on_item(ms * MS, StreamItem(text="x"))
    gaps = finish(tl).inter_chunk_gaps
    assert gaps is not None and gaps.bounds == (0.015,) and gaps.counts == [1, 1]


# --- usage plausibility (issue #8, item 15) -----------------------------------------


@pytest.mark.parametrize(
    ("usage", "problem"),
    [
        (Usage(input_tokens=5, output_tokens=40, reasoning_tokens=10), None),
        (Usage(output_tokens=144), None),  # 2 x 64 + 16: the edge is allowed
        (Usage(output_tokens=145), "output_tokens 145 above 2 x max_tokens (64) + 16"),
        (Usage(output_tokens=10**18), "above 2 x max_tokens"),
        (Usage(output_tokens=1e18), "above 2 x max_tokens"),
        (Usage(output_tokens=-1), "output_tokens -1 is negative"),
        (Usage(input_tokens=-7, output_tokens=3), "input_tokens -7 is negative"),
        (Usage(output_tokens=2.5), "output_tokens 2.5 is not a whole number"),
        (Usage(output_tokens=float("inf")), "not a whole number"),
        (Usage(output_tokens=float("nan")), "not a whole number"),
        (Usage(output_tokens=40.0), None),  # a whole float is a count
        (Usage(input_tokens=10**9, output_tokens=3), "input_tokens 1000000000 above"),
        (Usage(reasoning_tokens=10**6), "reasoning_tokens 1000000 above"),
    ],
)
def test_check_usage(usage: Usage, problem: str | None) -> None:
    found = check_usage(usage, max_tokens=64, bytes_received=10_000)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_check_usage_more_tokens_than_bytes() -> None:
    # Every streamed token costs at least a byte of the body...
    found = check_usage(Usage(output_tokens=100), max_tokens=64, bytes_received=99)
    assert found == "output_tokens 100 above the 99 bytes received"
    assert check_usage(Usage(output_tokens=99), max_tokens=64, bytes_received=99) is None
    # ...but reasoning tokens may be counted without being streamed.
    hidden = Usage(output_tokens=100, reasoning_tokens=60)
    assert check_usage(hidden, max_tokens=64, bytes_received=99) is None


def test_check_usage_without_limits_checks_numbers_only() -> None:
    assert check_usage(Usage(output_tokens=10**6), max_tokens=None, bytes_received=None) is None
    assert check_usage(Usage(output_tokens=-1), max_tokens=None, bytes_received=None)


def test_rejected_usage_is_dropped_whole_and_said_so() -> None:
    tl = StreamTimeline(0, max_tokens=64)
    tl.on_item(10 * MS, StreamItem(text="a"))
    tl.on_item(20 * MS, StreamItem(text="b"))
    tl.on_item(30 * MS, StreamItem(usage=Usage(input_tokens=5, output_tokens=10**18)))
    result = tl.result(
        phases={},
        http_status=200,
        headers_ns=None,
        started_at=1.0,
        end_ns=40 * MS,
        bytes_received=500,
    )
    assert result.output_tokens == 2 and result.usage_source == "chunks"
    assert result.input_tokens is None and result.usage_rejected is not None
    assert result.time_per_output_token == pytest.approx(0.010)


# --- finish reasons and truncation (issue #9, section 2) ----------------------------


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        (None, "none"),
        ("stop", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("tool_calls", "tool_calls"),
        ("function_call", "tool_calls"),
        ("eos_token", "stop"),
        ("max_tokens", "length"),
        ("STOP", "other"),
        ("x" * 10_000, "other"),
    ],
)
def test_finish_reason_label_is_bounded(raw: str | None, label: str) -> None:
    assert finish_reason_label(raw) == label


def test_first_finish_reason_survives_the_usage_chunk() -> None:
    tl = StreamTimeline(0)
    tl.on_item(10 * MS, StreamItem(text="a"))
    tl.on_item(20 * MS, StreamItem(finish_reason="length"))
    tl.on_item(21 * MS, StreamItem(usage=Usage(output_tokens=1)))  # choices: []
    tl.on_item(22 * MS, StreamItem(done=True))
    assert tl.truncation(terminated=True, eof=False) is None
    assert finish(tl).finish_reason == "length"


def test_truncation_rules() -> None:
    tl = StreamTimeline(0)
    tl.on_item(10 * MS, StreamItem(text="a"))
    # [DONE] without any finish reason (llama-cpp-python, interrupted).
    assert "without a finish reason after 1 token chunks" in (
        tl.truncation(terminated=True, eof=False) or ""
    )
    tl.on_item(20 * MS, StreamItem(finish_reason="stop"))
    assert tl.truncation(terminated=True, eof=False) is None
    # EOF where the protocol has a terminator: truncated even after a finish reason.
    assert "before its terminator" in (tl.truncation(terminated=True, eof=True) or "")
    # A protocol without a terminator ends at EOF: only the finish reason counts.
    assert tl.truncation(terminated=False, eof=True) is None
    assert StreamTimeline(0).truncation(terminated=False, eof=True) is not None


# --- bursts: the decode resolution bound (issue #9, section 3) -----------------------


def test_burst_bound_is_1ms_or_100us_per_decode_token() -> None:
    assert BURST_MIN_WINDOW_SECONDS == 0.001 and BURST_MIN_SECONDS_PER_TOKEN == 0.0001
    assert burst_bound(1) == 0.001
    assert burst_bound(10) == 0.001
    assert burst_bound(63) == pytest.approx(0.0063)


def _stream(stamps_us: list[int], usage: int | None = None) -> ProbeResult:
    tl = StreamTimeline(0)
    for t in stamps_us:
        tl.on_item(100 * MS + t * 1000, StreamItem(text="t"))
    if usage is not None:
        tl.on_item(200 * MS, StreamItem(usage=Usage(output_tokens=usage)))
    return finish(tl)


@pytest.mark.parametrize(
    ("stamps_us", "usage", "burst"),
    [
        ([0] * 64, None, True),  # every token in one read: a window of exactly 0
        ([0], 64, True),  # one chunk carrying 64 tokens
        ([0, 350], 64, True),  # two reads 0.35 ms apart: 180,000 tokens/s before
        ([0, 6299], 64, True),  # just below 63 x 100 us
        ([0, 6300], 64, False),  # at the bound: measured
        ([0, 999], None, True),  # 2 tokens: the 1 ms floor
        ([0, 1000], None, False),
        ([0], None, False),  # one token: no decode phase at all, not a burst
    ],
    ids=[
        "one-read",
        "one-chunk",
        "two-close-reads",
        "below-per-token",
        "at-per-token",
        "below-floor",
        "at-floor",
        "single-token",
    ],
)
def test_burst_detection_with_an_injected_clock(
    stamps_us: list[int], usage: int | None, burst: bool
) -> None:
    result = _stream(stamps_us, usage)
    assert result.burst is burst
    assert result.time_to_first_token == pytest.approx(0.1)  # measured either way
    if burst:
        assert result.time_per_output_token is None
        assert result.output_tokens_per_second is None
        assert result.decode_seconds is None
        assert result.inter_chunk_gaps is None
    elif result.output_tokens and result.output_tokens > 1:
        assert result.time_per_output_token is not None and result.time_per_output_token > 0
        assert result.inter_chunk_gaps is not None


def test_hidden_reasoning_is_not_in_the_decode_count() -> None:
    """Reasoning counted in usage but never streamed came before the first token: TPOT
    divides the decode window by the streamed tokens after the first only (5 answer
    tokens 10 ms apart, 3 hidden thought tokens: TPOT 10 ms, not 40 ms / 7)."""
    hidden = StreamTimeline(0)
    for i in range(5):
        hidden.on_item((100 + 10 * i) * MS, StreamItem(text="tok"))
    hidden.on_item(
        150 * MS, StreamItem(usage=Usage(input_tokens=3, output_tokens=8, reasoning_tokens=3))
    )
    result = finish(hidden)
    assert result.output_tokens == 8  # the server's count, reasoning included
    assert result.decode_tokens == 4
    assert result.time_per_output_token == pytest.approx(0.010)
    # Streamed reasoning was inside the window: it stays in the count.
    streamed = StreamTimeline(0)
    streamed.on_item(100 * MS, StreamItem(reasoning="think"))
    for i in range(1, 5):
        streamed.on_item((100 + 10 * i) * MS, StreamItem(text="tok"))
    streamed.on_item(150 * MS, StreamItem(usage=Usage(output_tokens=5, reasoning_tokens=1)))
    result = finish(streamed)
    assert result.decode_tokens == 4
    assert result.time_per_output_token == pytest.approx(0.010)
