"""Every dashboard against the real stack: each panel and variable query, variables
substituted ("All"), returns data from a Prometheus that scraped the exporter watching
a healthy, a degraded, a reasoning and a failing LLM target and the Flux simulator for
at least 30 s, with the committed rules loaded. The same answers are drawn as PNGs
(build/dashboard-previews/), kept as artefacts of the run.

Sloth compatibility: the queries Sloth's own SLO UI sends to Prometheus return data from
the rules `ttft-exporter rules` generated (the committed alerts/). The queries are those
of slok/sloth at 0e395d8 (v0.16), internal/http/backend/storage/prometheus/cache.go and
prometheus.go; Sloth's Grafana dashboards (grafana.com 14348, 14643) read the same slo:*
and sloth_* series.

One module, so the stack (module-scoped) stops before the rest of the suite runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboards.render import draw, load_dashboards, run_dashboard
from tests.dashboards.conftest import Live

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PREVIEWS = ROOT / "build" / "dashboard-previews"


def test_every_panel_and_variable_query_returns_data(live: Live) -> None:
    # Range queries over what the stack has scraped, at most 2 minutes.
    seconds = min(live.scraped_for(), 120.0)
    failures: list[str] = []
    counted = 0
    for stem, dashboard in load_dashboards().items():
        outcomes = run_dashboard(live.api, dashboard, seconds, step=2.0)
        counted += len(outcomes)
        for outcome in outcomes:
            if outcome.error is not None:
                failures.append(f"{outcome.where()}: {outcome.error}\n    {outcome.expr}")
            elif not outcome.has_data:
                failures.append(f"{outcome.where()}: no data\n    {outcome.expr}")
        draw(dashboard, outcomes, PREVIEWS / f"{stem}.png")
    assert counted > 60
    assert failures == [], "\n".join(failures)
    assert sorted(p.name for p in PREVIEWS.glob("ttft-*.png")) == sorted(
        f"{stem}.png" for stem in load_dashboards()
    )


def test_a_failing_query_names_the_dashboard_the_panel_and_the_error(live: Live) -> None:
    # The check above is not vacuous: a parse error and a metric nobody exports.
    dashboard = {
        "uid": "broken",
        "panels": [
            {
                "id": 3,
                "title": "Unclosed",
                "targets": [{"refId": "A", "expr": "sum(rate(up[$__rate_interval])"}],
            },
            {
                "id": 4,
                "title": "Unknown",
                "targets": [{"refId": "B", "expr": 'ttft_no_such_metric{job=~"$job"}'}],
            },
        ],
    }
    first, second = run_dashboard(live.api, dashboard, 10.0, step=2.0)
    assert first.where() == 'broken: panel 3 "Unclosed" query A'
    assert first.error is not None and "unclosed left parenthesis" in first.error
    assert first.expr == "sum(rate(up[15s])"
    assert second.where() == 'broken: panel 4 "Unknown" query B'
    assert (second.error, second.has_data) == (None, False)
    assert second.expr == 'ttft_no_such_metric{job=~".*"}'


# Instant queries of Sloth's UI backend, verbatim but for the label-name constants.
SLOTH_INSTANT_QUERIES = (
    'sloth_slo_info{sloth_id!=""}',
    'count({__name__=~"^slo:sli_error:ratio_rate.*"}) by (__name__, sloth_id)',
    'max(slo:time_period:days{sloth_id!=""}) by (sloth_id)',
    'slo:current_burn_rate:ratio{sloth_id!=""}',
    'ALERTS{sloth_id!=""}',
    'slo:period_error_budget_remaining:ratio{sloth_id!=""}',
)
# The SLOs of examples/ttft.yml whose selector (env: prod) matches the stack's targets.
PROD_SLOS = ("env-prod-ttft-latency", "env-prod-availability", "env-prod-tpot-latency")
WINDOWS = {"5m", "30m", "1h", "2h", "6h", "1d", "3d", "4w"}


@pytest.mark.parametrize("query", SLOTH_INSTANT_QUERIES)
def test_sloth_ui_instant_query_returns_data(live: Live, query: str) -> None:
    assert live.api.instant(query), query


def test_every_slo_has_the_sli_windows_sloth_looks_for(live: Live) -> None:
    result = live.api.instant(SLOTH_INSTANT_QUERIES[1])
    windows: dict[str, set[str]] = {}
    for item in result:
        metric = item["metric"]
        windows.setdefault(metric["sloth_id"], set()).add(
            metric["__name__"].removeprefix("slo:sli_error:ratio_rate")
        )
    for slo in PROD_SLOS:
        assert windows.get(slo) == WINDOWS, (slo, windows)


@pytest.mark.parametrize("slo", PROD_SLOS)
def test_sloth_ui_availability_range_returns_data(live: Live, slo: str) -> None:
    # getSLIAvailabilityInRange with the shortest window: 1 - (max(<sli metric>{ids})).
    series = live.api.range(f'1 - (max(slo:sli_error:ratio_rate5m{{sloth_id="{slo}"}}))', 20.0, 5.0)
    values = [float(v) for item in series for _, v in item["values"]]
    assert values and all(0.0 <= v <= 1.0 for v in values), (slo, values)
