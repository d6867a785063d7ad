"""Shared validation pieces: the RE2 `Regex` field type (issue #8, item 5)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import make_config, make_target
from ttft_exporter.config import Config
from ttft_exporter.errors import ConfigError
from ttft_exporter.validation import MAX_PATTERN_CHARS, Regex

HINT = "(RE2 syntax: no backreferences or lookaround)"


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"^(?=.*cat)", "invalid perl operator: (?="),
        (r"(?!dog)", "invalid perl operator: (?!"),
        (r"(?<=a)b", "invalid perl operator: (?<="),
        (r"(?<!a)b", "invalid perl operator: (?<!"),
        (r"(\w)\1", r"invalid escape sequence: \1"),
        (r"(?>atomic)", "invalid perl operator: (?>"),
        (r"a*+", "bad repetition operator: *+"),
        (r"end\Z", r"invalid escape sequence: \Z"),
        ("(", "missing ): ("),
    ],
    ids=["lookahead", "negative-lookahead", "lookbehind", "negative-lookbehind",
         "backreference", "atomic", "possessive", "big-Z", "unbalanced"],
)  # fmt: skip
def test_patterns_re2_cannot_compile_are_rejected_at_load_naming_the_field(
    pattern: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        make_config({"name": "a", "url": "http://h/v1", "expect": pattern})
    assert [str(p) for p in info.value.problems] == [
        f"targets[0].expect: invalid regular expression: {message} {HINT}"
    ]


def test_too_long_and_non_string_patterns_are_rejected() -> None:
    with pytest.raises(ConfigError, match="longer than 4096 characters"):
        make_config({"name": "a", "url": "http://h/v1", "expect": "a" * (MAX_PATTERN_CHARS + 1)})
    with pytest.raises(ConfigError, match=r"targets\[0\]\.expect: must be a string"):
        make_config({"name": "a", "url": "http://h/v1", "expect": 5})


def test_backtracking_pattern_is_linear() -> None:
    # Python's re needs ~0.75 s for 11 words here and 4x per further word; 5000 words
    # would never end. RE2 returns at once (no timing asserted: a hang would fail).
    regex = Regex(r"^(\w+\s?)+\.$")
    assert regex.search("tok " * 5000) is None
    assert regex.search("tok " * 5000 + "tok.") is not None


def test_search_fullmatch_and_pattern_like_re() -> None:
    regex = Regex(r"(?i)hello\s+(\w+)")
    found = regex.search("Well, HELLO there")
    assert found is not None and found.group(1) == "there" and found.span() == (6, 17)
    assert regex.fullmatch("hello you") is not None
    assert regex.fullmatch("oh hello you") is None
    assert regex.pattern == r"(?i)hello\s+(\w+)"


def test_perl_classes_are_ascii_and_unicode_classes_exist() -> None:
    # Documented in CONFIGURATION.md: \w is ASCII in RE2; \pL is the Unicode letter class.
    assert Regex(r"^\w+$").fullmatch("café") is None
    assert Regex(r"^\pL+$").fullmatch("café") is not None


def test_field_dumps_as_its_pattern_and_compares_by_it() -> None:
    target = make_target(url="http://h/v1", expect="^Paris")
    assert target.model_dump(mode="json")["expect"] == "^Paris"
    assert target.redacted()["expect"] == "^Paris"
    assert target.fingerprint() == make_target(url="http://h/v1", expect="^Paris").fingerprint()
    assert target.fingerprint() != make_target(url="http://h/v1", expect="^Rome").fingerprint()


def test_json_schema_describes_a_string() -> None:
    schema = json.dumps(Config.model_json_schema(mode="validation"))
    assert '"format": "regex"' in schema
