"""The committed dashboards are exactly what the generator writes, follow the
conventions a provisioned dashboard needs, and name only metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.generate import DASHBOARDS
from dashboards.generate.__main__ import OUT, RUNBOOK_PANELS, RUNBOOKS, render
from dashboards.generate.catalogue import NAMES
from dashboards.generate.common import HAS_SCENARIO
from dashboards.generate.runbooks import ALERT_PANELS
from dashboards.generate.text import BAD
from dashboards.render import panels

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "alerts").glob("*.yaml"))
FILES = sorted(DASHBOARDS)


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((OUT / name).read_text(encoding="utf-8"))
    return data


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
    ]


def test_regenerating_gives_the_committed_bytes() -> None:
    rendered = render()
    assert sorted(rendered) == sorted([*(OUT / n for n in [*DASHBOARDS, RUNBOOK_PANELS]), RUNBOOKS])
    for path, text in rendered.items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: make dashboards"
    # Twice in one process: no state (ids, counters) leaks from one build to the next.
    assert render() == rendered


@pytest.mark.parametrize("name", FILES)
def test_a_provisioned_dashboard_needs_no_import_step(name: str) -> None:
    data = _load(name)
    assert "__inputs" not in data and "__requires" not in data
    assert "DS_PROMETHEUS" not in json.dumps(data)
    assert data["schemaVersion"] >= 39
    assert data["id"] is None
    # Deterministic and within Grafana's 8-40 characters.
    assert data["uid"] == DASHBOARDS[name]().uid == Path(name).stem
    assert 8 <= len(data["uid"]) <= 40
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_the_fleet_dashboard_filters_by_every_probe_label() -> None:
    names = [v["name"] for v in _load("ttft-fleet.json")["templating"]["list"]]
    expected = ["datasource", "job", "team", "env", "target", "model"]
    if HAS_SCENARIO:
        expected.insert(4, "scenario")
    assert names == expected


@pytest.mark.parametrize("name", FILES)
def test_every_panel_has_a_unit_a_description_and_the_datasource(name: str) -> None:
    ids = []
    for panel in panels(_load(name)):
        ids.append(panel["id"])
        if panel["type"] == "row":
            continue
        where = f"{name} panel {panel['id']} {panel['title']!r}"
        assert panel["fieldConfig"]["defaults"].get("unit"), where
        description = panel.get("description", "")
        means, _, bad = description.partition(f"\n\n{BAD}")
        assert len(means) > 20 and len(bad) > 10, where
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel["targets"], where
        assert {t["datasource"]["uid"] for t in panel["targets"]} == {"${datasource}"}, where
        # Inside Grafana's 24-column grid.
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, where
    assert ids == list(range(1, len(ids) + 1))


# ttft_* families (histogram series suffixes dropped) and recording-rule names.
_NAME = re.compile(r"\b(ttft_[a-z0-9_]+|(?:slo|target|flux):[a-z0-9_:]+)")
_SERIES_SUFFIX = re.compile(r"_(bucket|count|sum)$")


def _names(text: str) -> set[str]:
    return {_SERIES_SUFFIX.sub("", n) if n.startswith("ttft_") else n for n in _NAME.findall(text)}


def test_every_metric_name_exists_in_the_catalogue_or_the_generated_rules() -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    known = NAMES | recorded
    used_by_dashboards: set[str] = set()
    for name in FILES:
        for panel in panels(_load(name)):
            for target in panel.get("targets", []):
                used_by_dashboards |= _names(target["expr"])
        for variable in _load(name)["templating"]["list"]:
            used_by_dashboards |= _names(str(variable.get("query", "")))
    used_by_rules = set()
    for rule in _rules():
        used_by_rules |= _names(rule["expr"])
    assert used_by_dashboards, "the extractor found nothing"
    assert sorted(used_by_dashboards - known) == []
    assert sorted(used_by_rules - known) == []


def test_every_alert_maps_to_a_panel_that_shows_it() -> None:
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert sorted(alerts - set(ALERT_PANELS)) == []
    links = yaml.safe_load((OUT / RUNBOOK_PANELS).read_text(encoding="utf-8"))
    assert sorted(links) == sorted(ALERT_PANELS)
    by_uid = {_load(name)["uid"]: _load(name) for name in FILES}
    for alert, link in links.items():
        panel = next(
            p for p in panels(by_uid[link["dashboard_uid"]]) if p["id"] == link["panel_id"]
        )
        assert panel["title"] == link["panel_title"] == ALERT_PANELS[alert][1], alert
        assert link["path"] == f"/d/{link['dashboard_uid']}/?viewPanel={link['panel_id']}"


def test_every_runbook_section_names_its_panel() -> None:
    # The alert's runbook_url lands on its docs/runbooks.md section, which opens with
    # the panel that shows the problem.
    links = yaml.safe_load((OUT / RUNBOOK_PANELS).read_text(encoding="utf-8"))
    runbooks = RUNBOOKS.read_text(encoding="utf-8")
    for alert, link in links.items():
        section = runbooks.split(f"\n## {alert}\n", 1)[1]
        first = section.lstrip("\n").split("\n", 1)[0]
        assert first.startswith("**Dashboard.** "), alert
        assert f'panel "{link["panel_title"]}": `<grafana>{link["path"]}`' in first, alert
