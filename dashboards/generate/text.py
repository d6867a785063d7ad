"""Panel descriptions: what the panel means, then what bad looks like."""

from __future__ import annotations

BAD = "Bad: "


def describe(means: str, bad: str) -> str:
    """A panel description in the form every panel uses (a test checks it)."""
    return f"{means}\n\n{BAD}{bad}"
