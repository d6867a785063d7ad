"""Sloth compatibility: the queries Sloth's own SLO UI sends to Prometheus return data
from the rules `ttft-exporter rules` generated (the committed alerts/), on the live
stack. The queries are those of slok/sloth at 0e395d8 (v0.16),
internal/http/backend/storage/prometheus/cache.go and prometheus.go; Sloth's Grafana
dashboards (grafana.com 14348, 14643) read the same slo:* and sloth_* series."""

from __future__ import annotations

import pytest

from tests.dashboards.conftest import Live

pytestmark = pytest.mark.integration

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
