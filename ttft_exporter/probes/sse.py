"""Pure, incremental Server-Sent Events parser: bytes in, events out, no I/O.

Follows the WHATWG EventSource parsing rules that matter for LLM streams: `data:` with
or without one space, CR/LF/CRLF line ends (also split across reads), comment lines,
multi-line data, named events, and UTF-8 characters split across reads.

Linear and bounded: every byte is decoded and scanned once (only the new read is
searched for line ends; an unfinished line is kept as pieces and joined once when it
ends), and a line or an event longer than `MAX_LINE_CHARS` is a protocol failure.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from ttft_exporter.errors import FailureReason, ProbeFailure

__all__ = ["MAX_LINE_CHARS", "SSEEvent", "SSEParser"]

MAX_LINE_CHARS = 1 << 20
"""Longest line, and longest event (its data lines together), in characters: 1 MiB.
An LLM chunk is a few hundred bytes; anything near this is a broken or hostile server,
and buffering it further would only cost memory."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its `event:` name (or None) and its joined data lines."""

    data: str
    event: str | None = None


class SSEParser:
    """Feed raw bytes as they arrive; get back the events they complete."""

    __slots__ = (
        "_data",
        "_data_chars",
        "_decoder",
        "_event",
        "_max_line",
        "_partial",
        "_partial_chars",
        "_pending_cr",
        "comments",
    )

    def __init__(self, max_line: int = MAX_LINE_CHARS) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._max_line = max_line
        # The unfinished last line, as the pieces that arrived: joined once, at its end,
        # so a long line costs its length, not its length times the number of reads.
        self._partial: list[str] = []
        self._partial_chars = 0
        self._data: list[str] = []
        self._data_chars = 0
        self._event: str | None = None
        # A CR at the end of a read may be the first half of a CRLF.
        self._pending_cr = False
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse one read. Raises UnicodeDecodeError on bytes that are not UTF-8 and
        ProbeFailure(PROTOCOL) on a line or event longer than the limit."""
        text = self._decoder.decode(chunk)
        if self._pending_cr and text:
            self._pending_cr = False
            if text[0] == "\n":
                text = text[1:]
        if not text:
            return []
        # Only the new text is searched and rewritten, never the kept pieces.
        if "\r" in text:
            self._pending_cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        tail = lines.pop()
        events: list[SSEEvent] = []
        if lines:
            if self._partial:
                self._partial.append(lines[0])
                lines[0] = "".join(self._partial)
                self._partial.clear()
                self._partial_chars = 0
            for line in lines:
                if len(line) > self._max_line:
                    raise self._too_long("line")
                event = self._line(line)
                if event is not None:
                    events.append(event)
        if tail:
            self._partial.append(tail)
            self._partial_chars += len(tail)
            if self._partial_chars > self._max_line:
                raise self._too_long("line")
        return events

    def close(self) -> None:
        """End of stream. Per the spec an event without its blank line is discarded."""
        self._decoder.decode(b"", final=True)
        self._partial.clear()
        self._partial_chars = 0
        self._data.clear()
        self._data_chars = 0
        self._event = None

    def _too_long(self, what: str) -> ProbeFailure:
        # Never quotes the content: it is unbounded and may echo anything.
        return ProbeFailure(
            FailureReason.PROTOCOL,
            f"SSE {what} longer than {self._max_line} characters",
        )

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            self.comments += 1
            return None
        field, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data_chars += len(value) + 1
            if self._data_chars > self._max_line:
                raise self._too_long("event")
            self._data.append(value)
        elif field == "event":
            self._event = value
        # `id` and `retry` only matter for reconnecting clients; a probe never reconnects.
        return None

    def _dispatch(self) -> SSEEvent | None:
        event_name, self._event = self._event, None
        if not self._data:
            return None
        data = self._data[0] if len(self._data) == 1 else "\n".join(self._data)
        self._data.clear()
        self._data_chars = 0
        return SSEEvent(data, event_name)
