"""The framers at byte level: every SSE trap of llm-streaming.md §A.8, NDJSON, and
the first byte of a body that is no stream (a JSON array or object)."""

from __future__ import annotations

import pytest

from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.framing import (
    MAX_LINE_CHARS,
    BodySniffer,
    Frame,
    NDJSONFramer,
    SSEFramer,
)


def feed_all(parser: SSEFramer, *chunks: bytes) -> list[Frame]:
    events: list[Frame] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


def test_data_with_and_without_space() -> None:
    events = feed_all(SSEFramer(), b'data: {"a":1}\n\ndata:{"b":2}\n\n')
    assert events == [Frame('{"a":1}'), Frame('{"b":2}')]


def test_only_one_leading_space_is_stripped() -> None:
    assert feed_all(SSEFramer(), b"data:  x\n\n") == [Frame(" x")]


@pytest.mark.parametrize(
    "stream",
    [b"data: a\r\n\r\ndata: b\r\n\r\n", b"data: a\r\rdata: b\r\r", b"data: a\n\ndata: b\n\n"],
    ids=["crlf", "cr", "lf"],
)
def test_line_endings(stream: bytes) -> None:
    assert feed_all(SSEFramer(), stream) == [Frame("a"), Frame("b")]


def test_crlf_split_between_reads_is_one_line_end() -> None:
    parser = SSEFramer()
    assert parser.feed(b"data: a\r") == []
    # The \n completing the CRLF must not be taken as the blank line ending the event.
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\r\n") == [Frame("a")]


def test_comment_lines_are_skipped_and_counted() -> None:
    parser = SSEFramer()
    events = feed_all(parser, b": keep-alive\n\n: ping\ndata: x\n\n")
    assert events == [Frame("x")]
    assert parser.comments == 2


def test_comment_alone_dispatches_nothing() -> None:
    assert feed_all(SSEFramer(), b":\n\n:\n\n") == []


def test_multiline_data_joined_with_newline() -> None:
    assert feed_all(SSEFramer(), b"data: a\ndata: b\ndata:\n\n") == [Frame("a\nb\n")]


def test_event_name_kept_and_reset() -> None:
    events = feed_all(
        SSEFramer(),
        b"event: message_start\ndata: {}\n\ndata: plain\n\n",
    )
    assert events == [Frame("{}", "message_start"), Frame("plain", None)]


def test_event_split_at_every_byte() -> None:
    stream = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'
    parser = SSEFramer()
    events = feed_all(parser, *[stream[i : i + 1] for i in range(len(stream))])
    assert [e.data for e in events] == ['{"choices":[{"delta":{"content":"hi"}}]}', "[DONE]"]


def test_several_events_in_one_read() -> None:
    stream = b"".join(f"data: {i}\n\n".encode() for i in range(50))
    assert [e.data for e in SSEFramer().feed(stream)] == [str(i) for i in range(50)]


def test_multibyte_utf8_split_across_reads() -> None:
    text = "data: héllo🙂\n\n".encode()
    cut = text.index("🙂".encode()) + 2  # inside the 4-byte emoji
    parser = SSEFramer()
    assert parser.feed(text[:cut]) == []
    assert parser.feed(text[cut:]) == [Frame("héllo🙂")]


def test_invalid_utf8_raises() -> None:
    with pytest.raises(UnicodeDecodeError):
        SSEFramer().feed(b"data: \xff\xfe\n\n")


def test_unknown_fields_and_id_retry_ignored() -> None:
    events = feed_all(SSEFramer(), b"id: 7\nretry: 100\nfoo: bar\ndata: x\n\n")
    assert events == [Frame("x")]


def test_field_without_colon_is_empty_value() -> None:
    assert feed_all(SSEFramer(), b"data\n\n") == [Frame("")]


def test_incomplete_event_at_eof_is_discarded() -> None:
    parser = SSEFramer()
    assert parser.feed(b"data: partial") == []
    parser.close()
    assert parser.feed(b"\n\n") == []


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert feed_all(SSEFramer(), b"\n\n\n\nevent: x\n\n") == []


# --- bounds: linear work and a line/event limit (issue #8, item 6) ------------------


def test_line_at_the_limit_passes_one_more_char_fails() -> None:
    parser = SSEFramer(max_line=16)
    assert feed_all(parser, b"data: " + b"x" * 10, b"\n\n") == [Frame("x" * 10)]
    parser.feed(b"data: " + b"y" * 5)
    with pytest.raises(ProbeFailure) as info:
        parser.feed(b"yyyyyy")  # 17 characters without a line end
    assert info.value.reason is FailureReason.PROTOCOL
    assert "line longer than 16" in info.value.detail


def test_long_line_inside_one_read_fails() -> None:
    with pytest.raises(ProbeFailure, match="line longer than 16"):
        SSEFramer(max_line=16).feed(b"data: " + b"z" * 20 + b"\n\n")


def test_event_of_many_short_lines_is_bounded_too() -> None:
    parser = SSEFramer(max_line=64)
    for _ in range(5):  # 5 x 11 characters: still under 64
        parser.feed(b"data: 0123456789\n")
    with pytest.raises(ProbeFailure) as info:
        parser.feed(b"data: 0123456789\n")
    assert info.value.reason is FailureReason.PROTOCOL and "event longer" in info.value.detail


def test_default_limit_is_one_mebibyte() -> None:
    assert MAX_LINE_CHARS == 1 << 20
    parser = SSEFramer()
    parser.feed(b"data: " + b"a" * (MAX_LINE_CHARS - 6))
    with pytest.raises(ProbeFailure):
        parser.feed(b"a")


def test_line_limit_counts_characters_not_bytes() -> None:
    # `data:` and 7 two-byte characters: 19 bytes but 12 characters, under 14.
    assert feed_all(SSEFramer(max_line=14), "data:ééééééé\n\n".encode()) == [Frame("ééééééé")]


def test_a_long_line_costs_its_length_not_length_times_reads() -> None:
    # 64 MiB in 64 KiB reads, limit raised so the whole line is buffered. The former
    # parser re-joined and re-scanned the whole buffer on every read: 42 s for this on
    # a quiet machine (200 MB: ~7 min). The linear parser takes ~0.1 s. The 15 s bound
    # holds on a 2-core box under `stress-ng --cpu 2` and still catches a quadratic one.
    import time

    parser = SSEFramer(max_line=1 << 30)
    piece = b"x" * 65536
    started = time.monotonic()
    parser.feed(b"data: ")
    for _ in range(1024):
        assert parser.feed(piece) == []
    events = parser.feed(b"\n\n")
    elapsed = time.monotonic() - started
    assert len(events) == 1 and len(events[0].data) == 64 << 20
    assert elapsed < 15.0, elapsed


@pytest.mark.parametrize("seed", range(20))
def test_any_split_gives_the_same_events_as_one_read(seed: int) -> None:
    # Pieces kept across reads (the unfinished line, a pending CR, split UTF-8) must
    # not change the result: random streams of every line-end kind, cut at random.
    import random

    rng = random.Random(seed)
    parts = []
    for _ in range(60):
        end = rng.choice(["\n", "\r", "\r\n"])
        kind = rng.random()
        if kind < 0.15:
            parts.append(end)  # blank line: dispatch
        elif kind < 0.25:
            parts.append(": ping" + end)
        elif kind < 0.35:
            parts.append("event: e" + str(rng.randrange(3)) + end)
        else:
            parts.append("data:" + " " * rng.randrange(2) + "é🙂x" * rng.randrange(4) + end)
    stream = "".join(parts).encode()
    whole = feed_all(SSEFramer(), stream)
    cuts = sorted(rng.sample(range(1, len(stream)), 25))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert feed_all(SSEFramer(), *pieces) == whole
    assert feed_all(SSEFramer(), *[stream[i : i + 1] for i in range(len(stream))]) == whole


# --- NDJSON (Ollama, llm-streaming.md §A.4) ------------------------------------------


def ndjson_all(framer: NDJSONFramer, *chunks: bytes) -> list[Frame]:
    frames: list[Frame] = []
    for chunk in chunks:
        frames += framer.feed(chunk)
    return frames


_OLLAMA = (
    b'{"model":"m","response":"Th","done":false}\n'
    b'{"model":"m","response":"at","done":false}\n'
    b'{"model":"m","response":"","done":true,"done_reason":"stop","eval_count":2}\n'
)


def test_ndjson_one_frame_per_line_unnamed() -> None:
    frames = NDJSONFramer().feed(_OLLAMA)
    assert frames == [Frame(line.decode()) for line in _OLLAMA.splitlines()]
    assert all(f.event is None for f in frames)


def test_ndjson_split_at_every_byte_gives_the_same_frames() -> None:
    whole = NDJSONFramer().feed(_OLLAMA)
    framer = NDJSONFramer()
    assert ndjson_all(framer, *[_OLLAMA[i : i + 1] for i in range(len(_OLLAMA))]) == whole


@pytest.mark.parametrize("end", [b"\r\n", b"\r", b"\n"], ids=["crlf", "cr", "lf"])
def test_ndjson_line_endings(end: bytes) -> None:
    stream = b'{"a":1}' + end + b'{"b":2}' + end
    assert NDJSONFramer().feed(stream) == [Frame('{"a":1}'), Frame('{"b":2}')]


def test_ndjson_crlf_split_between_reads_is_one_line_end() -> None:
    framer = NDJSONFramer()
    assert framer.feed(b'{"a":1}\r') == [Frame('{"a":1}')]
    # The \n completing the CRLF is no blank line of its own.
    assert framer.feed(b'\n{"b":2}\n') == [Frame('{"b":2}')]
    assert framer.comments == 0


def test_ndjson_blank_lines_are_skipped_and_counted() -> None:
    framer = NDJSONFramer()
    assert ndjson_all(framer, b'\n\n{"a":1}\n  \n', b'\t\r\n{"b":2}\n') == [
        Frame('{"a":1}'),
        Frame('{"b":2}'),
    ]
    assert framer.comments == 4


def test_ndjson_multibyte_utf8_split_across_reads() -> None:
    line = '{"response":"héllo🙂"}\n'.encode()
    cut = line.index("🙂".encode()) + 1
    framer = NDJSONFramer()
    assert framer.feed(line[:cut]) == []
    assert framer.feed(line[cut:]) == [Frame('{"response":"héllo🙂"}')]


def test_ndjson_last_line_without_newline_is_discarded_at_eof() -> None:
    framer = NDJSONFramer()
    assert framer.feed(b'{"a":1}\n{"b":') == [Frame('{"a":1}')]
    framer.close()
    assert framer.feed(b"2}\n") == [Frame("2}")]  # a new stream: the cut piece is gone


def test_ndjson_line_cap_across_reads() -> None:
    framer = NDJSONFramer(max_line=16)
    assert framer.feed(b'{"a":"0123456"}\n') == [Frame('{"a":"0123456"}')]  # 15: passes
    framer.feed(b'{"a":"01234')
    with pytest.raises(ProbeFailure) as info:
        framer.feed(b"567890")  # 17 characters without a line end
    assert info.value.reason is FailureReason.PROTOCOL
    assert info.value.detail == "NDJSON line longer than 16 characters"


def test_ndjson_long_line_inside_one_read_fails() -> None:
    with pytest.raises(ProbeFailure, match="NDJSON line longer than 16"):
        NDJSONFramer(max_line=16).feed(b'{"a":"' + b"z" * 20 + b'"}\n')


def test_ndjson_default_limit_is_the_sse_one() -> None:
    framer = NDJSONFramer()
    framer.feed(b"a" * MAX_LINE_CHARS)
    with pytest.raises(ProbeFailure):
        framer.feed(b"a")


def test_ndjson_invalid_utf8_raises() -> None:
    with pytest.raises(UnicodeDecodeError):
        NDJSONFramer().feed(b'{"a":"\xff"}\n')


@pytest.mark.parametrize("seed", range(10))
def test_ndjson_any_split_gives_the_same_frames_as_one_read(seed: int) -> None:
    import random

    rng = random.Random(seed)
    parts = []
    for _ in range(60):
        end = rng.choice(["\n", "\r", "\r\n"])
        if rng.random() < 0.2:
            parts.append(" " * rng.randrange(3) + end)
        else:
            parts.append('{"t":"' + "é🙂x" * rng.randrange(4) + '"}' + end)
    stream = "".join(parts).encode()
    whole = ndjson_all(NDJSONFramer(), stream)
    cuts = sorted(rng.sample(range(1, len(stream)), 25))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert ndjson_all(NDJSONFramer(), *pieces) == whole


def test_media_types() -> None:
    assert SSEFramer().media_type == "text/event-stream"
    assert NDJSONFramer().media_type == "application/x-ndjson"


# --- a JSON array instead of a stream (Gemini without alt=sse, §A.6) ----------------


@pytest.mark.parametrize(
    ("reads", "expected"),
    [
        ([b'[{"candidates":[]},\r\n'], b"["),
        ([b"", b"  \r\n\t", b' [{"a":1}'], b"["),
        ([b'data: {"a":1}\n\n'], b"d"),
        ([b'{"error":{"code":400}}'], b"{"),
        ([b"\n\n", b": ping\n\n[x"], b":"),  # decided by the first non-space byte only
        # A byte order mark is skipped first, whole or split across reads.
        ([b'\xef\xbb\xbf[{"a":1}]'], b"["),
        ([b"\xef", b"\xbb", b"\xbf", b" \r\n", b"{"], b"{"),
        ([b"\xef\xbb", b"\xbf\n\ndata: x"], b"d"),
        # Only one, at the very start: a second one, or one after a space, is content.
        ([b"\xef\xbb\xbf\xef\xbb\xbf["], b"\xef"),
        ([b" \xef\xbb\xbf["], b"\xef"),
        ([b"\xef\xbbx"], b"\xef"),
    ],
    ids=[
        "array",
        "array-after-whitespace-reads",
        "sse",
        "object",
        "decided-once",
        "bom-array",
        "bom-split-object",
        "bom-split-sse",
        "second-bom",
        "bom-after-space",
        "bom-prefix-only",
    ],
)
def test_body_sniffer(reads: list[bytes], expected: bytes) -> None:
    sniffer = BodySniffer()
    seen = [sniffer.feed(read) for read in reads]
    assert [first for first in seen if first is not None] == [expected]
    assert sniffer.decided and sniffer.feed(b"[") is None


@pytest.mark.parametrize("framer", [SSEFramer, NDJSONFramer])
def test_leading_byte_order_mark_is_dropped_even_split(
    framer: type[SSEFramer] | type[NDJSONFramer],
) -> None:
    # EventSource drops one BOM at the start of the stream; kept, it glued itself to the
    # first field name (`\ufeffdata`) and the first event was lost.
    line = b'data: {"a":1}\n\n' if framer is SSEFramer else b'{"a":1}\n'
    for reads in ([b"\xef\xbb\xbf" + line], [b"\xef", b"\xbb", b"\xbf" + line]):
        parser = framer()
        frames = [f for chunk in reads for f in parser.feed(chunk)]
        assert frames == [Frame('{"a":1}')]
    # Only at the very start: later it is content (SSE: part of an unknown field name).
    later = framer().feed(line + b"\xef\xbb\xbf" + line)
    if framer is SSEFramer:
        assert later == [Frame('{"a":1}')]
    else:
        assert later == [Frame('{"a":1}'), Frame('\ufeff{"a":1}')]
