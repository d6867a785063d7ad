"""The cost guard (#10): per-target prices (`cost:`) turned into a cost counter, and a
daily token (or cost) budget (`budget:`) that pauses a target's probing until the next
00:00 UTC once spent.

`ProbeBudget` is one ledger for the whole exporter, keyed by target name, so what a
target spent today survives a reload (a changed target restarts its loop, the ledger
stays): a reload cannot be used to reset a budget. The target runner asks `admit()`
before each scheduled probe; the executor calls `charge()` after each result,
scheduled or ad-hoc. Only the UTC day comes from the wall clock (injected), never a
duration.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from pydantic import Field, ValidationInfo, field_validator

from ttft_exporter.clock import Clock
from ttft_exporter.logs import fields
from ttft_exporter.validation import StrictModel, field_rule

if TYPE_CHECKING:
    from ttft_exporter.probes.base import ProbeResult

__all__ = [
    "BudgetConfig",
    "CostConfig",
    "ProbeBudget",
    "ProbeCharge",
    "probe_charge",
    "probe_cost",
]

log = logging.getLogger("ttft_exporter.budget")

_MILLION = Decimal(1_000_000)
# A price per 1M tokens above this is a typo (the dearest models cost well under 1000).
_MAX_PRICE = 1_000_000


class CostConfig(StrictModel):
    """Prices of a target's tokens, per million, in one currency."""

    input_per_million: Decimal = Field(
        ge=0,
        le=_MAX_PRICE,
        allow_inf_nan=False,
        decimal_places=6,
        description="Price of 1M input (prompt) tokens.",
    )
    output_per_million: Decimal = Field(
        ge=0,
        le=_MAX_PRICE,
        allow_inf_nan=False,
        decimal_places=6,
        description="Price of 1M output tokens (reasoning tokens included).",
    )
    currency: str = Field(
        "USD",
        description="ISO 4217 code; the `currency` label of ttft_probe_cost_total.",
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        # A label value: three capitals keep it bounded and free of escaping.
        if not (len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()):
            raise ValueError("must be a three-letter ISO 4217 code in capitals, e.g. USD")
        return value


class BudgetConfig(StrictModel):
    """What a target may spend per UTC day before its probing pauses."""

    daily_tokens: int | None = Field(
        None,
        ge=1,
        le=10**12,
        description="Input + output tokens per UTC day.",
    )
    daily_cost: Decimal | None = Field(
        None,
        gt=0,
        le=10**9,
        allow_inf_nan=False,
        decimal_places=6,
        validate_default=True,
        description="Cost per UTC day, in the target's `cost.currency`; needs `cost`.",
    )

    @field_validator("daily_cost")
    @classmethod
    def _one_limit(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        # Validated even when absent: the rule spans both fields.
        # (A daily_tokens that failed its own check is not in info.data: not judged.)
        if value is None and "daily_tokens" in info.data and info.data["daily_tokens"] is None:
            raise field_rule("", "set daily_tokens or daily_cost (or remove budget)", sibling=True)
        return value


def check_budget_needs_cost(budget: BudgetConfig | None, cost: CostConfig | None) -> None:
    """A cost budget cannot be judged without prices (raised at `budget.daily_cost`)."""
    if budget is not None and budget.daily_cost is not None and cost is None:
        raise field_rule("daily_cost", "needs cost (input_per_million, output_per_million)")


class BudgetedTarget(Protocol):
    """What the ledger reads of a target."""

    @property
    def name(self) -> str: ...
    @property
    def cost(self) -> CostConfig | None: ...
    @property
    def budget(self) -> BudgetConfig | None: ...
    @property
    def scenario(self) -> str: ...


class Series(Protocol):
    """The part of sinks.prometheus.series.SeriesSet the ledger writes (a Protocol:
    the store imports the target models, which import this module)."""

    def get(self, name: str, child: tuple[str, ...] = ()) -> float | None: ...
    def set(self, name: str, value: float, child: tuple[str, ...] = ()) -> None: ...
    def inc(self, name: str, amount: float = 1.0, child: tuple[str, ...] = ()) -> None: ...
    def clear(self, name: str) -> None: ...


COST = "ttft_probe_cost_total"
EXHAUSTED = "ttft_probe_budget_exhausted"
SPENT = "ttft_probe_budget_spent_tokens"
SKIPPED = "ttft_probe_budget_skipped_total"


@dataclass(frozen=True, slots=True)
class ProbeCharge:
    """The tokens one probe is charged. `estimated` when they are not all from the
    server's usage (chunk counts, a prompt count remembered from an earlier probe)."""

    input_tokens: int
    output_tokens: int
    estimated: bool

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def probe_charge(result: ProbeResult, last_input: int | None) -> ProbeCharge:
    """The tokens a probe is charged.

    - Output: the probe's output tokens (server usage, which counts reasoning as output
      in every protocol this exporter speaks, else one per streamed text chunk). A
      failed probe is charged the text chunks it streamed before failing (a lower
      bound: the server may have generated more). A chunk count is capped at the
      bound the usage check uses (2 x max_tokens + 16): no request generates more,
      and a stream that never ends (a broken or hostile server) sends chunks without
      end; uncapped, one such probe was charged 80,000 tokens for max_tokens 64 and
      spent a day's budget. Usage above the bound was already rejected.
    - Input: the usage's prompt tokens; without them, the last prompt count the server
      reported for this target (the prompt is the same every probe), else 0. A probe
      that got no 2xx response is charged nothing: providers do not bill a rejected
      request.
    """
    status = result.http_status
    if status is None or not 200 <= status < 300:
        return ProbeCharge(0, 0, estimated=False)
    if result.success:
        output = result.output_tokens or 0
        estimated = result.usage_source != "usage"
    else:
        output = result.token_chunks
        estimated = True
    limit = result.output_token_limit
    if limit is not None and output > limit:
        output = limit
    if result.success and result.input_tokens is not None:
        return ProbeCharge(result.input_tokens, output, estimated)
    return ProbeCharge(last_input or 0, output, estimated=True)


def probe_cost(charge: ProbeCharge, cost: CostConfig) -> Decimal:
    """The exact price of a probe's tokens."""
    return (
        charge.input_tokens * cost.input_per_million
        + charge.output_tokens * cost.output_per_million
    ) / _MILLION


@dataclass(slots=True)
class _Account:
    """One target's spend: today's (reset at 00:00 UTC) and the total cost by
    currency (the counter, exact)."""

    day: dt.date
    tokens: int = 0
    cost: Decimal = Decimal(0)
    exhausted: bool = False
    last_input: int | None = None
    # By (scenario, currency): each scenario's series counts its own probes' cost, so
    # the target's is their sum; the budget (tokens, cost) is the target's, shared.
    cost_total: dict[tuple[str, str], Decimal] = field(default_factory=dict)


class ProbeBudget:
    """The spend ledger of every target with a `cost` or a `budget`."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._accounts: dict[str, _Account] = {}
        self._today: dt.date | None = None

    def today(self) -> dt.date:
        """The current UTC day, by the injected wall clock."""
        return dt.datetime.fromtimestamp(self._clock.wall(), dt.UTC).date()

    def admit(self, target: BudgetedTarget, series: Series) -> bool:
        """Whether a scheduled probe of `target` may start now. A refused tick is
        counted (ttft_probe_budget_skipped_total), never logged: the transition was."""
        account = self._account(target)
        if account is None:
            _clear_all(series)  # a reload took cost and budget away
            return True
        self._publish(target, account, series)
        if account.exhausted:
            series.inc(SKIPPED)
            return False
        return True

    def exhausted(self, target: BudgetedTarget) -> bool:
        """Whether the target's budget for today is spent (for `/probe`)."""
        account = self._account(target)
        return account is not None and account.exhausted

    def seconds_to_reset(self) -> float:
        """Wall seconds until the next 00:00 UTC."""
        now = self._clock.wall()
        midnight = dt.datetime.combine(self.today() + dt.timedelta(days=1), dt.time(), dt.UTC)
        return max(midnight.timestamp() - now, 0.0)

    def charge(self, target: BudgetedTarget, result: ProbeResult, series: Series) -> None:
        """Count a finished probe's tokens (and cost). A probe in flight when the
        budget tripped lands here too: it was spent, so it counts."""
        account = self._account(target)
        if account is None:
            _clear_all(series)
            return
        if result.success and result.input_tokens is not None:
            account.last_input = result.input_tokens
        charge = probe_charge(result, account.last_input)
        account.tokens += charge.tokens
        if target.cost is not None:
            price = probe_cost(charge, target.cost)
            account.cost += price
            currency = target.cost.currency
            key = (target.scenario, currency)
            account.cost_total[key] = account.cost_total.get(key, Decimal(0)) + price
        self._update(target, account)
        self._publish(target, account, series)

    def _account(self, target: BudgetedTarget) -> _Account | None:
        """The target's account for today (rolled over at 00:00 UTC), or None for a
        target with neither cost nor budget."""
        today = self.today()
        if self._today != today:
            # A new day: forget targets that were not seen since the last one (those
            # that left the config), so the ledger stays as big as the config.
            self._accounts = {n: a for n, a in self._accounts.items() if a.day == self._today}
            self._today = today
        account = self._accounts.get(target.name)
        if target.cost is None and target.budget is None:
            return None
        if account is None:
            account = self._accounts[target.name] = _Account(today)
        elif account.day != today:
            account.day = today
            account.tokens = 0
            account.cost = Decimal(0)
        self._update(target, account)
        return account

    def _update(self, target: BudgetedTarget, account: _Account) -> None:
        """Trip or reset against the target's current limits (a reload may change
        them), with exactly one log line per transition."""
        over = _over(target.budget, account)
        if over == account.exhausted:
            return
        account.exhausted = over
        budget = target.budget
        limits = {
            "daily_tokens": budget.daily_tokens if budget else None,
            "daily_cost": str(budget.daily_cost) if budget and budget.daily_cost else None,
        }
        spent: dict[str, object] = {"spent_tokens": account.tokens}
        if target.cost is not None:
            spent["spent_cost"] = str(account.cost)
        if over:
            resume = dt.datetime.combine(account.day + dt.timedelta(days=1), dt.time(), dt.UTC)
            log.warning(
                "probe budget exhausted; probing paused until 00:00 UTC",
                extra=fields(
                    target=target.name,
                    resumes_at=resume.isoformat().replace("+00:00", "Z"),
                    **spent,
                    **{k: v for k, v in limits.items() if v is not None},
                ),
            )
        else:
            log.info(
                "probe budget available again; probing resumes",
                extra=fields(target=target.name, **spent),
            )

    def _publish(self, target: BudgetedTarget, account: _Account, series: Series) -> None:
        """The target's cost and budget series; a family the config no longer asks for
        goes (budget and cost series exist only where configured)."""
        if target.cost is None:
            series.clear(COST)
        else:
            currency = target.cost.currency
            total = float(account.cost_total.get((target.scenario, currency), Decimal(0)))
            if series.get(COST, (currency,)) != total:
                # Another currency's child (before a reload) goes: one series.
                series.clear(COST)
                series.set(COST, total, (currency,))
        if target.budget is None:
            for name in (EXHAUSTED, SPENT, SKIPPED):
                series.clear(name)
            return
        _publish_shared(account, series)
        if series.get(SKIPPED) is None:
            series.inc(SKIPPED, 0.0)


def _publish_shared(account: _Account, series: Series) -> None:
    _set(series, EXHAUSTED, 1.0 if account.exhausted else 0.0)
    _set(series, SPENT, float(account.tokens))


def _over(budget: BudgetConfig | None, account: _Account) -> bool:
    if budget is None:
        return False
    if budget.daily_tokens is not None and account.tokens >= budget.daily_tokens:
        return True
    return budget.daily_cost is not None and account.cost >= budget.daily_cost


def _set(series: Series, name: str, value: float) -> None:
    # Only on change: every write invalidates the family's cached render.
    if series.get(name) != value:
        series.set(name, value)


def _clear_all(series: Series) -> None:
    for name in (COST, EXHAUSTED, SPENT, SKIPPED):
        series.clear(name)
