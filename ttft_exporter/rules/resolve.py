"""Resolve the `slos:` section against the configured targets and Flux instances.

For each target and each objective kind the first `slos.targets` entry that selects
the target and sets that kind wins. Targets with identical objectives are then
grouped, so one set of rules (with a `target=~"a|b"` matcher) serves all of them.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, TypeVar

from ttft_exporter.rules.common import RulesError, format_duration, prom_float
from ttft_exporter.slo import RegressionConfig, Selector, SLOsConfig

if TYPE_CHECKING:
    from ttft_exporter.config import Config

__all__ = ["Resolution", "SLOGroup", "SLOKind", "resolve"]

_T = TypeVar("_T")


class SLOKind(enum.StrEnum):
    """The objective kinds; the value is the `slo` label."""

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
    """One SLO shared by `members` (target or Flux instance names)."""

    kind: SLOKind
    members: tuple[str, ...]
    objective: Decimal
    period: float
    threshold: float | None = None

    @property
    def budget(self) -> Decimal:
        """The error budget, 1 - objective, exact."""
        return 1 - self.objective

    @property
    def member_label(self) -> str:
        """The label that names a member."""
        return "flux" if self.kind.is_flux else "target"

    def ids(self) -> dict[str, str]:
        """Static labels identifying the SLO on every rule it produces. They also keep
        rules of different SLOs apart for promtool's duplicate-rule lint."""
        labels = {"slo": self.kind.value, "slo_objective": str(self.objective)}
        if self.threshold is not None:
            labels["slo_threshold"] = prom_float(self.threshold)
        labels["slo_period"] = format_duration(self.period)
        return labels


@dataclass(frozen=True)
class Resolution:
    """Everything the rule families need to know about the config."""

    targets: tuple[str, ...]
    flux: tuple[str, ...]
    slos: tuple[SLOGroup, ...]
    # Alert parameters by value, each with the members that use it; the value of
    # `slos` itself (the default) holds the members without their own.
    ttft_thresholds: tuple[tuple[float, tuple[str, ...]], ...]
    regressions: tuple[tuple[RegressionConfig, tuple[str, ...]], ...]
    canary_thresholds: tuple[tuple[float, tuple[str, ...]], ...]


def _check_used(
    kind: str, selectors: Sequence[Selector], members: Mapping[str, Mapping[str, str]]
) -> None:
    for index, selector in enumerate(selectors):
        if not any(selector.matches(name, labels) for name, labels in members.items()):
            noun = "Flux instance" if kind == "flux" else "target"
            raise RulesError(
                f"slos.{kind}[{index}].selector ({selector.describe()}) matches no "
                f"configured {noun}"
            )


def _grouped(values: Mapping[str, _T]) -> tuple[tuple[_T, tuple[str, ...]], ...]:
    by_value: dict[_T, list[str]] = defaultdict(list)
    for member, value in values.items():
        by_value[value].append(member)
    return tuple((value, tuple(sorted(names))) for value, names in by_value.items())


_Key = tuple[SLOKind, Decimal, float, float | None]


def _resolve_targets(
    slos: SLOsConfig,
    targets: Mapping[str, Mapping[str, str]],
    groups: dict[_Key, list[str]],
) -> tuple[dict[str, float], dict[str, RegressionConfig]]:
    ttft_threshold: dict[str, float] = {}
    regression: dict[str, RegressionConfig] = {}
    for name, labels in targets.items():
        entries = [e for e in slos.targets if e.selector.matches(name, labels)]
        ttft = next((e.ttft for e in entries if e.ttft is not None), None)
        threshold = slos.ttft_threshold
        if ttft is not None:
            threshold = ttft.threshold if ttft.threshold is not None else slos.ttft_threshold
            if ttft.objective is not None:
                period = ttft.period or slos.period
                groups[(SLOKind.TTFT, _dec(ttft.objective), period, threshold)].append(name)
        if threshold != slos.ttft_threshold:
            ttft_threshold[name] = threshold
        available = next((e.availability for e in entries if e.availability is not None), None)
        if available is not None:
            period = available.period or slos.period
            key: _Key = (SLOKind.AVAILABILITY, _dec(available.objective), period, None)
            groups[key].append(name)
        tpot = next((e.tpot for e in entries if e.tpot is not None), None)
        if tpot is not None:
            period = tpot.period or slos.period
            groups[(SLOKind.TPOT, _dec(tpot.objective), period, tpot.threshold)].append(name)
        own = next((e.regression for e in entries if e.regression is not None), None)
        if own is not None and own != slos.regression:
            regression[name] = own
    return ttft_threshold, regression


def _resolve_flux(
    slos: SLOsConfig, fluxes: Mapping[str, Mapping[str, str]], groups: dict[_Key, list[str]]
) -> dict[str, float]:
    canary_threshold: dict[str, float] = {}
    for name, labels in fluxes.items():
        entries = [e for e in slos.flux if e.selector.matches(name, labels)]
        canary = next((e.canary_propagation for e in entries if e.canary_propagation), None)
        if canary is not None:
            period = canary.period or slos.period
            key: _Key = (SLOKind.FLUX_CANARY, _dec(canary.objective), period, canary.threshold)
            groups[key].append(name)
        up = next((e.stream_up for e in entries if e.stream_up is not None), None)
        if up is not None:
            period = up.period or slos.period
            groups[(SLOKind.FLUX_STREAM, _dec(up.objective), period, None)].append(name)
        # The alert threshold: the first entry naming one, its own canary_threshold
        # before its SLO's threshold.
        for entry in entries:
            value = entry.canary_threshold or (
                entry.canary_propagation.threshold if entry.canary_propagation else None
            )
            if value is not None:
                if value != slos.flux_canary_threshold:
                    canary_threshold[name] = value
                break
    return canary_threshold


def resolve(config: Config) -> Resolution:
    """Which objectives and alert parameters apply to which targets."""
    slos = config.slos
    targets = {
        t.name: {"model": t.model, "protocol": t.protocol, **t.labels} for t in config.targets
    }
    # Flux instances have no labels of their own; selectors match them by name.
    fluxes: dict[str, dict[str, str]] = {f.name: {} for f in config.flux}
    _check_used("targets", [e.selector for e in slos.targets], targets)
    _check_used("flux", [e.selector for e in slos.flux], fluxes)
    groups: dict[_Key, list[str]] = defaultdict(list)
    ttft_threshold, regression = _resolve_targets(slos, targets, groups)
    canary_threshold = _resolve_flux(slos, fluxes, groups)
    kinds = list(SLOKind)
    slo_groups = sorted(
        (
            SLOGroup(kind, tuple(sorted(members)), objective, period, threshold)
            for (kind, objective, period, threshold), members in groups.items()
        ),
        key=lambda g: (kinds.index(g.kind), g.members, g.objective),
    )
    return Resolution(
        targets=tuple(sorted(targets)),
        flux=tuple(sorted(fluxes)),
        slos=tuple(slo_groups),
        ttft_thresholds=tuple(sorted(_grouped(ttft_threshold))),
        regressions=tuple(
            sorted(_grouped(regression), key=lambda item: (item[0].factor, item[0].floor))
        ),
        canary_thresholds=tuple(sorted(_grouped(canary_threshold))),
    )


def _dec(value: float) -> Decimal:
    # str() first: Decimal(0.99) would carry the binary expansion of the float.
    return Decimal(str(value))
