"""Prompts of a load test: synthetic text with an input-length distribution, or the
lines of a JSONL file. Lengths are counted with a tokenizer when one is given (a local
`tokenizer.json`, through the optional `tokenizers` package), else approximately: one
token per word of a list of short common English words, which most BPE vocabularies
encode as one token each (expect within about 20 % of a real tokenizer's count)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "MAX_PROMPT_TOKENS",
    "JSONLPrompts",
    "Prompt",
    "PromptSource",
    "SyntheticPrompts",
    "load_tokenizer",
]

MAX_PROMPT_TOKENS = 131_072
# A JSONL file is read whole before the run: bound it.
MAX_JSONL_BYTES = 64 << 20
MAX_JSONL_LINES = 100_000

_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "it",
    "you",
    "that",
    "he",
    "was",
    "for",
    "on",
    "are",
    "as",
    "with",
    "his",
    "they",
    "at",
    "be",
    "this",
    "have",
    "from",
    "or",
    "one",
    "had",
    "by",
    "word",
    "but",
    "not",
    "what",
    "all",
    "were",
    "we",
    "when",
    "your",
    "can",
    "said",
    "there",
    "use",
    "an",
    "each",
    "which",
    "she",
    "do",
    "how",
    "their",
    "if",
    "will",
    "up",
    "other",
    "about",
    "out",
    "many",
    "then",
    "them",
    "these",
    "so",
    "some",
    "her",
    "would",
    "make",
    "like",
    "him",
    "into",
    "time",
    "has",
    "look",
    "two",
    "more",
    "write",
    "go",
    "see",
    "number",
    "no",
    "way",
    "could",
    "people",
    "my",
    "than",
    "first",
    "water",
    "been",
    "call",
    "who",
    "oil",
    "its",
    "now",
    "find",
    "long",
    "down",
    "day",
    "did",
    "get",
    "come",
    "made",
    "may",
    "part",
]

TokenCounter = Callable[[str], int]


@dataclass(frozen=True, slots=True)
class Prompt:
    """One request's prompt, its input length in tokens and, if the source says, its
    own output length."""

    text: str
    tokens: int
    max_tokens: int | None = None


class PromptSource:
    """Yields the prompt of each request, reproducibly from the seed."""

    counting: Literal["tokenizer", "approximate", "none"] = "approximate"

    def next(self) -> Prompt:
        """The next prompt."""
        raise NotImplementedError


def load_tokenizer(path: str) -> TokenCounter:
    """A token counter from a local `tokenizer.json` (Hugging Face `tokenizers`, an
    optional dependency). ValueError with the fix when it is absent or unreadable."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ValueError(
            "--prompt.tokenizer needs the `tokenizers` package (pip install tokenizers); "
            "without it lengths are approximate"
        ) from None
    try:
        tokenizer = Tokenizer.from_file(path)
    except Exception as exc:  # noqa: BLE001 - any failure of a foreign library is a usage error
        raise ValueError(f"--prompt.tokenizer: cannot load {path}: {type(exc).__name__}") from None

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count


class SyntheticPrompts(PromptSource):
    """Prompts of `mean` tokens (normal, `stddev`, clipped to 1..MAX_PROMPT_TOKENS)."""

    def __init__(
        self,
        mean: int,
        stddev: float = 0.0,
        *,
        seed: int | None = None,
        counter: TokenCounter | None = None,
    ) -> None:
        if not 1 <= mean <= MAX_PROMPT_TOKENS or stddev < 0:
            raise ValueError(
                f"--prompt.tokens: must be 1 to {MAX_PROMPT_TOKENS} (stddev not negative)"
            )
        self._mean = mean
        self._stddev = stddev
        self._rng = random.Random(seed)
        self._counter = counter
        self.counting = "tokenizer" if counter is not None else "approximate"

    def _length(self) -> int:
        if self._stddev == 0:
            return self._mean
        drawn = round(self._rng.gauss(self._mean, self._stddev))
        return min(max(drawn, 1), MAX_PROMPT_TOKENS)

    def next(self) -> Prompt:
        want = self._length()
        words = self._rng.choices(_WORDS, k=want)
        text = " ".join(words)
        if self._counter is None:
            return Prompt(text, want)
        # Trim to the wanted count by the real tokenizer: keep the share of words the
        # count says, again until it fits (strictly fewer words each time).
        counted = self._counter(text)
        while counted > want and len(words) > 1:
            words = words[: max(1, min(len(words) - 1, len(words) * want // counted))]
            text = " ".join(words)
            counted = self._counter(text)
        return Prompt(text, counted)


class JSONLPrompts(PromptSource):
    """Prompts from a JSONL file, in order and round again: each line is a JSON string
    or an object with `prompt` (and optionally `max_tokens`, its own output length)."""

    def __init__(self, path: Path, *, counter: TokenCounter | None = None) -> None:
        self._prompts = _read_jsonl(path, counter)
        self._next = 0
        self.counting = "tokenizer" if counter is not None else "approximate"

    def next(self) -> Prompt:
        prompt = self._prompts[self._next]
        self._next = (self._next + 1) % len(self._prompts)
        return prompt


def _read_jsonl(path: Path, counter: TokenCounter | None) -> list[Prompt]:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_JSONL_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"--prompts: cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_JSONL_BYTES:
        raise ValueError(f"--prompts: {path} is above {MAX_JSONL_BYTES >> 20} MiB")
    prompts: list[Prompt] = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        if len(prompts) >= MAX_JSONL_LINES:
            raise ValueError(f"--prompts: {path} has more than {MAX_JSONL_LINES} prompts")
        prompts.append(_prompt(line, f"{path}:{number}", counter))
    if not prompts:
        raise ValueError(f"--prompts: {path} has no prompt")
    return prompts


def _prompt(line: bytes, where: str, counter: TokenCounter | None) -> Prompt:
    try:
        item = json.loads(line)
    except ValueError:
        raise ValueError(f"--prompts: {where}: not JSON") from None
    max_tokens = None
    if isinstance(item, dict):
        text = item.get("prompt")
        raw_max = item.get("max_tokens")
        if raw_max is not None:
            if isinstance(raw_max, bool) or not isinstance(raw_max, int) or raw_max < 1:
                raise ValueError(f"--prompts: {where}: max_tokens must be a positive integer")
            max_tokens = raw_max
    else:
        text = item
    if not isinstance(text, str) or not text:
        raise ValueError(f"--prompts: {where}: want a string or an object with `prompt`")
    tokens = counter(text) if counter is not None else len(text.split())
    return Prompt(text, tokens, max_tokens)
