"""The pure timeline: TTFT, TTFOT, gaps, TPOT, e2e and token counts from fake stamps."""

from __future__ import annotations

import pytest

from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.base import ProbeResult, StreamItem, StreamTimeline, Usage

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
