"""SLOs: per SLO (Sloth's sloth_service / sloth_slo labels, as `ttft-exporter rules`
writes them) the objective, the current SLI, the error budget left, the burn rate per
alert window and the alerts pending or firing."""

from __future__ import annotations

from dashboards.generate.common import (
    Board,
    datasource_variable,
    query,
    query_variable,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from dashboards.generate.text import describe

UID = "ttft-slos"
SLO = 'sloth_service=~"$service",sloth_slo=~"$slo"'
# The SLI windows of the generated rules (Sloth's google 28d/30d set); 4w is the period.
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
META_JOIN = "on (sloth_service, sloth_slo) group_left"


def build() -> Board:
    board = Board(
        uid=UID,
        title="LLM endpoints: SLOs",
        description="ttft-exporter SLOs (Sloth-compatible recording rules): objective, SLI, error budget and burn rates.",
        tags=["ttft-exporter", "llm", "slo"],
        variables=[
            datasource_variable(),
            query_variable("service", "Service", "sloth_slo_info", "sloth_service"),
            query_variable("slo", "SLO", 'sloth_slo_info{sloth_service=~"$service"}', "sloth_slo"),
        ],
    )
    board.row("Budget")
    board.add(
        stat_panel(
            "Objective",
            describe(
                "The SLO's objective (slo:objective:ratio): the share of probes that must "
                "be good over the period.",
                "nothing by itself; compare the SLI and the budget panels with it.",
            ),
            "percentunit",
            query(f"slo:objective:ratio{{{SLO}}}", "{{sloth_service}} {{sloth_slo}}", instant=True),
        ),
        6,
        6,
    )
    board.add(
        stat_panel(
            "SLI over the period (4w)",
            describe(
                "Share of good probes over the SLO period, the worst target of each SLO "
                "(1 - slo:sli_error:ratio_rate4w).",
                "below the objective: the SLO is already missed for this period.",
            ),
            "percentunit",
            query(
                f"1 - max by (sloth_service, sloth_slo) (slo:sli_error:ratio_rate4w{{{SLO}}})",
                "{{sloth_service}} {{sloth_slo}}",
                instant=True,
            ),
            thresholds=((None, "red"), (0.99, "green")),
        ),
        6,
        6,
    )
    board.add(
        stat_panel(
            "Error budget remaining",
            describe(
                "Share of the period's error budget not yet spent, the worst target "
                "(slo:period_error_budget_remaining:ratio; 1 = untouched).",
                "under 0.25 (freeze risky changes); at or below 0 the budget is gone.",
            ),
            "percentunit",
            query(
                f"min by (sloth_service, sloth_slo) (slo:period_error_budget_remaining:ratio{{{SLO}}})",
                "{{sloth_service}} {{sloth_slo}}",
                instant=True,
            ),
            thresholds=((None, "red"), (0.25, "orange"), (0.5, "green")),
        ),
        6,
        6,
    )
    board.add(
        stat_panel(
            "Current burn rate (5m)",
            describe(
                "How fast the budget burns now, the worst target: 1 spends exactly the "
                "budget over the period (slo:current_burn_rate:ratio).",
                "above 1 for long; above 14.4 the fast page fires once the 1h window "
                "agrees (TTFTErrorBudgetBurn, LLMAvailabilityErrorBudgetBurn).",
            ),
            "x",
            query(
                f"max by (sloth_service, sloth_slo) (slo:current_burn_rate:ratio{{{SLO}}})",
                "{{sloth_service}} {{sloth_slo}}",
                instant=True,
            ),
            thresholds=((None, "green"), (1, "orange"), (14.4, "red")),
        ),
        6,
        6,
    )

    board.row("SLI and burn")
    board.add(
        timeseries_panel(
            "SLI (5m) per target",
            describe(
                "Share of good probes over 5m per target of each SLO "
                "(1 - slo:sli_error:ratio_rate5m); a good probe succeeded and, for a "
                "latency SLO, had its TTFT (or TPOT) under the threshold.",
                "dips below the objective line: each one spends budget.",
            ),
            "percentunit",
            query(f"1 - slo:sli_error:ratio_rate5m{{{SLO}}}", "{{sloth_slo}} {{target}}", "A"),
            query(f"slo:objective:ratio{{{SLO}}}", "{{sloth_slo}} objective", "B"),
            min_zero=False,
        ),
        12,
        8,
    )
    board.add(
        timeseries_panel(
            "Burn rate per window",
            describe(
                "Error ratio over each alert window divided by the error budget: the "
                "multi-window multi-burn-rate alerts compare pairs of these (1h and 5m "
                "above 14.4 pages; 6h and 30m above 6; 1d/2h and 3d/6h above 3 and 1 "
                "open tickets).",
                "the short and the long window of a pair both above the pair's factor: "
                "the alert fires.",
            ),
            "x",
            *[
                query(
                    f"max by (sloth_service, sloth_slo, sloth_window) "
                    f"(slo:sli_error:ratio_rate{window}{{{SLO}}}) / {META_JOIN} "
                    f"max by (sloth_service, sloth_slo) (slo:error_budget:ratio{{{SLO}}})",
                    "{{sloth_slo}} {{sloth_window}}",
                    chr(ord("A") + i),
                )
                for i, window in enumerate(WINDOWS)
            ],
        ),
        12,
        8,
    )
    board.add(
        timeseries_panel(
            "Error budget remaining over time",
            describe(
                "The remaining share of the period's error budget per target, over the time range.",
                "a steady slope toward 0: the budget runs out before the period ends.",
            ),
            "percentunit",
            query(f"slo:period_error_budget_remaining:ratio{{{SLO}}}", "{{sloth_slo}} {{target}}"),
            min_zero=False,
        ),
        12,
        8,
    )
    board.add(
        table_panel(
            "SLO alerts pending or firing",
            describe(
                "Burn-rate alerts of these SLOs from Prometheus' ALERTS series: pending "
                "(the condition holds, waiting for its for:) or firing.",
                "any firing row: page or ticket by its severity; pending rows warn early.",
            ),
            "none",
            query(
                f"max by (alertname, alertstate, severity, sloth_slo, target) (ALERTS{{{SLO}}})",
                "{{alertname}}",
                instant=True,
            ),
        ),
        12,
        8,
    )
    return board
