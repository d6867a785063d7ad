"""Tests for ttft_exporter.scenarios: the generated long prompt and how a target's
scenarios become the targets that are probed (config errors are table cases in
test_config.py)."""

from __future__ import annotations

import pytest

from tests.conftest import make_config
from ttft_exporter.config import OpenAIChatTarget
from ttft_exporter.scenarios import (
    FILLER_CHARS_PER_TOKEN,
    MAX_PROMPT_TOKENS,
    filler_prompt,
)


@pytest.mark.parametrize("tokens", [1, 2000, MAX_PROMPT_TOKENS])
def test_the_filler_has_one_word_of_four_characters_per_token(tokens: int) -> None:
    text = filler_prompt(tokens)
    assert len(text.split(" ")) == tokens
    assert len(text) == FILLER_CHARS_PER_TOKEN * tokens - 1
    assert all(len(word) == 3 and word.isalpha() for word in text.split(" "))


def test_the_filler_is_the_same_on_every_load_and_does_not_repeat_early() -> None:
    assert filler_prompt(5000) == filler_prompt(5000)
    assert filler_prompt(5000).startswith(filler_prompt(100))
    words = filler_prompt(400).split(" ")
    # No short period: the first 50 words do not come back as a block.
    assert " ".join(words[:50]) not in " ".join(words[1:])


@pytest.mark.parametrize("tokens", [0, MAX_PROMPT_TOKENS + 1])
def test_the_filler_is_bounded(tokens: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 200000"):
        filler_prompt(tokens)


def test_scenarios_become_probed_copies_with_their_overrides() -> None:
    target = make_config(
        {
            "name": "t",
            "url": "http://127.0.0.1:1/v1",
            "prompt": None,
            "messages": [{"role": "user", "content": "hi"}],
            "interval": "15s",
            "timeout": "10s",
            "scenarios": [
                {"name": "short", "max_tokens": 4},
                {"name": "long-prompt", "prompt_tokens": 2000, "timeout": "20s", "interval": "1m"},
                {"name": "cached", "cache_bust": False, "prompt": "same every time"},
            ],
            "cold": {"idle": "15m"},
        }
    ).targets[0]
    assert isinstance(target, OpenAIChatTarget)
    probed = {t.scenario: t for t in target.probe_targets()}
    assert list(probed) == ["short", "long-prompt", "cached"]
    short, long, cached = (probed[n] for n in ("short", "long-prompt", "cached"))
    assert isinstance(short, OpenAIChatTarget) and isinstance(long, OpenAIChatTarget)
    assert isinstance(cached, OpenAIChatTarget)
    assert (short.max_tokens, short.messages, short.interval) == (4, target.messages, 15.0)
    assert long.messages is None and long.prompt == filler_prompt(2000)
    assert (long.timeout, long.interval) == (20.0, 60.0)
    # Debug output (/probe?debug=true) names the generated prompt instead of 8 KB of it.
    assert long.redacted()["prompt"] == "<generated: 2000 words, 7999 characters>"
    assert cached.cache_bust is False and cached.prompt == "same every time"
    assert cached.messages is None
    cold = target.cold_target()
    assert cold is not None and cold.scenario == "cold"
    assert (cold.timeout, cold.interval) == (60.0, 3600.0)
    # Every copy keeps the target's secrets and name; none has scenarios of its own.
    for copy in (*probed.values(), cold):
        assert copy.name == "t" and copy.scenarios == [] and copy.cold is None
        assert copy.probe_targets() == (copy,)
    assert target.probe_target("cached") is cached
    assert target.probe_target("cold") is None


def test_a_target_without_scenarios_is_its_default_scenario() -> None:
    target = make_config({"name": "t", "url": "http://127.0.0.1:1/v1"}).targets[0]
    assert target.probe_targets() == (target,)
    assert target.scenario == "default"
    assert target.cold_target() is None


def scenario_fingerprints(**changes: object) -> dict[str, str]:
    base: dict[str, object] = {
        "name": "t",
        "url": "http://127.0.0.1:1/v1",
        "scenarios": [{"name": "a"}, {"name": "b", "max_tokens": 2}],
        "cold": {"idle": "15m"},
    }
    target = make_config({**base, **changes}).targets[0]
    prints = {t.scenario: t.probe_fingerprint() for t in target.probe_targets()}
    cold = target.cold_target()
    if cold is not None:
        prints["cold"] = cold.probe_fingerprint()
    return prints


def test_a_scenario_fingerprint_moves_only_with_what_probes_it() -> None:
    before = scenario_fingerprints()
    one_changed = scenario_fingerprints(scenarios=[{"name": "a"}, {"name": "b", "max_tokens": 3}])
    assert one_changed["a"] == before["a"] and one_changed["cold"] == before["cold"]
    assert one_changed["b"] != before["b"]
    cold_changed = scenario_fingerprints(cold={"idle": "20m"})
    assert {k: v for k, v in cold_changed.items() if k != "cold"} == {
        k: v for k, v in before.items() if k != "cold"
    }
    assert cold_changed["cold"] != before["cold"]
    # The target's own fields reach every scenario.
    shared = scenario_fingerprints(prompt="other")
    assert all(shared[k] != before[k] for k in before)
