"""Service level objectives: the `slos:` section of the config.

Each entry of `slos.targets` (and `slos.flux`) selects targets (Flux instances) and
sets objectives for them. For every target and every objective kind the *first*
entry that selects the target and sets that kind wins, so specific entries go first
and a catch-all entry last, as in an Alertmanager routing tree:

```yaml
slos:
  targets:
    - selector: {name: ollama-qwen}
      ttft: {threshold: 2s}            # alert threshold only, no burn-rate SLO
    - selector: {labels: {env: prod}}
      ttft: {objective: 0.99, threshold: 800ms}
      availability: {objective: 0.995}
```

Every threshold becomes a histogram bucket boundary of the targets it applies to
(`SLOsConfig.target_thresholds()`), so each latency SLI is an exact bucket ratio
instead of an interpolation. Which rules come out of this section is the business of
`ttft_exporter.rules`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ttft_exporter.durations import Duration
from ttft_exporter.validation import LABEL_NAME, Regex

__all__ = [
    "DEFAULT_FLUX_CANARY_THRESHOLD",
    "DEFAULT_JOB",
    "DEFAULT_PERIOD",
    "DEFAULT_RUNBOOK_URL",
    "DEFAULT_TTFT_THRESHOLD",
    "FluxSLOConfig",
    "LatencyObjective",
    "RatioObjective",
    "RegressionConfig",
    "SLOsConfig",
    "Selector",
    "TTFTObjective",
    "TargetSLOConfig",
]

DEFAULT_PERIOD = 28 * 86400.0
# The seed's fifth golden signal: p95 TTFT above 800 ms is a user-visible regression
# for interactive chat (0.8 is also a default latency bucket boundary).
DEFAULT_TTFT_THRESHOLD = 0.8
DEFAULT_FLUX_CANARY_THRESHOLD = 2.0
# The job name the Helm chart and the README's scrape config give the exporter.
DEFAULT_JOB = "ttft-exporter"
# `{alertname}` becomes the lower-cased alert name: the anchor GitHub gives the
# `## AlertName` heading of docs/runbooks.md (the mixins' runbookURLPattern).
DEFAULT_RUNBOOK_URL = (
    "https://github.com/ttft-exporter/ttft_exporter/blob/main/docs/runbooks.md#{alertname}"
)
# A Sloth service name: it becomes part of rule group names and the sloth_id label.
_SERVICE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")
# The shortest period the slowest burn-rate window pair (3d long window) fits in.
_MIN_PERIOD = 3 * 86400.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _check_objective(value: float) -> float:
    if not 0 < value < 1:
        raise ValueError("must be a ratio between 0 and 1 (exclusive), e.g. 0.99")
    # The error budget is written into PromQL as a decimal literal; more than 6
    # significant decimals is a typo rather than an objective.
    if len(Decimal(str(value)).as_tuple().digits) > 6:
        raise ValueError("use at most 6 significant digits, e.g. 0.9995")
    return value


def _check_period(value: float) -> float:
    if value < _MIN_PERIOD:
        raise ValueError("must be at least 3d (the longest burn-rate window)")
    if value != int(value):
        raise ValueError("must be a whole number of seconds")
    return value


def _check_threshold(value: float) -> float:
    if value <= 0:
        raise ValueError("must be above 0")
    return value


# Reusable field types, so every objective, period and threshold is checked alike.
Objective = Annotated[float, AfterValidator(_check_objective)]
Period = Annotated[Duration, AfterValidator(_check_period)]
Threshold = Annotated[Duration, AfterValidator(_check_threshold)]


class Selector(_Strict):
    """Which targets (or Flux instances) an SLO entry applies to. Every field given
    must match; an empty selector matches everything."""

    name: str | None = Field(None, description="Exact target name.")
    name_regex: Regex | None = Field(
        None,
        description="Regular expression (RE2, as in PromQL) the whole target name must match.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Label values that must all be equal: static labels, model, protocol.",
    )

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not LABEL_NAME.fullmatch(key):
                raise ValueError(f"invalid label name {key!r}")
        return value

    @model_validator(mode="after")
    def _one_name(self) -> Self:
        if self.name is not None and self.name_regex is not None:
            raise ValueError("set name or name_regex, not both")
        return self

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        """Whether a target (instance) of that name and labels is selected."""
        if self.name is not None and name != self.name:
            return False
        if self.name_regex is not None and not self.name_regex.fullmatch(name):
            return False
        return all(labels.get(k) == v for k, v in self.labels.items())

    def default_service(self) -> str | None:
        """The Sloth service name an entry with this selector gets unless it names
        one: the target name, the label values (`env-prod`), `all` for an empty
        selector; None for a name_regex (which has no readable name)."""
        if self.name_regex is not None:
            return None
        parts = [self.name] if self.name is not None else []
        parts += [f"{k}-{v}" for k, v in sorted(self.labels.items())]
        slug = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")[:64].strip("-")
        return slug or "all"

    def describe(self) -> str:
        """A short human form, for error messages."""
        parts = []
        if self.name is not None:
            parts.append(f"name={self.name!r}")
        if self.name_regex is not None:
            parts.append(f"name_regex={self.name_regex.pattern!r}")
        parts += [f"{k}={v!r}" for k, v in sorted(self.labels.items())]
        return ", ".join(parts) or "everything"


class RatioObjective(_Strict):
    """An objective on a ratio of good events (availability, Flux stream up)."""

    objective: Objective = Field(description="Target ratio of good events, e.g. 0.995.")
    period: Period | None = Field(None, description="SLO period; default slos.period.")


class LatencyObjective(RatioObjective):
    """The ratio of events at or below a latency threshold (TPOT, Flux canary)."""

    threshold: Threshold = Field(
        description="Latency an event must not exceed to be good; becomes a bucket boundary."
    )


class TTFTObjective(_Strict):
    """TTFT threshold of a target, and optionally an SLO on it. Without `objective`
    only the TTFTLatencyRegression alert threshold is set."""

    threshold: Threshold | None = Field(
        None, description="TTFT threshold; default slos.ttft_threshold."
    )
    objective: Objective | None = Field(
        None, description="Ratio of successful probes with TTFT <= threshold."
    )
    period: Period | None = Field(None, description="SLO period; default slos.period.")


class RegressionConfig(_Strict):
    """When p95 TTFT counts as regressed against its own history (TTFTRelativeRegression)."""

    factor: float = Field(
        1.5,
        gt=1,
        le=100,
        description="p95 TTFT over 30m must exceed factor x both baselines.",
    )
    floor: Threshold = Field(
        0.25,
        description="...and exceed this, so a fast endpoint going 40 ms -> 80 ms does not alert.",
    )


def _check_service(value: str | None) -> str | None:
    if value is not None and not _SERVICE.fullmatch(value):
        raise ValueError(
            "must be lower-case letters, digits and '-', starting and ending with a "
            "letter or digit (at most 64 characters)"
        )
    return value


def _service_name(service: str | None, selector: Selector) -> str:
    name = service or selector.default_service()
    # The model validator of SLOsConfig reports the missing name first.
    return name or "unnamed"


class _Entry(_Strict):
    """What every `slos:` entry has: a selector and the Sloth service its SLOs form."""

    selector: Selector = Field(default_factory=Selector)
    service: str | None = Field(
        None,
        description="Sloth service name of the SLOs of this entry (sloth_service label); "
        "default: derived from the selector (the target name, or the label values as "
        "`env-prod`). Required with name_regex.",
    )

    @field_validator("service")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        return _check_service(value)

    def service_name(self) -> str:
        """The sloth_service of this entry's SLOs."""
        return _service_name(self.service, self.selector)

    def objective_kinds(self) -> tuple[str, ...]:
        """The SLO kinds this entry sets (as `sloth_slo` label values)."""
        raise NotImplementedError


class TargetSLOConfig(_Entry):
    """Objectives for the targets a selector picks."""

    ttft: TTFTObjective | None = None
    availability: RatioObjective | None = Field(None, description="Ratio of probes that succeed.")
    tpot: LatencyObjective | None = Field(
        None, description="Ratio of probes with time per output token <= threshold."
    )
    regression: RegressionConfig | None = Field(
        None, description="Overrides slos.regression for these targets."
    )

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not any((self.ttft, self.availability, self.tpot, self.regression)):
            raise ValueError("set at least one of ttft, availability, tpot, regression")
        return self

    def objective_kinds(self) -> tuple[str, ...]:
        """The SLO kinds this entry sets (as `slo` label values)."""
        kinds = []
        if self.ttft is not None and self.ttft.objective is not None:
            kinds.append("ttft-latency")
        if self.availability is not None:
            kinds.append("availability")
        if self.tpot is not None:
            kinds.append("tpot-latency")
        return tuple(kinds)


class FluxSLOConfig(_Entry):
    """Objectives for the Flux instances a selector picks."""

    canary_propagation: LatencyObjective | None = Field(
        None, description="Ratio of canary events seen on the stream within threshold."
    )
    stream_up: RatioObjective | None = Field(
        None, description="Ratio of time the stream is connected and not stale."
    )
    canary_threshold: Threshold | None = Field(
        None,
        description="FluxCanaryPropagationSlow threshold without an SLO; default: the "
        "canary_propagation threshold, else slos.flux_canary_threshold.",
    )

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not any((self.canary_propagation, self.stream_up, self.canary_threshold)):
            raise ValueError("set at least one of canary_propagation, stream_up, canary_threshold")
        return self

    def objective_kinds(self) -> tuple[str, ...]:
        """The SLO kinds this entry sets (as `slo` label values)."""
        kinds = []
        if self.canary_propagation is not None:
            kinds.append("flux-canary-propagation")
        if self.stream_up is not None:
            kinds.append("flux-stream-up")
        return tuple(kinds)


class SLOsConfig(_Strict):
    """Service level objectives and alert tunables; empty by default (the rules then
    carry only the default thresholds)."""

    period: Period = Field(DEFAULT_PERIOD, description="Default SLO period (error budget window).")
    ttft_threshold: Threshold = Field(
        DEFAULT_TTFT_THRESHOLD,
        description="TTFTLatencyRegression threshold for targets without their own.",
    )
    flux_canary_threshold: Threshold = Field(
        DEFAULT_FLUX_CANARY_THRESHOLD,
        description="FluxCanaryPropagationSlow threshold for instances without their own.",
    )
    regression: RegressionConfig = Field(default_factory=RegressionConfig)
    tokens_per_second_drop: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="TokensPerSecondDrop fires below this fraction of both baselines.",
    )
    flux_event_rate_drop: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="FluxEventRateDrop fires below this fraction of both baselines.",
    )
    failure_ratio: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="LLMProbeFailing / FluxCanaryFailing fire above this failure ratio.",
    )
    job: str = Field(
        DEFAULT_JOB,
        min_length=1,
        description="Regular expression (RE2, anchored) matching the Prometheus job label "
        "of the exporter's series; every generated rule selects it, so the rules are safe "
        "in a Prometheus that scrapes other exporters. `--rules.job` overrides it.",
    )
    runbook_url: str = Field(
        DEFAULT_RUNBOOK_URL,
        min_length=1,
        description="runbook_url annotation of every alert; `{alertname}` becomes the "
        "lower-cased alert name. `--rules.runbook-url` overrides it.",
    )
    ttft_regression_severity: Literal["critical", "warning"] = Field(
        "warning",
        description="Severity of TTFTLatencyRegression (p95 of a few synthetic probes over "
        "5m): a ticket by default; the page comes from the burn-rate alert.",
    )
    targets: list[TargetSLOConfig] = Field(default_factory=list)
    flux: list[FluxSLOConfig] = Field(default_factory=list)

    @field_validator("job")
    @classmethod
    def _job_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _unique_slos(self) -> Self:
        # sloth_id = <service>-<slo kind> names one SLO: its rule groups and series.
        problems = []
        sections: tuple[tuple[str, Sequence[TargetSLOConfig | FluxSLOConfig]], ...] = (
            ("targets", self.targets),
            ("flux", self.flux),
        )
        for section, entries in sections:
            seen: dict[tuple[str, str], int] = {}
            for index, entry in enumerate(entries):
                if entry.service is None and entry.selector.default_service() is None:
                    problems.append(f"{section}[{index}].service: required with name_regex")
                    continue
                for kind in entry.objective_kinds():
                    key = (entry.service_name(), kind)
                    if key in seen:
                        problems.append(
                            f"{section}[{index}].service: {kind} SLO of service "
                            f"{key[0]!r} is already defined by {section}[{seen[key]}]; "
                            "give one of them its own service name"
                        )
                    seen.setdefault(key, index)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def thresholds(self) -> dict[str, list[float]]:
        """Thresholds (seconds) by bucket set, to become bucket boundaries:
        `latency` (TTFT), `inter_token` (TPOT) and `flux_canary` (canary propagation)."""
        latency = {self.ttft_threshold}
        inter_token: set[float] = set()
        canary = {self.flux_canary_threshold}
        for entry in self.targets:
            if entry.ttft is not None and entry.ttft.threshold is not None:
                latency.add(entry.ttft.threshold)
            if entry.tpot is not None:
                inter_token.add(entry.tpot.threshold)
        for flux in self.flux:
            if flux.canary_propagation is not None:
                canary.add(flux.canary_propagation.threshold)
            if flux.canary_threshold is not None:
                canary.add(flux.canary_threshold)
        out = {"latency": sorted(latency), "flux_canary": sorted(canary)}
        if inter_token:
            out["inter_token"] = sorted(inter_token)
        return out

    def target_thresholds(self, name: str, labels: Mapping[str, str]) -> dict[str, list[float]]:
        """The thresholds of one target (its `labels`: static ones, model, protocol),
        by bucket set, by the first-match rule the rules follow: the TTFT threshold of
        the first entry selecting it that sets `ttft` (else `ttft_threshold`), and the
        TPOT threshold of the first one that sets `tpot`, if any. Only these become
        boundaries of the target's histograms."""
        latency = self.ttft_threshold
        for entry in self.targets:
            if entry.ttft is not None and entry.selector.matches(name, labels):
                latency = entry.ttft.threshold or self.ttft_threshold
                break
        out = {"latency": [latency]}
        for entry in self.targets:
            if entry.tpot is not None and entry.selector.matches(name, labels):
                out["inter_token"] = [entry.tpot.threshold]
                break
        return out
