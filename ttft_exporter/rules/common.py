"""Building blocks shared by the rule families: durations (scalable, for the
shortened test copy), PromQL literals and matchers, and alert annotations."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

__all__ = [
    "BY_FLUX",
    "BY_TARGET",
    "RUNBOOK_BASE",
    "Group",
    "Rule",
    "RulesError",
    "Timing",
    "alert",
    "format_duration",
    "lines",
    "matchers",
    "member_matcher",
    "number",
    "prom_float",
    "record",
    "with_overrides",
]

# Where every alert's runbook_url points; the anchor is the lower-cased alert name,
# which is how GitHub names the `## AlertName` heading of docs/runbooks.md.
RUNBOOK_BASE = "https://github.com/ttft-exporter/ttft_exporter/blob/main/docs/runbooks.md"
# Probe series are aggregated to these labels: exporter replicas (instance) and
# static labels fold together, so an SLO is about the endpoint, not the prober.
BY_TARGET = "target, model, protocol"
BY_FLUX = "flux"

Rule = dict[str, Any]
_V = TypeVar("_V")

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
# RE2 metacharacters; target names only ever contain '.', but selectors may be reused.
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


class RulesError(ValueError):
    """The config cannot be turned into rules (e.g. a selector matches nothing)."""


@dataclass
class Group:
    """One rule group: a name and its rules, in evaluation order."""

    name: str
    rules: list[Rule] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The group as it appears in a rule file."""
        return {"name": self.name, "rules": list(self.rules)}


def format_duration(seconds: float) -> str:
    """A Prometheus duration: 300 -> `5m`, 4320 -> `1h12m`, 0.5 -> `500ms`."""
    if seconds <= 0:
        raise ValueError(f"duration must be above 0, got {seconds}")
    millis = round(seconds * 1000)
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    out = ""
    for unit, size in _UNITS:
        if whole >= size:
            out += f"{whole // size}{unit}"
            whole %= size
    return out


@dataclass(frozen=True)
class Timing:
    """Durations used in expressions and `for:`, multiplied by `scale`.

    Rule names and labels keep the nominal window (`p95_5m`, `slo_window: 1h`), so the
    shortened copy used by the end-to-end test has the same names as production.
    """

    scale: float = 1.0

    def __call__(self, seconds: float) -> str:
        return format_duration(seconds * self.scale)


def prom_float(value: float) -> str:
    """A float the way the exporter writes it (`le="0.8"`, `le="1.0"`), so `le`
    matchers hit the exposed bucket exactly; also used for threshold labels."""
    return repr(float(value))


def number(value: Decimal | float) -> str:
    """A PromQL number literal without binary noise (0.01, not 0.010000000000000009)."""
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text if "." not in text else text.rstrip("0").rstrip(".")
    return repr(float(value))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def member_matcher(label: str, values: Sequence[str], *, negate: bool = False) -> str:
    """`label="a"` for one value, `label=~"a|b"` for several (negated with !=, !~)."""
    if len(values) == 1:
        return f"{label}{'!=' if negate else '='}{_quote(values[0])}"
    pattern = "|".join(_RE2_SPECIAL.sub(r"\\\1", v) for v in values)
    return f"{label}{'!~' if negate else '=~'}{_quote(pattern)}"


def matchers(*parts: str | Mapping[str, str] | None) -> str:
    """`{a="1",b=~"x|y"}` from ready-made matchers and label dicts; `` if empty."""
    out: list[str] = []
    for part in parts:
        if part is None:
            continue
        if isinstance(part, str):
            if part:
                out.append(part)
        else:
            out += [f"{k}={_quote(v)}" for k, v in part.items()]
    return "{" + ",".join(out) + "}" if out else ""


def record(name: str, expr: str, labels: Mapping[str, str] | None = None) -> Rule:
    """A recording rule."""
    rule: Rule = {"record": name, "expr": expr}
    if labels:
        rule["labels"] = dict(labels)
    return rule


def alert(
    name: str,
    expr: str,
    *,
    for_: str,
    severity: str,
    summary: str,
    description: str,
    labels: Mapping[str, str] | None = None,
) -> Rule:
    """An alerting rule with the annotations every alert must have."""
    if severity not in ("critical", "warning"):
        raise ValueError(f"severity must be critical or warning, got {severity!r}")
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, **(labels or {})},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{RUNBOOK_BASE}#{name.lower()}",
        },
    }


def lines(*parts: str) -> str:
    """A multi-line expression (rendered as a YAML block)."""
    return "\n".join(parts)


def with_overrides(
    label: str, default: _V, overrides: Sequence[tuple[_V, tuple[str, ...]]]
) -> list[tuple[_V, str]]:
    """(value, matcher) pairs for a parameter with per-member overrides: first the
    default for every member without one (`label!~"a|b"`, which also covers members
    of other configs these rules do not know), then one pair per override."""
    special = sorted(name for _, names in overrides for name in names)
    rest = member_matcher(label, special, negate=True) if special else ""
    return [(default, rest), *((value, member_matcher(label, names)) for value, names in overrides)]
