"""W3C trace and span ids for probes (ttft_exporter/traceids.py)."""

from __future__ import annotations

import random
import re

from ttft_exporter.traceids import format_span_id, format_trace_id, new_span_id, new_trace_id


def test_ids_are_nonzero_sized_and_distinct() -> None:
    traces = [new_trace_id() for _ in range(1000)]
    spans = [new_span_id() for _ in range(1000)]
    assert all(0 < t < 1 << 128 for t in traces)
    assert all(0 < s < 1 << 64 for s in spans)
    # 1000 draws of 128 (64) random bits: a repeat would mean a broken generator.
    assert len(set(traces)) == len(traces)
    assert len(set(spans)) == len(spans)
    # Not stuck in the low bits: some trace id uses the top half.
    assert any(t >> 64 for t in traces)


def test_seeding_the_module_random_does_not_repeat_ids() -> None:
    # Tests and benchmarks seed `random`; the ids come from a generator of their own.
    random.seed(1)
    first = new_trace_id()
    random.seed(1)
    assert new_trace_id() != first


def test_hex_spelling_is_w3c() -> None:
    assert format_trace_id(1) == "0" * 31 + "1"
    assert format_span_id(0xABC) == "0000000000000abc"
    assert re.fullmatch(r"[0-9a-f]{32}", format_trace_id((1 << 128) - 1))
    assert re.fullmatch(r"[0-9a-f]{16}", format_span_id(new_span_id()))
