"""Shared pieces of every dashboard: the datasource and label variables, panel
constructors that insist on a unit and a description, and a grid that places panels
and numbers them in order, so uids, ids and positions are the same on every run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders import bargauge, heatmap, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog import variants
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models import prometheus as pm

from ttft_exporter.targets import RESERVED_LABELS

# Grafana 10/11/12 all load 39 without migrating it (prometheus-ecosystem.md §4); the SDK
# itself writes 36.
SCHEMA_VERSION = 39
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
# A multi-value variable's "All" as a regex: it also matches a series without the label
# (an empty value), so a target without static `team`/`env` labels is never hidden.
ALL = ".*"
# The scenario label arrives with #10's scenarios; until the exporter reserves it, the
# dashboards neither offer the variable nor filter on it.
HAS_SCENARIO = "scenario" in RESERVED_LABELS

# Label matchers, by what the series carry.
JOB = 'job=~"$job"'
PROBE = 'job=~"$job",target=~"$target",model=~"$model",team=~"$team",env=~"$env"' + (
    ',scenario=~"$scenario"' if HAS_SCENARIO else ""
)
# The probe labels a legend names a series by.
SERIES = "{{target}}" + (" {{scenario}}" if HAS_SCENARIO else "")
# The labels a per-target aggregation keeps.
BY = "target, scenario" if HAS_SCENARIO else "target"
RATE = "$__rate_interval"


def datasource_variable() -> dashboard_builders.DatasourceVariable:
    return (
        dashboard_builders.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .regex("")
    )


def query_variable(
    name: str, label: str, metric: str, label_name: str, *, multi: bool = True
) -> dashboard_builders.QueryVariable:
    """A `label_values(metric, label)` variable, All by default, refreshed with the
    time range so a new target shows up without reloading the dashboard."""
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values({metric}, {label_name})")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(True)
        .all_value(ALL)
        .current(dm.VariableOption(selected=True, text="All", value="$__all"))
    )


def job_variable(metric: str) -> dashboard_builders.QueryVariable:
    return query_variable("job", "Job", metric, "job")


def probe_variables() -> list[dashboard_builders.QueryVariable]:
    """job, team, env, (scenario,) target and model, each narrowing the next."""
    metric = "ttft_probe_requests_total"
    variables = [
        job_variable(metric),
        query_variable("team", "Team", f"{metric}{{{JOB}}}", "team"),
        query_variable("env", "Env", f'{metric}{{{JOB},team=~"$team"}}', "env"),
    ]
    narrowed = f'{JOB},team=~"$team",env=~"$env"'
    if HAS_SCENARIO:
        variables.append(
            query_variable("scenario", "Scenario", f"{metric}{{{narrowed}}}", "scenario")
        )
        narrowed += ',scenario=~"$scenario"'
    variables.append(query_variable("target", "Target", f"{metric}{{{narrowed}}}", "target"))
    variables.append(
        query_variable("model", "Model", f'{metric}{{{narrowed},target=~"$target"}}', "model")
    )
    return variables


def query(
    expr: str,
    legend: str = "__auto",
    ref: str = "A",
    *,
    instant: bool = False,
    heatmap_format: bool = False,
    exemplar: bool = False,
) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    if exemplar:
        # Trace ids on the histogram buckets (otel.traces): Grafana draws them as
        # points that open the probe's trace.
        q = q.exemplar(True)
    if instant:
        q = q.instant().format(pm.PromQueryFormat.TABLE)
    elif heatmap_format:
        q = q.format(pm.PromQueryFormat.HEATMAP)
    else:
        q = q.range()
    return q


def _legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .show_legend(True)
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .calcs([])
    )


def _tooltip() -> common_builders.VizTooltipOptions:
    return (
        common_builders.VizTooltipOptions()
        .mode(common.TooltipDisplayMode.MULTI)
        .sort(common.SortOrder.DESCENDING)
    )


def _queries(queries: Sequence[prometheus.Dataquery]) -> list[Builder[variants.Dataquery]]:
    return list(queries)


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    *queries: prometheus.Dataquery,
    stacked: bool = False,
    bars: bool = False,
    min_zero: bool = True,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(_queries(queries))
        .legend(_legend())
        .tooltip(_tooltip())
        .line_width(1)
        .fill_opacity(40 if stacked else 10)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
    )
    if min_zero:
        panel = panel.min(0)
    if stacked:
        panel = panel.stacking(
            common_builders.StackingConfig().mode(common.StackingMode.NORMAL).group("A")
        )
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS)
    return panel


def stat_panel(
    title: str,
    description: str,
    unit: str,
    *queries: prometheus.Dataquery,
    thresholds: Sequence[tuple[float | None, str]] = ((None, "green"),),
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(_queries(queries))
        .reduce_options(
            common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("")
        )
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.AREA)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
        .thresholds(thresholds_config(thresholds))
    )


def bargauge_panel(
    title: str, description: str, unit: str, *queries: prometheus.Dataquery
) -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(_queries(queries))
        .reduce_options(
            common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("")
        )
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .min(0)
    )


def thresholds_config(
    steps: Sequence[tuple[float | None, str]],
) -> dashboard_builders.ThresholdsConfig:
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


def heatmap_panel(title: str, description: str, expr: str) -> heatmap.Panel:
    """A heatmap of an already bucketed histogram (Prometheus `le` buckets)."""
    return (
        heatmap.Panel()
        .title(title)
        .description(description)
        .unit("s")
        .datasource(DATASOURCE)
        # The TTFT heatmap's buckets carry exemplars when tracing is on.
        .targets([query(expr, "{{le}}", heatmap_format=True, exemplar="_bucket" in expr)])
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.AUTO))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(hm.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .fill("dark-orange")
            .scale(hm.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
            .steps(64)
            .reverse(False)
        )
        .cell_gap(1)
        .show_legend()
        .show_tooltip()
    )


def table_panel(
    title: str, description: str, unit: str, *queries: prometheus.Dataquery
) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(_queries(queries))
        .show_header(True)
        .cell_height(common.TableCellHeight.SM)
    )


@dataclass
class Board:
    """A dashboard under construction: panels are placed left to right in rows of 24
    columns, a new line when the next does not fit; ids count up from 1."""

    uid: str
    title: str
    description: str
    tags: list[str]
    variables: list[Any]
    panel_ids: dict[str, int] = field(default_factory=dict)
    _panels: list[tuple[str, Any]] = field(default_factory=list)
    _x: int = 0
    _y: int = 0
    _line_height: int = 0
    _next_id: int = 1

    def row(self, title: str) -> None:
        self._newline()
        row = (
            dashboard_builders.Row(title)
            .id(self._take_id(f"row:{title}"))
            .collapsed(False)
            .grid_pos(dm.GridPos(h=1, w=24, x=0, y=self._y))
        )
        self._panels.append(("row", row))
        self._y += 1

    def add(self, panel: Any, w: int, h: int) -> int:
        """Place `panel` (any panel builder); returns its id."""
        if self._x + w > 24:
            self._newline()
        title = panel.build().title
        panel_id = self._take_id(title)
        panel.id(panel_id).grid_pos(dm.GridPos(h=h, w=w, x=self._x, y=self._y))
        self._panels.append(("panel", panel))
        self._x += w
        self._line_height = max(self._line_height, h)
        return panel_id

    def _take_id(self, key: str) -> int:
        if key in self.panel_ids:
            raise ValueError(f"{self.uid}: two panels titled {key!r}")
        panel_id = self._next_id
        self._next_id += 1
        self.panel_ids[key] = panel_id
        return panel_id

    def _newline(self) -> None:
        self._y += self._line_height
        self._x = 0
        self._line_height = 0

    def build(self) -> dict[str, Any]:
        """The dashboard as plain JSON data."""
        builder = (
            dashboard_builders.Dashboard(self.title)
            .uid(self.uid)
            .description(self.description)
            .tags(self.tags)
            .editable()
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .time("now-1h", "now")
            .refresh("30s")
            .timezone("browser")
            .variables(self.variables)
        )
        for kind, item in self._panels:
            builder = builder.with_row(item) if kind == "row" else builder.with_panel(item)
        model = builder.build()
        model.schema_version = SCHEMA_VERSION
        data: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(model))
        return _normalise(data, self._panels)


def _normalise(data: dict[str, Any], placed: list[tuple[str, Any]]) -> dict[str, Any]:
    """Fix what the SDK's builder leaves to Grafana: `with_row` nests the following
    panels inside the row and re-places everything, so the flat list of placed panels
    is written back; the built-in annotation stays; `id` is null as in a file."""
    panels: list[dict[str, Any]] = []
    for _, item in placed:
        panel = json.loads(JSONEncoder(sort_keys=True).encode(item.build()))
        if panel.get("type") == "row":
            panel["panels"] = []
        panels.append(panel)
    data["panels"] = panels
    # Leftovers of the SDK's model that the classic schema does not have: the
    # pre-7 `style`, a zero UUID as every variable's id, and the interval-variable
    # `auto*` fields on every variable kind.
    data.pop("style", None)
    for variable in data.get("templating", {}).get("list", []):
        for key in ("id", "auto", "auto_count", "auto_min"):
            variable.pop(key, None)
    data["annotations"] = {
        "list": [
            {
                "builtIn": 1,
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "type": "dashboard",
            }
        ]
    }
    data["id"] = None
    data["links"] = []
    return data


def encode(data: dict[str, Any]) -> str:
    """The committed form: sorted keys, two-space indent, a final newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
