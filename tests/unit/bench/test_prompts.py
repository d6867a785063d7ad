"""Prompts: synthetic lengths from the distribution (approximate counting, said so),
JSONL files, bounded and with errors naming the flag and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ttft_exporter.bench.prompts import JSONLPrompts, SyntheticPrompts, load_tokenizer


def test_synthetic_prompts_have_the_asked_length() -> None:
    fixed = SyntheticPrompts(50, seed=1)
    assert fixed.counting == "approximate"
    prompts = [fixed.next() for _ in range(3)]
    assert all(p.tokens == 50 and len(p.text.split()) == 50 for p in prompts)
    assert len({p.text for p in prompts}) == 3  # not one cached prefix
    spread = SyntheticPrompts(100, 20, seed=2)
    lengths = [spread.next().tokens for _ in range(2000)]
    assert 95 < sum(lengths) / len(lengths) < 105 and min(lengths) >= 1
    # Seeded: two sources of one seed give the same prompts.
    assert SyntheticPrompts(10, seed=7).next() == SyntheticPrompts(10, seed=7).next()


def test_a_tokenizer_counts_when_given() -> None:
    # A counter that sees two tokens per word: the generator trims to the wanted count.
    source = SyntheticPrompts(40, seed=1, counter=lambda text: 2 * len(text.split()))
    assert source.counting == "tokenizer"
    prompt = source.next()
    assert prompt.tokens == 40 and len(prompt.text.split()) == 20


def test_missing_tokenizers_package_is_a_usage_error() -> None:
    # `tokenizers` is optional: whichever way it is, the error names the flag.
    try:
        import tokenizers  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        with pytest.raises(
            ValueError, match=re.escape("--prompt.tokenizer needs the `tokenizers` package")
        ):
            load_tokenizer("tokenizer.json")
    else:
        with pytest.raises(ValueError, match=re.escape("--prompt.tokenizer: cannot load")):
            load_tokenizer("/nonexistent/tokenizer.json")


def test_jsonl_prompts(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('"one two"\n\n{"prompt": "a b c", "max_tokens": 7}\n')
    source = JSONLPrompts(path)
    first, second, third = source.next(), source.next(), source.next()
    assert (first.text, first.tokens, first.max_tokens) == ("one two", 2, None)
    assert (second.text, second.max_tokens) == ("a b c", 7)
    assert third == first  # round again


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "has no prompt"),
        ("{bad\n", ":1: not JSON"),
        ('{"text": "x"}\n', ":1: want a string or an object with `prompt`"),
        ('"ok"\n{"prompt": "x", "max_tokens": 0}\n', ":2: max_tokens must be a positive integer"),
    ],
    ids=["empty", "not-json", "no-prompt", "bad-max-tokens"],
)
def test_bad_jsonl_names_flag_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match="--prompts") as info:
        JSONLPrompts(path)
    assert message in str(info.value)
