"""Tests for ttft_exporter.redact: every form of a secret a server may echo, prefixes
left by cuts, and cuts that never leave a prefix behind."""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest

from ttft_exporter.redact import PLACEHOLDER, PREFIX_MIN, Redactor

SECRET = "SENTINEL-SECRET-0123456789"
SPACED = "Bearer sk/abc+def 42"
EMOJI = "key-\U0001f511-é-0123456789"


def leaked(text: str, secret: str = SECRET) -> list[str]:
    """Every 8+ character prefix of `secret` found in `text`."""
    return [secret[:k] for k in range(PREFIX_MIN, len(secret) + 1) if secret[:k] in text]


def json_u(text: str, upper: bool = False, every: int = 1) -> str:
    """`\\uXXXX` for every `every`-th character (surrogate pairs outside the BMP)."""
    out = []
    for index, char in enumerate(text):
        if index % every:
            out.append(char)
            continue
        units = json.dumps(char, ensure_ascii=True)[1:-1]
        if not units.startswith("\\u"):
            units = f"\\u{ord(char):04x}"
        out.append(units.upper().replace("\\U", "\\u") if upper else units)
    return "".join(out)


FORMS = {
    "raw": SECRET,
    "json-dumps": json.dumps(SECRET)[1:-1],
    "json-u-lower": json_u(SECRET),
    "json-u-upper": json_u(SECRET, upper=True),
    "json-u-mixed": json_u(SECRET, every=2),
    "json-u-emoji": json_u(EMOJI),
    "json-ascii-emoji": json.dumps(EMOJI, ensure_ascii=True)[1:-1],
    "quote": urllib.parse.quote(SPACED, safe=""),
    "quote-slash-safe": urllib.parse.quote(SPACED),
    "quote-plus": urllib.parse.quote_plus(SPACED),
    "quote-emoji": urllib.parse.quote(EMOJI),
    "quote-lower-hex": re.sub("%..", lambda m: m.group().lower(), urllib.parse.quote(SPACED)),
    "json-escaped-slash": SPACED.replace("/", "\\/"),
}


@pytest.mark.parametrize("form", list(FORMS), ids=list(FORMS))
def test_every_form_is_replaced(form: str) -> None:
    redactor = Redactor([SECRET, SPACED, EMOJI])
    text = f"Incorrect API key provided: {FORMS[form]}. Check your key."

    out = redactor.redact(text)

    assert out == f"Incorrect API key provided: {PLACEHOLDER}. Check your key."


@pytest.mark.parametrize("length", [PREFIX_MIN, 12, len(SECRET) - 1])
@pytest.mark.parametrize("where", ["end", "middle"])
def test_prefixes_of_eight_or_more_are_replaced(length: int, where: str) -> None:
    text = "key: " + SECRET[:length] + (" and more" if where == "middle" else "")

    out = Redactor([SECRET]).redact(text)

    assert out == "key: " + PLACEHOLDER + (" and more" if where == "middle" else "")


def test_escaped_prefix_cut_inside_an_escape_is_replaced() -> None:
    text = "key: " + json_u(SECRET)[: 6 * 10 + 3]  # ten characters and half an escape

    assert Redactor([SECRET]).redact(text) == "key: " + PLACEHOLDER


def test_shorter_prefixes_and_unrelated_text_stay() -> None:
    redactor = Redactor([SECRET])
    text = "SENTINE is seven characters; SENTINEL_ is not the secret's ninth character"
    assert redactor.redact(text) == text.replace("SENTINEL", PLACEHOLDER, 1)
    assert redactor.redact("nothing here") == "nothing here"


def test_short_values_are_not_searched() -> None:
    redactor = Redactor(["1", "ml", "abcde"])
    assert not redactor
    assert redactor.redact("1 ml abcde") == "1 ml abcde"


def test_overlapping_secrets_are_both_replaced() -> None:
    first, second = "AAAAAAAAB-first-secret", "AAAAAB-second-secret-xyz"
    text = f"x {first} y AAA{second} z"

    out = Redactor([first, second]).redact(text)

    assert leaked(out, first) == [] and leaked(out, second) == []
    assert out.startswith("x ") and out.endswith(" z")


@pytest.mark.parametrize("limit", list(range(1, 60)))
def test_cut_never_leaves_a_prefix_at_the_boundary(limit: int) -> None:
    text = "x" * 20 + SECRET + " tail " + json_u(SECRET)

    out = Redactor([SECRET]).cut(text, limit)

    assert len(out) <= limit
    assert leaked(out) == []
    assert "<" not in out or PLACEHOLDER in out  # never half a placeholder


def test_cut_of_a_long_text_redacts_across_the_window() -> None:
    # The secret starts before the limit and ends far after it once escaped.
    text = "y" * 95 + json_u(SECRET) + "z" * 100_000

    out = Redactor([SECRET]).cut(text, 100)

    assert out == "y" * 95 + "…"
    assert leaked(out) == []


def test_a_text_of_endless_prefixes_is_redacted_whole() -> None:
    # Semantic, not timed (benchmarks/bench_redact.py measures): every candidate is
    # checked once, and adjacent matches become one placeholder.
    text = "a " + SECRET[:PREFIX_MIN] * 50_000 + " b"

    assert Redactor([SECRET]).redact(text) == f"a {PLACEHOLDER} b"


def test_excerpt_redacts_before_collapsing_whitespace_and_cutting() -> None:
    # A secret holding a run of whitespace: collapsing first would hide it from the
    # search; cutting first would leave a prefix. Both orders are wrong.
    redactor = Redactor(["sk-AB\t\tCDEFGHIJ"])
    text = "error:\n  key   sk-AB\t\tCDEFGHIJ  rejected " + "x" * 10_000
    excerpt = redactor.excerpt(text, 40)
    assert excerpt.startswith("error: key <secret> rejected")
    assert len(excerpt) <= 40 and excerpt.endswith("…")
    assert "sk-AB" not in excerpt


def test_excerpt_looks_at_a_bounded_window() -> None:
    # The window is widened by the longest escaped form of a secret (margin), so a
    # secret straddling its end is still seen whole; without secrets, none.
    assert Redactor().excerpt("a" * 100 + " tail", 200, window=10) == "a" * 10
    redactor = Redactor(["sk-SENTINEL-0123"])
    assert len(redactor.excerpt("a" * 1000, 2000, window=10)) == 10 + redactor.margin
