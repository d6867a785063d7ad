"""Framers: pure, incremental splitters of a response body into protocol frames.
Bytes in, frames out, no I/O; the engine picks one per protocol (the registry says
which) and hands every frame to the protocol's decoder.

- SSE (OpenAI, Anthropic, TGI, Gemini with `alt=sse`): the WHATWG EventSource rules
  that matter for LLM streams: `data:` with or without one space, CR/LF/CRLF line ends
  (also split across reads), comment lines, multi-line data and named events; a
  leading byte order mark is dropped.
- NDJSON (Ollama): one JSON text per line, blank lines skipped.

Both are linear and bounded: every byte is decoded and scanned once (only the new read
is searched for line ends; an unfinished line is kept as pieces and joined once when it
ends), and a line (or an SSE event) longer than `MAX_LINE_CHARS` is a protocol failure.
UTF-8 characters split across reads are decoded whole; bytes that are not UTF-8 raise
UnicodeDecodeError, which the engine reports as `protocol`.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Protocol

from ttft_exporter.errors import FailureReason, ProbeFailure

__all__ = [
    "MAX_LINE_CHARS",
    "BodySniffer",
    "Frame",
    "Framer",
    "NDJSONFramer",
    "SSEFramer",
]

MAX_LINE_CHARS = 1 << 20
"""Longest line, and longest SSE event (its data lines together), in characters: 1 MiB.
An LLM chunk is a few hundred bytes; anything near this is a broken or hostile server,
and buffering it further would only cost memory."""


# Not frozen: a frozen dataclass's __init__ goes through object.__setattr__ per field,
# 3x the cost of a plain one, once per stream event (issue #14). Treat it as immutable.
@dataclass(slots=True)
class Frame:
    """One framed message: its text (SSE: the joined data lines; NDJSON: the line) and
    its event name (SSE `event:`; None when unnamed and always for NDJSON)."""

    data: str
    event: str | None = None


class Framer(Protocol):
    """Feed raw bytes as they arrive; get back the frames they complete. One framer
    per stream. `comments` counts keep-alive lines that carried no frame;
    `media_type` is the Content-Type of the streams this framer reads."""

    comments: int

    @property
    def media_type(self) -> str: ...

    def feed(self, chunk: bytes) -> list[Frame]: ...

    def close(self) -> None: ...


class _LineSplitter:
    """The shared half of both framers: UTF-8 decoding, CR/LF/CRLF line ends and the
    line bound, with the unfinished last line kept as pieces."""

    __slots__ = ("_decoder", "_max_line", "_partial", "_partial_chars", "_pending_cr", "_what")

    def __init__(self, max_line: int, what: str) -> None:
        # utf-8-sig: one byte order mark at the very start of the body is dropped, as
        # EventSource does (and as JSON parsers need): kept, it would glue itself to the
        # first line's field name and lose the first event (or fail the first NDJSON line).
        # Split across reads too; a BOM anywhere later is content.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
        self._max_line = max_line
        self._what = what
        # Joined once, at the line's end, so a long line costs its length, not its
        # length times the number of reads.
        self._partial: list[str] = []
        self._partial_chars = 0
        # A CR at the end of a read may be the first half of a CRLF.
        self._pending_cr = False

    def lines(self, chunk: bytes) -> list[str]:
        """The lines this read completes (without their line ends)."""
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
        if lines:
            max_line = self._max_line
            if self._partial:
                self._partial.append(lines[0])
                lines[0] = "".join(self._partial)
                self._partial.clear()
                self._partial_chars = 0
                if len(lines[0]) > max_line:
                    raise self.too_long("line")
            # Every other line is a piece of this read's text: none can be longer than
            # the limit unless the text is (one comparison per read, not per line).
            if len(text) > max_line and any(len(line) > max_line for line in lines):
                raise self.too_long("line")
        if tail:
            self._partial.append(tail)
            self._partial_chars += len(tail)
            if self._partial_chars > self._max_line:
                raise self.too_long("line")
        return lines

    def close(self) -> None:
        self._decoder.decode(b"", final=True)
        self._partial.clear()
        self._partial_chars = 0

    def too_long(self, what: str) -> ProbeFailure:
        # Never quotes the content: it is unbounded and may echo anything.
        return ProbeFailure(
            FailureReason.PROTOCOL,
            f"{self._what} {what} longer than {self._max_line} characters",
        )


class SSEFramer:
    """Server-Sent Events: one frame per dispatched event (a blank line ends it)."""

    __slots__ = ("_data", "_data_chars", "_event", "_lines", "_max_line", "comments")

    media_type = "text/event-stream"

    def __init__(self, max_line: int = MAX_LINE_CHARS) -> None:
        self._lines = _LineSplitter(max_line, "SSE")
        self._max_line = max_line
        self._data: list[str] = []
        self._data_chars = 0
        self._event: str | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[Frame]:
        """Frame one read. Raises UnicodeDecodeError on bytes that are not UTF-8 and
        ProbeFailure(PROTOCOL) on a line or event longer than the limit."""
        frames: list[Frame] = []
        data = self._data
        # The two lines of almost every LLM event (`data: {...}` and the blank line
        # ending it) are handled inline, without a call per line (issue #14: per-event
        # work is the client's cost); every other line takes the general path.
        for line in self._lines.lines(chunk):
            if not line:
                if data:
                    frames.append(self._emit())
                else:
                    self._event = None
            elif line.startswith("data:"):
                value = line[6:] if line.startswith(" ", 5) else line[5:]
                self._data_chars += len(value) + 1
                if self._data_chars > self._max_line:
                    raise self._lines.too_long("event")
                data.append(value)
            else:
                frame = self._line(line)
                if frame is not None:
                    frames.append(frame)
        return frames

    def close(self) -> None:
        """End of stream. Per the spec an event without its blank line is discarded."""
        self._lines.close()
        self._data.clear()
        self._data_chars = 0
        self._event = None

    def _line(self, line: str) -> Frame | None:
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
                raise self._lines.too_long("event")
            self._data.append(value)
        elif field == "event":
            self._event = value
        # `id` and `retry` only matter for reconnecting clients; a probe never reconnects.
        return None

    def _dispatch(self) -> Frame | None:
        if not self._data:
            self._event = None
            return None
        return self._emit()

    def _emit(self) -> Frame:
        """The event whose data lines were collected (there is at least one)."""
        event_name, self._event = self._event, None
        pieces = self._data
        data = pieces[0] if len(pieces) == 1 else "\n".join(pieces)
        pieces.clear()
        self._data_chars = 0
        return Frame(data, event_name)


class NDJSONFramer:
    """Newline-delimited JSON (Ollama): one frame per non-blank line. The line is not
    parsed here: that is the decoder's job, like an SSE event's data."""

    __slots__ = ("_lines", "comments")

    media_type = "application/x-ndjson"

    def __init__(self, max_line: int = MAX_LINE_CHARS) -> None:
        self._lines = _LineSplitter(max_line, "NDJSON")
        # Blank lines: NDJSON has no comments, but a blank line is its keep-alive.
        self.comments = 0

    def feed(self, chunk: bytes) -> list[Frame]:
        """Frame one read. Raises UnicodeDecodeError on bytes that are not UTF-8 and
        ProbeFailure(PROTOCOL) on a line longer than the limit."""
        frames: list[Frame] = []
        for line in self._lines.lines(chunk):
            if line.strip():
                frames.append(Frame(line))
            else:
                self.comments += 1
        return frames

    def close(self) -> None:
        """End of stream. A last line without its newline is discarded, like an SSE
        event without its blank line: the stream was cut inside it."""
        self._lines.close()


_JSON_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"


class BodySniffer:
    """The first significant byte of a body: after one leading byte order mark (split
    across reads too) and JSON whitespace, whatever the Content-Type. From it the
    engine tells a server that answered a streaming request with one JSON document
    (`[`: Gemini without `alt=sse` streams a JSON array no framer can split; `{` where
    SSE was expected: the endpoint ignored `"stream": true`) at its first byte, rather
    than reading it to its end or the deadline. Pure and O(1) per read: it keeps at
    most the bytes of a BOM and stops looking at the first significant byte."""

    __slots__ = ("_head", "decided")

    def __init__(self) -> None:
        self.decided = False
        # The start of the body while it may still be a BOM; None once past it.
        self._head: bytes | None = b""

    def feed(self, chunk: bytes) -> bytes | None:
        """The first significant byte, once, from the read that brings it; None
        before (and after)."""
        if self.decided:
            return None
        if self._head is not None:
            head = self._head + chunk
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._head = head  # a BOM split across reads: wait for the rest
                return None
            chunk = head.removeprefix(_BOM)
            self._head = None
        rest = chunk.lstrip(_JSON_WHITESPACE)
        if not rest:
            return None
        self.decided = True
        return rest[:1]
