"""Secrets out of every text that leaves the exporter (logs, failure details, debug
pages, exceptions), in the forms a server may echo them: raw, JSON-escaped (`\\uXXXX`,
mixed with raw characters), URL-encoded, and any prefix of 8 or more characters
that a cut (ours, a server's, a bounded read) left. Redact before any cut.

NOTE: base64 forms are not searched: at three alignments and two alphabets they would
quadruple the cost of every text for a form no LLM server was seen to echo."""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Iterable

__all__ = ["EXCERPT_WINDOW", "MIN_SECRET_LEN", "PLACEHOLDER", "PREFIX_MIN", "Redactor"]

PLACEHOLDER = "<secret>"
# Shorter values (a header `X-Debug: 1`) are masked in the config dump but not searched
# in free text: no credential is that short, and replacing every "1" would make each
# message unreadable.
MIN_SECRET_LEN = 6
# The leading characters of a secret that count as the secret wherever they appear.
PREFIX_MIN = 8
# Characters of response text an excerpt looks at (the text may be a whole SSE event).
EXCERPT_WINDOW = 4096

# One escaped character: a JSON surrogate pair, a JSON \u escape, a JSON two-character
# escape, or the %XX bytes of one UTF-8 character (a lead byte and its continuations).
_ESCAPE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|\\u[0-9a-fA-F]{4}"
    r"|\\[\"\\/bfnrt]"
    r"|%[0-9a-fA-F]{2}(?:%[89abAB][0-9a-fA-F])*"
)
_ESCAPE_SPLIT = re.compile(f"({_ESCAPE.pattern})")
_JSON_SHORT = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


def _unescape(escape: str) -> str:
    if escape[0] == "%":
        return bytes.fromhex(escape.replace("%", "")).decode("utf-8", "replace")
    if escape[1] == "u":
        units = [int(escape[i + 2 : i + 6], 16) for i in range(0, len(escape), 6)]
        if len(units) == 2:
            return chr(0x10000 + ((units[0] - 0xD800) << 10) + (units[1] - 0xDC00))
        return chr(units[0])
    return _JSON_SHORT[escape[1]]


class _Decoded:
    """A text with every escape decoded, and the way back from decoded offsets to
    original ones (an escape maps as a whole)."""

    __slots__ = ("dec_ends", "dec_starts", "orig_ends", "orig_starts", "text")

    def __init__(self, text: str) -> None:
        # split() leaves text, escape, text, escape, ..., text: one C pass.
        pieces = _ESCAPE_SPLIT.split(text)
        self.dec_starts: list[int] = []
        self.dec_ends: list[int] = []
        self.orig_starts: list[int] = []
        self.orig_ends: list[int] = []
        orig = dec = len(pieces[0])
        cache: dict[str, str] = {}
        for i in range(1, len(pieces), 2):
            escape = pieces[i]
            char = cache.get(escape)
            if char is None:
                char = cache[escape] = _unescape(escape)
                if len(cache) > 4096:
                    cache.clear()
            pieces[i] = char
            self.orig_starts.append(orig)
            self.dec_starts.append(dec)
            orig += len(escape)
            dec += len(char)
            self.orig_ends.append(orig)
            self.dec_ends.append(dec)
            following = len(pieces[i + 1])
            orig += following
            dec += following
        self.text = "".join(pieces)

    def original(self, start: int, end: int) -> tuple[int, int]:
        """The original span of a decoded span, widened to whole escapes."""
        return self._map(start, inside_to_end=False), self._map(end - 1, inside_to_end=True)

    def _map(self, offset: int, *, inside_to_end: bool) -> int:
        i = bisect_right(self.dec_starts, offset) - 1
        if i < 0:
            return offset + (1 if inside_to_end else 0)
        if offset < self.dec_ends[i]:
            return self.orig_ends[i] if inside_to_end else self.orig_starts[i]
        mapped = self.orig_ends[i] + offset - self.dec_ends[i]
        return mapped + (1 if inside_to_end else 0)


def _common_prefix(text: str, start: int, form: str) -> int:
    """How many leading characters of `form` the text repeats from `start`."""
    if text.startswith(form, start):
        return len(form)
    low, high = 0, min(len(form), len(text) - start)
    while low < high:  # binary search on startswith: C speed, no per-char loop
        mid = (low + high + 1) // 2
        if text.startswith(form[:mid], start):
            low = mid
        else:
            high = mid - 1
    return low


def _escape_cut(rest: str, char: str) -> bool:
    """Whether `rest`, the very end of a text, is the start of an escape of `char`."""
    if not rest or len(rest) >= 12 or rest[0] not in "\\%":
        return False
    code = ord(char)
    forms = [
        f"\\u{code:04x}",
        "".join(f"%{b:02x}" for b in char.encode()),
        json.dumps(char, ensure_ascii=True)[1:-1].lower(),
    ]
    return any(form.startswith(rest.lower()) for form in forms)


class Redactor:
    """Replaces a fixed set of secrets in free text, in linear time: every escape is
    decoded once, then one alternation of 8-character literals (no backtracking
    possible) finds the candidates, each checked with `startswith`.

    >>> Redactor(["sk-SENTINEL-0123"]).redact("key sk-SENTI")
    'key <secret>'
    """

    __slots__ = ("_find", "_forms", "margin", "secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: tuple[str, ...] = tuple(
            sorted({s for s in secrets if len(s) >= MIN_SECRET_LEN}, key=len, reverse=True)
        )
        # Literal (the first 8 characters of a form) -> the forms that start with it.
        self._forms: dict[str, list[str]] = {}
        for secret in self.secrets:
            forms = {secret}
            if " " in secret:
                forms.add(secret.replace(" ", "+"))  # quote_plus
            for form in forms:
                self._forms.setdefault(form[:PREFIX_MIN], []).append(form)
        literals = sorted(self._forms, key=len, reverse=True)
        self._find = re.compile("|".join(map(re.escape, literals))) if literals else None
        # Longest a secret can get when escaped: 12 characters per character (a
        # surrogate pair or four %XX bytes); a window this much past a cut sees it whole.
        self.margin = 12 * max((len(s) for s in self.secrets), default=0)

    def __bool__(self) -> bool:
        return self._find is not None

    def redact(self, text: str) -> str:
        """`text` with every secret, and every 8+ character prefix of one, replaced."""
        find = self._find
        if find is None or not text:
            return text
        spans = self._spans(find, text)
        if _ESCAPE.search(text) is not None:
            decoded = _Decoded(text)
            spans += [decoded.original(s, e) for s, e in self._spans(find, decoded.text)]
        if not spans:
            return text
        out: list[str] = []
        pos = 0
        for start, end in sorted(spans):
            if end <= pos:
                continue
            if start > pos:
                out.append(text[pos:start])
                out.append(PLACEHOLDER)
            elif not out:
                out.append(PLACEHOLDER)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def cut(self, text: str, limit: int) -> str:
        """Redacted first, then at most `limit` characters (`…` marks a cut). Every 8+
        prefix is gone before the cut, so none survives at the cut boundary."""
        text = self.redact(text[: limit + self.margin + PREFIX_MIN])
        if len(text) <= limit:
            return text
        head = text[: max(0, limit - 1)]
        # Do not leave half a placeholder, which reads like a garbled value.
        start = head.rfind("<", max(0, len(head) - len(PLACEHOLDER) + 1))
        if start >= 0 and PLACEHOLDER.startswith(head[start:]):
            head = head[:start]
        return head + "…"

    def excerpt(self, text: str, limit: int, *, window: int = EXCERPT_WINDOW) -> str:
        """A one-line excerpt of response text (which may echo a secret): a bounded
        window of it redacted whole, then whitespace collapsed, then cut to `limit`.
        Redacted before whitespace is collapsed, which would change a secret that
        holds whitespace into a form no longer searched for."""
        text = self.redact(text[: window + self.margin])
        return self.cut(" ".join(text.split()), limit)

    def _spans(self, find: re.Pattern[str], text: str) -> list[tuple[int, int]]:
        spans = []
        pos = 0
        while (match := find.search(text, pos)) is not None:
            start = match.start()
            best, form = 0, ""
            for candidate in self._forms[match.group()]:
                length = _common_prefix(text, start, candidate)
                if length > best:
                    best, form = length, candidate
            if best:
                end = start + best
                if best < len(form) and _escape_cut(text[end : end + 12], form[best]):
                    end = len(text)  # the text ends inside the next character's escape
                spans.append((start, end))
            pos = start + 1  # overlapping occurrences of another secret count too
        return spans
