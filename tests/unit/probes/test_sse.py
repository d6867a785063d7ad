"""The SSE parser at byte level: every trap of llm-streaming.md §A.8."""

from __future__ import annotations

import pytest

from ttft_exporter.probes.sse import SSEEvent, SSEParser


def feed_all(parser: SSEParser, *chunks: bytes) -> list[SSEEvent]:
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


def test_data_with_and_without_space() -> None:
    events = feed_all(SSEParser(), b'data: {"a":1}\n\ndata:{"b":2}\n\n')
    assert events == [SSEEvent('{"a":1}'), SSEEvent('{"b":2}')]


def test_only_one_leading_space_is_stripped() -> None:
    assert feed_all(SSEParser(), b"data:  x\n\n") == [SSEEvent(" x")]


@pytest.mark.parametrize(
    "stream",
    [b"data: a\r\n\r\ndata: b\r\n\r\n", b"data: a\r\rdata: b\r\r", b"data: a\n\ndata: b\n\n"],
    ids=["crlf", "cr", "lf"],
)
def test_line_endings(stream: bytes) -> None:
    assert feed_all(SSEParser(), stream) == [SSEEvent("a"), SSEEvent("b")]


def test_crlf_split_between_reads_is_one_line_end() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    # The \n completing the CRLF must not be taken as the blank line ending the event.
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\r\n") == [SSEEvent("a")]


def test_comment_lines_are_skipped_and_counted() -> None:
    parser = SSEParser()
    events = feed_all(parser, b": keep-alive\n\n: ping\ndata: x\n\n")
    assert events == [SSEEvent("x")]
    assert parser.comments == 2


def test_comment_alone_dispatches_nothing() -> None:
    assert feed_all(SSEParser(), b":\n\n:\n\n") == []


def test_multiline_data_joined_with_newline() -> None:
    assert feed_all(SSEParser(), b"data: a\ndata: b\ndata:\n\n") == [SSEEvent("a\nb\n")]


def test_event_name_kept_and_reset() -> None:
    events = feed_all(
        SSEParser(),
        b"event: message_start\ndata: {}\n\ndata: plain\n\n",
    )
    assert events == [SSEEvent("{}", "message_start"), SSEEvent("plain", None)]


def test_event_split_at_every_byte() -> None:
    stream = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'
    parser = SSEParser()
    events = feed_all(parser, *[stream[i : i + 1] for i in range(len(stream))])
    assert [e.data for e in events] == ['{"choices":[{"delta":{"content":"hi"}}]}', "[DONE]"]


def test_several_events_in_one_read() -> None:
    stream = b"".join(f"data: {i}\n\n".encode() for i in range(50))
    assert [e.data for e in SSEParser().feed(stream)] == [str(i) for i in range(50)]


def test_multibyte_utf8_split_across_reads() -> None:
    text = "data: héllo🙂\n\n".encode()
    cut = text.index("🙂".encode()) + 2  # inside the 4-byte emoji
    parser = SSEParser()
    assert parser.feed(text[:cut]) == []
    assert parser.feed(text[cut:]) == [SSEEvent("héllo🙂")]


def test_invalid_utf8_raises() -> None:
    with pytest.raises(UnicodeDecodeError):
        SSEParser().feed(b"data: \xff\xfe\n\n")


def test_unknown_fields_and_id_retry_ignored() -> None:
    events = feed_all(SSEParser(), b"id: 7\nretry: 100\nfoo: bar\ndata: x\n\n")
    assert events == [SSEEvent("x")]


def test_field_without_colon_is_empty_value() -> None:
    assert feed_all(SSEParser(), b"data\n\n") == [SSEEvent("")]


def test_incomplete_event_at_eof_is_discarded() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: partial") == []
    parser.close()
    assert parser.feed(b"\n\n") == []


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert feed_all(SSEParser(), b"\n\n\n\nevent: x\n\n") == []
