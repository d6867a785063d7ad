"""Building blocks shared by the rule families: durations (scalable, for the
shortened test copy), selections of series, PromQL literals and matchers, and alert
annotations."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ttft_exporter.slo import DEFAULT_JOB, DEFAULT_RUNBOOK_URL

__all__ = [
    "AGGREGATED_AWAY",
    "COLD_SCENARIO",
    "SCENARIO",
    "Context",
    "Group",
    "Rule",
    "RulesError",
    "Selection",
    "alert",
    "format_duration",
    "lines",
    "matchers",
    "member_matcher",
    "number",
    "prom_float",
    "quote",
    "record",
    "without",
]

# The only labels a rule aggregates away: which exporter replica (instance, pod)
# probed. Everything else stays: the target's static labels (team, env) and the
# scrape's topology (job, namespace, cluster), so every alert can be routed.
AGGREGATED_AWAY = ("instance", "pod")

# Every probe series carries `scenario` (#10): `default`, a configured name, or
# `cold` for the probe sent after the target was held idle. A cold probe is slow on
# purpose (scale from zero, model swapped out), so the latency rules never read it;
# the availability rules do, since a cold start that fails is a real failure.
SCENARIO = "scenario"
COLD_SCENARIO = "cold"

Rule = dict[str, Any]

# Prometheus' own duration formatting (model.Duration.String): years and weeks only
# when exact, so 28d is `4w` (Sloth's `ratio_rate4w`), 30d stays `30d`.
_UNITS = (
    ("y", 365 * 86400, True),
    ("w", 7 * 86400, True),
    ("d", 86400, False),
    ("h", 3600, False),
    ("m", 60, False),
    ("s", 1, False),
)
# RE2 metacharacters, escaped when a literal value goes into a `=~` matcher.
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
    """A Prometheus duration as Prometheus prints it: 300 -> `5m`, 4320 -> `1h12m`,
    28d -> `4w`, 0.5 -> `500ms`."""
    if seconds <= 0:
        raise ValueError(f"duration must be above 0, got {seconds}")
    millis = round(seconds * 1000)
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    out = ""
    for unit, size, exact in _UNITS:
        if exact and whole % size:
            continue
        if whole >= size:
            out += f"{whole // size}{unit}"
            whole %= size
    return out


def quote(value: str) -> str:
    """A PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Selection:
    """Which series a rule reads: every matcher of `include` holds, and no series
    that also matches one of `exclude` (each a conjunction of matchers: the
    selectors of earlier `slos:` entries, which win for their targets).

    An exclusion of one matcher folds into a negative matcher; a conjunction of
    several becomes `unless` over the same expression with those matchers added,
    which removes exactly the series that match them all.
    """

    include: tuple[str, ...]
    exclude: tuple[tuple[str, ...], ...] = ()

    def _folded(self) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
        include = list(self.include)
        rest = []
        for conjunction in self.exclude:
            if len(conjunction) == 1:
                include.append(_negate(conjunction[0]))
            else:
                rest.append(conjunction)
        return tuple(include), tuple(rest)

    def apply(self, build: Callable[[str], str], *extra: str) -> str:
        """`build(matchers)` for this selection, e.g. `lambda m: f"rate(x{m}[5m])"`;
        `extra` matchers (`le="0.8"`) are added to every branch."""
        include, rest = self._folded()
        main = build(matchers(*include, *extra))
        if not rest:
            return main
        parts = [main, *(build(matchers(*include, *extra, *c)) for c in rest)]
        return "(" + " unless ".join(parts) + ")"

    def warm(self) -> Selection:
        """This selection without the cold probe's series: what every latency-kind
        rule (TTFT/TTFOT quantiles, decode rate, latency SLIs, regression alerts)
        reads. The one place the `scenario!="cold"` matcher is built."""
        return Selection((*self.include, f"{SCENARIO}!={quote(COLD_SCENARIO)}"), self.exclude)

    def series(self, metric: str, *extra: str, offset: str | None = None) -> str:
        """An instant vector selector, optionally `offset` back in time."""
        shift = f" offset {offset}" if offset else ""
        return self.apply(lambda m: f"{metric}{m}{shift}", *extra)

    def rate(self, metric: str, window: str, *extra: str) -> str:
        """`rate()` of a counter over `window`."""
        return self.apply(lambda m: f"rate({metric}{m}[{window}])", *extra)

    def over_time(self, function: str, metric: str, window: str, *extra: str) -> str:
        """`<function>_over_time()` of a gauge over `window`."""
        return self.apply(lambda m: f"{function}_over_time({metric}{m}[{window}])", *extra)


def _negate(matcher: str) -> str:
    for op, negated in (("!=", "="), ("!~", "=~"), ("=~", "!~"), ("=", "!=")):
        name, sep, value = matcher.partition(op)
        if sep and name.isidentifier():
            return f"{name}{negated}{value}"
    raise ValueError(f"not a label matcher: {matcher!r}")


@dataclass(frozen=True)
class Context:
    """What every rule family needs besides the SLOs: durations (multiplied by
    `scale` for the shortened end-to-end copy; names and labels keep the nominal
    window), the job selector and the runbook URL pattern."""

    scale: float = 1.0
    job: str = DEFAULT_JOB
    runbook_url: str = DEFAULT_RUNBOOK_URL

    def __call__(self, seconds: float) -> str:
        """A duration used in an expression or `for:`."""
        return format_duration(seconds * self.scale)

    @property
    def job_matcher(self) -> str:
        """The matcher every rule reads the exporter's series with: an equality for a
        plain name, so absent() carries the job label too."""
        if _RE2_SPECIAL.search(self.job):
            return f"job=~{quote(self.job)}"
        return f"job={quote(self.job)}"

    def everything(self) -> Selection:
        """Every series of the exporter's job."""
        return Selection((self.job_matcher,))

    def warm(self) -> Selection:
        """Every series of the exporter's job but the cold probe's (Selection.warm)."""
        return self.everything().warm()

    def runbook(self, alertname: str) -> str:
        """The runbook_url annotation of an alert."""
        return self.runbook_url.replace("{alertname}", alertname.lower())


def without(*extra: str) -> str:
    """`without (instance, pod, ...)`: the aggregation every rule uses."""
    return f"without ({', '.join((*AGGREGATED_AWAY, *extra))})"


def prom_float(value: float) -> str:
    """A float the way the exporter writes it (`le="0.8"`, `le="1.0"`), so `le`
    matchers hit the exposed bucket exactly; also used in annotations."""
    return repr(float(value))


def number(value: Decimal | float) -> str:
    """A PromQL number literal without binary noise (0.01, not 0.010000000000000009)."""
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text if "." not in text else text.rstrip("0").rstrip(".")
    return repr(float(value))


def member_matcher(label: str, values: Sequence[str], *, negate: bool = False) -> str:
    """`label="a"` for one value, `label=~"a|b"` for several (negated with !=, !~)."""
    if len(values) == 1:
        return f"{label}{'!=' if negate else '='}{quote(values[0])}"
    pattern = "|".join(_RE2_SPECIAL.sub(r"\\\1", v) for v in values)
    return f"{label}{'!~' if negate else '=~'}{quote(pattern)}"


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
            out += [f"{k}={quote(v)}" for k, v in part.items()]
    return "{" + ",".join(out) + "}" if out else ""


def record(name: str, expr: str, labels: Mapping[str, str] | None = None) -> Rule:
    """A recording rule."""
    rule: Rule = {"record": name, "expr": expr}
    if labels:
        rule["labels"] = dict(labels)
    return rule


def alert(
    ctx: Context,
    name: str,
    expr: str,
    *,
    for_: str | None,
    severity: str,
    summary: str,
    description: str,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Rule:
    """An alerting rule with the annotations every alert must have. Parameters
    (thresholds, factors) go into `annotations`, never into labels: a label is part
    of the alert's identity, and changing a threshold must not make a new alert."""
    if severity not in ("critical", "warning"):
        raise ValueError(f"severity must be critical or warning, got {severity!r}")
    rule: Rule = {"alert": name, "expr": expr}
    if for_ is not None:
        rule["for"] = for_
    rule["labels"] = {"severity": severity, **(labels or {})}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        **(annotations or {}),
        "runbook_url": ctx.runbook(name),
    }
    return rule


def lines(*parts: str) -> str:
    """A multi-line expression (rendered as a YAML block)."""
    return "\n".join(parts)
