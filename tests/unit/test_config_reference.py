"""docs/CONFIGURATION.md against the protocol registry: every registered protocol has
its section under `## target`, and the protocol sections sit at one heading level
(`###`, beside `header value` and `histograms`), so the reference reads as one list;
every code block is closed (an unclosed one swallows the sections after it)."""

from __future__ import annotations

import re
from pathlib import Path

from ttft_exporter.probes import PROTOCOL_NAMES

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "CONFIGURATION.md"


def target_section_headings() -> list[str]:
    """The headings between `## target` and the next `## ` heading, marks included."""
    lines = REFERENCE.read_text(encoding="utf-8").splitlines()
    start = lines.index("## target")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    # Fenced code (YAML comments start with `#`) is no heading.
    headings, fenced = [], False
    for line in lines[start + 1 : end]:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            headings.append(line)
    return headings


def test_every_protocol_has_a_section_at_the_same_level() -> None:
    headings = target_section_headings()
    assert all(h.startswith("### ") for h in headings), headings
    for protocol in PROTOCOL_NAMES:
        pattern = re.compile(rf"(?<![\w-]){re.escape(protocol)}(?![\w-])")
        assert any(pattern.search(h) for h in headings), f"no section names {protocol}"


def test_every_code_block_is_closed() -> None:
    # Every block opens with its language (```yaml) and closes with a bare fence: a
    # fence with a language where a close was due is an unclosed block.
    fences = [
        (number, line)
        for number, line in enumerate(REFERENCE.read_text(encoding="utf-8").splitlines(), 1)
        if line.startswith("```")
    ]
    for index, (number, line) in enumerate(fences):
        opening = index % 2 == 0
        assert (line != "```") is opening, f"line {number}: {line!r}"
    assert len(fences) % 2 == 0, "the last code block is not closed"
