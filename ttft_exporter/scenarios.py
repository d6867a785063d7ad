"""Named probe scenarios and the cold probe of a target (issue #10): their config
models, the bounded set of `scenario` label values, and the long-prompt filler text,
generated once at config load (in the loader's thread), never per probe. A leaf:
imports nothing of `targets.py`, `config.py` or `probes/`."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from ttft_exporter.durations import Duration, format_duration
from ttft_exporter.validation import StrictModel, field_rule

__all__ = [
    "COLD_SCENARIO",
    "DEFAULT_SCENARIO",
    "FILLER_CHARS_PER_TOKEN",
    "MAX_PROMPT_TOKENS",
    "MAX_SCENARIOS",
    "ChatMessage",
    "ColdConfig",
    "ScenarioConfig",
    "filler_prompt",
]

DEFAULT_SCENARIO = "default"
"""The `scenario` label of a target that configures no scenarios: every probe series
carries the label, so label sets are the same on every target."""
COLD_SCENARIO = "cold"
"""The `scenario` label of a target's cold probe (its `cold:` option)."""
# Names a user may not give a scenario: the exporter sets them.
_RESERVED_NAMES = frozenset({DEFAULT_SCENARIO, COLD_SCENARIO})
# A label value that is also safe in a URL query and a log field: short, lower case.
_SCENARIO_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")

MAX_SCENARIOS = 16
"""Most scenarios per target. Each one is a full set of probe series (about 80 by
default) and a probe every interval, so the label's cardinality is bounded here."""

MAX_PROMPT_TOKENS = 200_000
"""Largest generated prompt (about 800 KB of text). Every probe of the scenario sends
it, and encoding the request body costs the event loop about 1.4 ms per probe at this
size (measured: json.dumps of 200,000 words), proportional below it."""

FILLER_CHARS_PER_TOKEN = 4
"""The filler is 3-letter common English words, each followed by a space: 4
characters per word, and byte-pair tokenizers (GPT, Llama, Mistral, Qwen) encode each
such word with its leading space as one token, so N words are about N tokens (within
a few percent; the chat template adds a few of its own)."""

# Common English words of 3 letters: each is a single token in the common BPE
# vocabularies, and none forms a longer token with its neighbours across the space.
# fmt: off
_FILLER_WORDS = (
    "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "had", "her",
    "was", "one", "our", "out", "day", "get", "has", "him", "his", "how", "man", "new",
    "now", "old", "see", "two", "way", "who", "boy", "did", "its", "let", "put", "say",
    "she", "too", "use", "car", "dog", "red", "sun", "sea", "sky", "arm", "leg", "eye",
    "ear", "cup", "pen", "box", "bag", "hat", "key", "map", "oil", "tea", "top",
)
# fmt: on
# A fixed linear congruential walk over the words: text that does not repeat in a
# short period (a server's prefix cache or n-gram speculation gets no easy win from it)
# yet is the same on every load, so a config reload does not change the prompt.
_LCG_A = 1_103_515_245
_LCG_C = 12_345
_LCG_M = 1 << 31


def filler_prompt(tokens: int) -> str:
    """About `tokens` tokens of deterministic filler text (see FILLER_CHARS_PER_TOKEN):
    exactly `tokens` words, `4 x tokens - 1` characters. Linear time; called at
    config load only."""
    if not 1 <= tokens <= MAX_PROMPT_TOKENS:
        raise ValueError(f"tokens must be between 1 and {MAX_PROMPT_TOKENS}")
    words = _FILLER_WORDS
    count = len(words)
    state = 1
    out: list[str] = []
    for _ in range(tokens):
        state = (_LCG_A * state + _LCG_C) % _LCG_M
        out.append(words[(state >> 16) % count])
    return " ".join(out)


class ChatMessage(StrictModel):
    """One chat message of a probe prompt."""

    role: Literal["system", "user", "assistant", "developer"]
    content: str


class ScenarioConfig(StrictModel):
    """One named scenario of a target: probed as its own series (`scenario` label =
    its name) on its own cadence, with the target's settings except those it
    overrides. Scenarios of one target never run at the same time (one probe per
    target at a time), so a long prompt's prefill never delays a short one's TTFT."""

    name: str = Field(description="The `scenario` label value: [a-z0-9][a-z0-9_.-], ≤ 32.")
    prompt: str | None = Field(
        None, min_length=1, description="User prompt instead of the target's."
    )
    messages: list[ChatMessage] | None = Field(
        None,
        min_length=1,
        description="Message list instead of the target's prompt (chat protocols only).",
    )
    prompt_tokens: int | None = Field(
        None,
        ge=1,
        le=MAX_PROMPT_TOKENS,
        validate_default=True,
        description=(
            "A prompt of about this many tokens, generated at load: 3-letter words, "
            "4 characters and about 1 token each."
        ),
    )
    max_tokens: int | None = Field(None, ge=1, le=1_000_000, description="max_tokens sent.")
    interval: Duration | None = Field(None, description="Time between probes of the scenario.")
    timeout: Duration | None = Field(None, description="Deadline of one probe of the scenario.")
    cache_bust: bool | None = Field(
        None, description="false: identical requests every time (prefix caching measured)."
    )

    _generated: str | None = PrivateAttr(None)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _SCENARIO_NAME.fullmatch(value):
            raise ValueError(
                "must start with a lower-case letter or digit and use only a-z, 0-9, "
                "'_', '.' or '-' (at most 32 characters)"
            )
        if value in _RESERVED_NAMES:
            raise ValueError(f"{value!r} is reserved (set by the exporter)")
        return value

    @field_validator("prompt_tokens")
    @classmethod
    def _one_prompt(cls, value: int | None, info: ValidationInfo) -> int | None:
        # Validated even when absent: the one place for the prompt rule.
        given = [n for n in ("prompt", "messages") if info.data.get(n) is not None] + (
            ["prompt_tokens"] if value is not None else []
        )
        if len(given) > 1:
            raise ValueError(
                f"set at most one of prompt, messages or prompt_tokens, not {', '.join(given)}"
            )
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be above 0")
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be above 0")
        return value

    @model_validator(mode="after")
    def _generate(self) -> Self:
        # Here, in the loader's thread: the event loop only ever reads the text.
        if self.prompt_tokens is not None:
            self._generated = filler_prompt(self.prompt_tokens)
        return self

    @property
    def effective_prompt(self) -> str | None:
        """The prompt the scenario sends instead of the target's: its own, the
        generated one, or None (the target's, or `messages`)."""
        return self.prompt if self.prompt is not None else self._generated

    def overrides(self) -> dict[str, object]:
        """The target fields this scenario replaces (prompt fields excluded)."""
        fields = ("max_tokens", "interval", "timeout", "cache_bust")
        return {f: getattr(self, f) for f in fields if getattr(self, f) is not None}


class ColdConfig(StrictModel):
    """The cold probe: every `every`, the target's other probes are held off until it
    has been idle (no probe of it by this exporter) for `idle`, then one probe is sent,
    labelled `scenario="cold"`, and the others resume."""

    idle: Duration = Field(description="How long the target is left idle before the cold probe.")
    every: Duration = Field(
        3600.0, validate_default=True, description="Time between cold probes; at least idle."
    )
    timeout: Duration = Field(
        60.0,
        validate_default=True,
        description="Deadline of the cold probe (a scale from zero takes tens of seconds).",
    )

    @field_validator("idle")
    @classmethod
    def _idle(cls, value: float) -> float:
        if not 1.0 <= value <= 7 * 86400.0:
            raise ValueError("must be between 1s and 7d")
        return value

    @field_validator("every")
    @classmethod
    def _every(cls, value: float, info: ValidationInfo) -> float:
        idle = info.data.get("idle")
        if idle is not None and value < idle:
            raise ValueError(f"must be at least idle ({format_duration(idle)})")
        return value

    @field_validator("timeout")
    @classmethod
    def _cold_timeout(cls, value: float, info: ValidationInfo) -> float:
        if value <= 0:
            raise ValueError("must be above 0")
        every = info.data.get("every")
        if every is not None and value >= every:
            raise field_rule("", f"must be below every ({format_duration(every)})")
        return value
