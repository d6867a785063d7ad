"""Every dashboard against the real stack: each panel and variable query, variables
substituted ("All"), returns data from a Prometheus that scraped the exporter watching
a healthy, a degraded, a reasoning and a failing LLM target and the Flux simulator for
at least 30 s, with the committed rules loaded. The same answers are drawn as PNGs
(build/dashboard-previews/), kept as artefacts of the run."""

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
