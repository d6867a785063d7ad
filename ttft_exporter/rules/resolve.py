"""Resolve the `slos:` section into selections of series.

For each target and each objective kind the first `slos.targets` entry that selects
the target and sets that kind wins. The rules follow the same order in PromQL: an
entry's rules select its selector's labels minus the selectors of the earlier
entries that set the same kind. A selector by labels thus covers a target added
later with the same labels without regenerating the rules; only a selector by name
lists names.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Generic, TypeVar

from ttft_exporter.rules.common import Context, RulesError, Selection, quote
from ttft_exporter.slo import (
    FluxSLOConfig,
    LatencyObjective,
    RatioObjective,
    RegressionConfig,
    Selector,
    TargetSLOConfig,
)

if TYPE_CHECKING:
    from ttft_exporter.config import Config

__all__ = ["Override", "Resolution", "SLOGroup", "SLOKind", "resolve", "selector_matchers"]

_V = TypeVar("_V")
_E = TypeVar("_E", TargetSLOConfig, FluxSLOConfig)


class SLOKind(enum.StrEnum):
    """The objective kinds; the value is the `sloth_slo` label."""

    TTFT = "ttft-latency"
    AVAILABILITY = "availability"
    TPOT = "tpot-latency"
    FLUX_CANARY = "flux-canary-propagation"
    FLUX_STREAM = "flux-stream-up"

    @property
    def is_flux(self) -> bool:
        """Whether members are Flux instances (`flux` label) rather than targets."""
        return self in (SLOKind.FLUX_CANARY, SLOKind.FLUX_STREAM)


@dataclass(frozen=True)
class SLOGroup:
    """One SLO: a kind, the series it reads and its objective."""

    kind: SLOKind
    service: str
    selection: Selection
    # The configured targets (Flux instances) it covers today: for comments and
    # descriptions only, the rules select by `selection`.
    members: tuple[str, ...]
    objective: Decimal
    period: float
    threshold: float | None = None

    @property
    def budget(self) -> Decimal:
        """The error budget, 1 - objective, exact."""
        return 1 - self.objective

    @property
    def sloth_id(self) -> str:
        """Sloth's SLO id: `<service>-<slo>`."""
        return f"{self.service}-{self.kind.value}"

    def ids(self) -> dict[str, str]:
        """Sloth's identity labels, on every rule of the SLO. The objective, budget
        and period are series of their own (slo:objective:ratio ...), never labels
        of the SLI: changing an objective must not restart the SLO's history."""
        return {
            "sloth_id": self.sloth_id,
            "sloth_service": self.service,
            "sloth_slo": self.kind.value,
        }


@dataclass(frozen=True)
class Override(Generic[_V]):
    """An alert parameter and the series it applies to."""

    value: _V
    selection: Selection
    members: tuple[str, ...]
    # The service name of the `slos:` entry it comes from, None for the default:
    # a label of the alert, so the rules of several entries stay distinct.
    service: str | None = None

    def labels(self) -> dict[str, str]:
        """Static labels of the alert rule for this parameter."""
        return {"sloth_service": self.service} if self.service else {}


@dataclass(frozen=True)
class Resolution:
    """Everything the rule families need to know about the config."""

    targets: tuple[str, ...]
    # Each target's static labels (not model and protocol), for LLMProbeAbsent.
    target_labels: tuple[tuple[str, dict[str, str]], ...]
    flux: tuple[str, ...]
    slos: tuple[SLOGroup, ...]
    # Alert parameters, one entry per `slos:` entry that sets one, then the default
    # for every other series.
    ttft_thresholds: tuple[Override[float], ...]
    regressions: tuple[Override[RegressionConfig], ...]
    canary_thresholds: tuple[Override[float], ...]


def selector_matchers(selector: Selector, member_label: str) -> tuple[str, ...]:
    """The PromQL matchers of a selector (PromQL regexes are anchored as fullmatch is)."""
    out = []
    if selector.name is not None:
        out.append(f"{member_label}={quote(selector.name)}")
    if selector.name_regex is not None:
        out.append(f"{member_label}=~{quote(selector.name_regex.pattern)}")
    out += [f"{key}={quote(value)}" for key, value in sorted(selector.labels.items())]
    return tuple(out)


@dataclass(frozen=True)
class _Picked(Generic[_E]):
    index: int
    entry: _E
    selection: Selection
    members: tuple[str, ...]


def _first_match(
    section: str,
    entries: Sequence[_E],
    sets: Callable[[_E], bool],
    members: Mapping[str, Mapping[str, str]],
    ctx: Context,
    member_label: str,
) -> tuple[list[_Picked[_E]], Selection, tuple[str, ...]]:
    """The entries that set something (`sets`), each with the series it wins, and the
    selection and members of the rest (the default)."""
    picked: list[_Picked[_E]] = []
    earlier: list[tuple[str, ...]] = []
    taken: set[str] = set()
    for index, entry in enumerate(entries):
        if not sets(entry):
            continue
        own: tuple[str, ...] = selector_matchers(entry.selector, member_label)
        if () in earlier:
            raise RulesError(
                f"slos.{section}[{index}] is never used: an earlier entry with an empty "
                "selector takes every member for the same objective"
            )
        won = tuple(
            sorted(
                name
                for name, labels in members.items()
                if name not in taken and entry.selector.matches(name, labels)
            )
        )
        taken.update(won)
        selection = Selection((ctx.job_matcher, *own), tuple(earlier))
        picked.append(_Picked(index, entry, selection, won))
        earlier.append(own)
    rest = tuple(sorted(set(members) - taken))
    return picked, Selection((ctx.job_matcher,), tuple(earlier)), rest


def _check_used(
    section: str, selectors: Sequence[Selector], members: Mapping[str, Mapping[str, str]]
) -> None:
    for index, selector in enumerate(selectors):
        if not any(selector.matches(name, labels) for name, labels in members.items()):
            noun = "Flux instance" if section == "flux" else "target"
            raise RulesError(
                f"slos.{section}[{index}].selector ({selector.describe()}) matches no "
                f"configured {noun}"
            )


def _sets_objective(objective_of: Callable[[_E], RatioObjective | None], entry: _E) -> bool:
    return objective_of(entry) is not None


def _slos(
    section: str,
    entries: Sequence[_E],
    kinds: Mapping[SLOKind, Callable[[_E], RatioObjective | None]],
    thresholds: Mapping[SLOKind, Callable[[_E], float]],
    members: Mapping[str, Mapping[str, str]],
    ctx: Context,
    default_period: float,
    claimed: Mapping[SLOKind, Callable[[_E], bool]] | None = None,
) -> list[SLOGroup]:
    claimed = claimed or {}
    member_label = "flux" if section == "flux" else "target"
    out = []
    for kind, objective_of in kinds.items():
        claims = claimed.get(kind, functools.partial(_sets_objective, objective_of))
        picked, _, _ = _first_match(section, entries, claims, members, ctx, member_label)
        for p in picked:
            objective = objective_of(p.entry)
            if objective is None:
                # It claims its targets (a TTFT threshold without an objective) but
                # sets no SLO: later entries do not get them.
                continue
            threshold = thresholds[kind](p.entry) if kind in thresholds else None
            out.append(
                SLOGroup(
                    kind=kind,
                    service=p.entry.service_name(),
                    selection=p.selection,
                    members=p.members,
                    objective=_dec(objective.objective),
                    period=objective.period or default_period,
                    threshold=threshold,
                )
            )
    return out


def _overrides(
    picked: list[_Picked[_E]],
    value: Callable[[_E], _V],
    default: _V,
    rest: Selection,
    rest_members: tuple[str, ...],
) -> tuple[Override[_V], ...]:
    out = [Override(value(p.entry), p.selection, p.members, p.entry.service_name()) for p in picked]
    if () not in rest.exclude:
        out.append(Override(default, rest, rest_members))
    return tuple(out)


class TTFTRatio(RatioObjective):
    """The objective part of a TTFT entry (its threshold is resolved separately)."""


def _ttft_objective(entry: TargetSLOConfig) -> TTFTRatio | None:
    if entry.ttft is None or entry.ttft.objective is None:
        return None
    return TTFTRatio(objective=entry.ttft.objective, period=entry.ttft.period)


def resolve(config: Config, ctx: Context | None = None) -> Resolution:
    """Which objectives and alert parameters apply to which series."""
    ctx = ctx or Context()
    slos = config.slos
    targets = {
        t.name: {"model": t.model, "protocol": t.protocol, **t.labels} for t in config.targets
    }
    # Flux instances have no labels of their own; selectors match them by name.
    fluxes: dict[str, dict[str, str]] = {f.name: {} for f in config.flux}
    _check_used("targets", [e.selector for e in slos.targets], targets)
    _check_used("flux", [e.selector for e in slos.flux], fluxes)

    def ttft_threshold(entry: TargetSLOConfig) -> float:
        assert entry.ttft is not None  # noqa: S101 - only asked where ttft is set
        return entry.ttft.threshold or slos.ttft_threshold

    def latency(objective: LatencyObjective | None) -> float:
        assert objective is not None  # noqa: S101
        return objective.threshold

    groups = _slos(
        "targets",
        slos.targets,
        {
            SLOKind.TTFT: _ttft_objective,
            SLOKind.AVAILABILITY: lambda e: e.availability,
            SLOKind.TPOT: lambda e: e.tpot,
        },
        {SLOKind.TTFT: ttft_threshold, SLOKind.TPOT: lambda e: latency(e.tpot)},
        targets,
        ctx,
        slos.period,
        # An entry with `ttft:` wins its targets' TTFT settings even without an
        # objective (a threshold-only entry keeps them out of a later TTFT SLO).
        {SLOKind.TTFT: lambda e: e.ttft is not None},
    )
    groups += _slos(
        "flux",
        slos.flux,
        {
            SLOKind.FLUX_CANARY: lambda e: e.canary_propagation,
            SLOKind.FLUX_STREAM: lambda e: e.stream_up,
        },
        {SLOKind.FLUX_CANARY: lambda e: latency(e.canary_propagation)},
        fluxes,
        ctx,
        slos.period,
    )

    ttft_picked, ttft_rest, ttft_rest_members = _first_match(
        "targets", slos.targets, lambda e: e.ttft is not None, targets, ctx, "target"
    )
    regression_picked, regression_rest, regression_rest_members = _first_match(
        "targets", slos.targets, lambda e: e.regression is not None, targets, ctx, "target"
    )

    def canary_threshold(entry: FluxSLOConfig) -> float | None:
        # Its own canary_threshold before its SLO's threshold.
        if entry.canary_threshold is not None:
            return entry.canary_threshold
        return entry.canary_propagation.threshold if entry.canary_propagation else None

    canary_picked, canary_rest, canary_rest_members = _first_match(
        "flux", slos.flux, lambda e: canary_threshold(e) is not None, fluxes, ctx, "flux"
    )

    def regression_of(entry: TargetSLOConfig) -> RegressionConfig:
        assert entry.regression is not None  # noqa: S101
        return entry.regression

    def canary_of(entry: FluxSLOConfig) -> float:
        value = canary_threshold(entry)
        assert value is not None  # noqa: S101
        return value

    return Resolution(
        targets=tuple(sorted(targets)),
        target_labels=tuple(
            sorted((t.name, dict(sorted(t.labels.items()))) for t in config.targets)
        ),
        flux=tuple(sorted(fluxes)),
        slos=tuple(groups),
        ttft_thresholds=_overrides(
            ttft_picked, ttft_threshold, slos.ttft_threshold, ttft_rest, ttft_rest_members
        ),
        regressions=_overrides(
            regression_picked,
            regression_of,
            slos.regression,
            regression_rest,
            regression_rest_members,
        ),
        canary_thresholds=_overrides(
            canary_picked,
            canary_of,
            slos.flux_canary_threshold,
            canary_rest,
            canary_rest_members,
        ),
    )


def _dec(value: float) -> Decimal:
    # str() first: Decimal(0.99) would carry the binary expansion of the float.
    return Decimal(str(value))
