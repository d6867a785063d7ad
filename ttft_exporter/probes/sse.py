"""Pure, incremental Server-Sent Events parser: bytes in, events out, no I/O.

Follows the WHATWG EventSource parsing rules that matter for LLM streams: `data:` with
or without one space, CR/LF/CRLF line ends (also split across reads), comment lines,
multi-line data, named events, and UTF-8 characters split across reads.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEParser"]


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its `event:` name (or None) and its joined data lines."""

    data: str
    event: str | None = None


class SSEParser:
    """Feed raw bytes as they arrive; get back the events they complete."""

    __slots__ = ("_buffer", "_data", "_decoder", "_event", "_pending_cr", "comments")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._buffer = ""
        self._data: list[str] = []
        self._event: str | None = None
        # A CR at the end of a read may be the first half of a CRLF.
        self._pending_cr = False
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse one read. Raises UnicodeDecodeError on bytes that are not UTF-8."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if self._pending_cr:
            self._pending_cr = False
            if text[0] == "\n":
                text = text[1:]
        buffer = self._buffer + text
        if "\r" in buffer:
            if buffer.endswith("\r"):
                self._pending_cr = True
            buffer = buffer.replace("\r\n", "\n").replace("\r", "\n")
        lines = buffer.split("\n")
        self._buffer = lines.pop()
        events: list[SSEEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> None:
        """End of stream. Per the spec an event without its blank line is discarded."""
        self._decoder.decode(b"", final=True)
        self._buffer = ""
        self._data.clear()
        self._event = None

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
        return SSEEvent(data, event_name)
