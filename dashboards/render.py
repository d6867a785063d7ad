"""Draw each dashboard as a Grafana user would see it, from a real Prometheus: every
panel's queries (variables substituted, "All" selected) are run against the server and
drawn with matplotlib at the panel's grid position. Not part of the ttft_exporter
package; the dashboard tests use it to check that every query returns data and keep
the images as artefacts.

    python -m dashboards.render --prometheus http://127.0.0.1:9090 --out build/dashboard-previews
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

DASHBOARDS = Path(__file__).resolve().parent
# What Grafana would put in for its built-in variables on a short time range with a
# 1 s scrape interval; "All" (".*") for every dashboard variable.
BUILTINS = {"__rate_interval": "15s", "__interval": "5s", "__range": "5m", "__range_s": "300"}
ALL = ".*"
_VARIABLE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\[\[(\w+)\]\]|\$(\w+)")
_LABEL_VALUES = re.compile(r"^label_values\((?:(.*),\s*)?(\w+)\)$", re.DOTALL)
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")

BACKGROUND = "#111217"
PANEL = "#181b1f"
TEXT = "#ccccdc"
GRID = "#2c3235"
PALETTE = (
    "#73bf69",
    "#f2cc0c",
    "#8ab8ff",
    "#ff780a",
    "#f2495c",
    "#5794f2",
    "#b877d9",
    "#705da0",
    "#37872d",
    "#fade2a",
    "#ff9830",
    "#c4162a",
)


def substitute(expr: str, values: Mapping[str, str] | None = None) -> str:
    """`expr` with Grafana's variables replaced: built-ins by fixed durations, the
    dashboard's own by `values` (default: All)."""
    values = values or {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        return values.get(name, ALL)

    return _VARIABLE.sub(replace, expr)


class QueryError(Exception):
    """Prometheus refused the query: its errorType and error."""


@dataclass(frozen=True)
class Prometheus:
    """The HTTP API of a Prometheus server."""

    url: str

    def api(self, path: str, params: list[tuple[str, str]]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - a URL we were given
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise QueryError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def instant(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("/api/v1/query", [("query", expr)])
        result: list[dict[str, Any]] = data["result"]
        return result

    def range(self, expr: str, seconds: float, step: float) -> list[dict[str, Any]]:
        end = time.time()
        data = self.api(
            "/api/v1/query_range",
            [
                ("query", expr),
                ("start", f"{end - seconds:.3f}"),
                ("end", f"{end:.3f}"),
                ("step", f"{step:g}"),
            ],
        )
        result: list[dict[str, Any]] = data["result"]
        return result

    def label_values(self, label: str, match: str | None) -> list[str]:
        params = [("match[]", match)] if match else []
        values: list[str] = self.api(f"/api/v1/label/{label}/values", params)
        return values


@dataclass
class Outcome:
    """One query of one panel (or variable) and what Prometheus answered."""

    dashboard: str
    panel_id: int | None
    title: str
    ref: str
    expr: str
    instant: bool = False
    series: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def has_data(self) -> bool:
        """At least one number that is not NaN (a quantile of an idle histogram is NaN
        and Grafana shows nothing for it)."""
        for item in self.series:
            points = item.get("values") or ([item["value"]] if "value" in item else [])
            if any(_finite(point[1]) for point in points):
                return True
        return False

    def where(self) -> str:
        panel = (
            f'panel {self.panel_id} "{self.title}"' if self.panel_id else f'variable "{self.title}"'
        )
        return f"{self.dashboard}: {panel} query {self.ref}"


def _finite(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included, in order."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def run_dashboard(
    prometheus: Prometheus, dashboard: Mapping[str, Any], seconds: float, step: float
) -> list[Outcome]:
    """Run every variable and panel query of `dashboard` with "All" selected."""
    uid = str(dashboard["uid"])
    outcomes: list[Outcome] = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        outcome = Outcome(uid, None, variable["name"], "-", substitute(str(variable["query"])))
        found = _LABEL_VALUES.match(outcome.expr)
        try:
            if found is None:
                raise QueryError(f"not a label_values() query: {outcome.expr}")
            values = prometheus.label_values(found.group(2), found.group(1))
            outcome.series = [{"metric": {found.group(2): v}, "value": [0, "1"]} for v in values]
        except QueryError as exc:
            outcome.error = str(exc)
        outcomes.append(outcome)
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            instant = bool(target.get("instant")) and not target.get("range")
            outcome = Outcome(
                uid,
                panel["id"],
                panel.get("title", ""),
                target.get("refId", ""),
                substitute(target["expr"]),
                instant,
            )
            try:
                if instant:
                    outcome.series = prometheus.instant(outcome.expr)
                else:
                    outcome.series = prometheus.range(outcome.expr, seconds, step)
            except QueryError as exc:
                outcome.error = str(exc)
            outcomes.append(outcome)
    return outcomes


# --- drawing --------------------------------------------------------------------------


def _legend(fmt: str, metric: Mapping[str, str]) -> str:
    if not fmt or fmt == "__auto":
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
        return f"{metric.get('__name__', '')}{{{inner}}}"
    return _LEGEND.sub(lambda m: metric.get(m.group(1), ""), fmt).strip()


def _format(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "s":
        if value == 0:
            return "0 s"
        if abs(value) < 1:
            return f"{value * 1000:.3g} ms"
        return f"{value:.3g} s"
    if unit == "bytes":
        for suffix in ("B", "KiB", "MiB", "GiB"):
            if abs(value) < 1024:
                return f"{value:.3g} {suffix}"
            value /= 1024
        return f"{value:.3g} TiB"
    if unit.startswith("bool"):
        return {"bool_on_off": ("Off", "On"), "bool_yes_no": ("No", "Yes")}.get(unit, ("0", "1"))[
            1 if value else 0
        ]
    if unit.startswith("suffix:"):
        return f"{value:.3g}{unit[7:]}"
    if unit in ("reqps", "ops"):
        return f"{value:.3g} {'req/s' if unit == 'reqps' else 'ops/s'}"
    if unit == "x":
        return f"{value:.3g}x"
    if unit == "currencyUSD":
        return f"${value:.3g}"
    return f"{value:.4g}"


def _clock(value: float, _: object) -> str:
    return datetime.fromtimestamp(value, tz=UTC).strftime("%H:%M:%S")


def _style(ax: Axes, title: str) -> None:
    ax.set_facecolor(PANEL)
    for spine in ax.spines.values():
        spine.set_color(GRID)
    ax.tick_params(colors=TEXT, labelsize=6)
    ax.set_title(title, color=TEXT, fontsize=8, loc="left")


def _draw_timeseries(ax: Axes, panel: Mapping[str, Any], results: list[Outcome], unit: str) -> bool:
    drawn = 0
    fmt = {t.get("refId"): t.get("legendFormat", "") for t in panel.get("targets", [])}
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    stacked = defaults.get("custom", {}).get("stacking", {}).get("mode") == "normal"
    base: dict[float, float] = {}
    for outcome in results:
        for item in outcome.series:
            points = [(float(t), float(v)) for t, v in item.get("values", [])]
            if not points:
                continue
            xs = [t for t, _ in points]
            ys = [v if math.isfinite(v) else float("nan") for _, v in points]
            if stacked:
                ys = [
                    y + base.get(x, 0.0) if math.isfinite(y) else y
                    for x, y in zip(xs, ys, strict=True)
                ]
                base.update((x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y))
            label = _legend(fmt.get(outcome.ref, ""), item.get("metric", {}))
            ax.plot(xs, ys, linewidth=1, color=PALETTE[drawn % len(PALETTE)], label=label[:40])
            drawn += 1
    if drawn:
        if isinstance(defaults.get("min"), (int, float)):
            ax.set_ylim(bottom=defaults["min"])
        if isinstance(defaults.get("max"), (int, float)):
            ax.set_ylim(top=defaults["max"] * 1.02)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _format(v, unit)))
        ax.xaxis.set_major_formatter(FuncFormatter(_clock))
        ax.grid(color=GRID, linewidth=0.5)
        legend = ax.legend(fontsize=5, loc="upper left", ncol=2, framealpha=0.3)
        for text in legend.get_texts():
            text.set_color(TEXT)
    return drawn > 0


def _draw_heatmap(ax: Axes, results: list[Outcome]) -> bool:
    rows: dict[float, dict[float, float]] = {}
    for outcome in results:
        for item in outcome.series:
            le = float(item["metric"].get("le", "inf"))
            rows[le] = {float(t): float(v) for t, v in item.get("values", [])}
    if not rows:
        return False
    bounds = sorted(rows)
    times = sorted({t for row in rows.values() for t in row})
    grid: list[list[float]] = []
    previous = [0.0] * len(times)
    for le in bounds:
        cumulative = [rows[le].get(t, 0.0) for t in times]
        grid.append(
            [
                max(c - p, 0.0) if math.isfinite(c) else 0.0
                for c, p in zip(cumulative, previous, strict=True)
            ]
        )
        previous = cumulative
    ax.imshow(grid, aspect="auto", origin="lower", cmap="Oranges", interpolation="nearest")
    labels = [_format(b, "s") if math.isfinite(b) else "+Inf" for b in bounds]
    step = max(1, len(labels) // 8)
    ax.set_yticks(range(0, len(labels), step), labels[::step])
    ax.set_xticks([])
    return True


def _draw_stat(ax: Axes, panel: Mapping[str, Any], results: list[Outcome], unit: str) -> bool:
    fmt = {t.get("refId"): t.get("legendFormat", "") for t in panel.get("targets", [])}
    values: list[tuple[str, float]] = []
    for outcome in results:
        for item in outcome.series:
            raw = item.get("value") or (item.get("values") or [[0, "nan"]])[-1]
            values.append(
                (_legend(fmt.get(outcome.ref, ""), item.get("metric", {})), float(raw[1]))
            )
    if not values:
        return False
    ax.set_axis_off()
    shown = values[:6]
    for i, (name, value) in enumerate(shown):
        x = (i + 0.5) / len(shown)
        ax.text(
            x,
            0.55,
            _format(value, unit),
            color=PALETTE[i % len(PALETTE)],
            fontsize=13,
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.text(x, 0.2, name[:28], color=TEXT, fontsize=5, ha="center", transform=ax.transAxes)
    return True


def _draw_table(ax: Axes, results: list[Outcome]) -> bool:
    rows: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    columns: list[str] = []
    for outcome in results:
        for item in outcome.series:
            labels = {
                k: v
                for k, v in item.get("metric", {}).items()
                if k not in ("__name__", "job", "instance")
            }
            key = tuple(sorted(labels.items()))
            raw = item.get("value") or (item.get("values") or [[0, "nan"]])[-1]
            row = rows.setdefault(key, dict(labels))
            row[f"#{outcome.ref}"] = f"{float(raw[1]):.4g}"
            for name in [*labels, f"#{outcome.ref}"]:
                if name not in columns:
                    columns.append(name)
    if not rows:
        return False
    ax.set_axis_off()
    cells = [[row.get(c, "") for c in columns] for row in list(rows.values())[:12]]
    table = ax.table(cellText=cells, colLabels=columns, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(5)
    for cell in table.get_celld().values():
        cell.set_facecolor(PANEL)
        cell.set_edgecolor(GRID)
        cell.get_text().set_color(TEXT)
    return True


def draw(dashboard: Mapping[str, Any], outcomes: list[Outcome], path: Path) -> None:
    """One PNG of `dashboard`, every panel at its grid position."""
    placed = list(panels(dashboard))
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in placed)
    width_in, unit_h = 16.0, 0.26  # a grid row is ~30 px of a ~1800 px wide screen
    figure = plt.figure(figsize=(width_in, height * unit_h + 0.6), facecolor=BACKGROUND)
    figure.suptitle(dashboard["title"], color=TEXT, fontsize=11, x=0.01, ha="left")
    top = 1 - 0.6 / (height * unit_h + 0.6)
    by_panel: dict[int, list[Outcome]] = {}
    for outcome in outcomes:
        if outcome.panel_id is not None:
            by_panel.setdefault(outcome.panel_id, []).append(outcome)
    for panel in placed:
        pos = panel["gridPos"]
        left = pos["x"] / 24 + 0.004
        bottom = top * (1 - (pos["y"] + pos["h"]) / height) + 0.01
        w = pos["w"] / 24 - 0.008
        h = top * pos["h"] / height - 0.02
        if panel["type"] == "row":
            figure.text(
                left,
                top * (1 - pos["y"] / height) - 0.01,
                panel["title"],
                color=TEXT,
                fontsize=9,
                weight="bold",
                va="top",
            )
            continue
        # Room for the y tick labels inside the panel's own cell.
        inset = 0.045 if panel["type"] == "timeseries" else 0.0
        ax = figure.add_axes((left + inset, bottom, w - inset, max(h - 0.01, 0.01)))
        _style(ax, panel.get("title", ""))
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        results = by_panel.get(panel["id"], [])
        kind = panel["type"]
        if kind == "heatmap":
            ok = _draw_heatmap(ax, results)
        elif kind in ("stat", "bargauge"):
            ok = _draw_stat(ax, panel, results, unit)
        elif kind == "table":
            ok = _draw_table(ax, results)
        else:
            ok = _draw_timeseries(ax, panel, results, unit)
        if not ok:
            ax.text(
                0.5, 0.5, "No data", color=TEXT, ha="center", va="center", transform=ax.transAxes
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90, facecolor=BACKGROUND)
    plt.close(figure)


def load_dashboards() -> dict[str, dict[str, Any]]:
    """The committed dashboards, by file stem."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS.glob("ttft-*.json"))
    }


def thumbnail(source: Path, target: Path, width: int = 1100, colours: int = 256) -> None:
    """A small copy of a preview for the README: narrower and palette-coded."""
    from PIL import Image  # only this path needs Pillow (which matplotlib brings)

    with Image.open(source) as image:
        height = round(image.height * width / image.width)
        small = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
        small.quantize(colours).save(target, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.render")
    parser.add_argument("--prometheus", help="base URL of a Prometheus")
    parser.add_argument("--out", type=Path, default=Path("build/dashboard-previews"))
    parser.add_argument("--range", type=float, default=600.0, help="seconds of history")
    parser.add_argument(
        "--thumbnails", type=Path, help="write small copies of the previews in --out here"
    )
    args = parser.parse_args(argv)
    if args.thumbnails is not None:
        for png in sorted(args.out.glob("ttft-*.png")):
            thumbnail(png, args.thumbnails / png.name)
        return 0
    if not args.prometheus:
        parser.error("--prometheus is required")
    prometheus = Prometheus(args.prometheus.rstrip("/"))
    failed = 0
    for stem, dashboard in load_dashboards().items():
        outcomes = run_dashboard(prometheus, dashboard, args.range, max(args.range / 120, 1.0))
        for outcome in outcomes:
            if outcome.error or not outcome.has_data:
                failed += 1
                sys.stderr.write(f"{outcome.where()}: {outcome.error or 'no data'}\n")
        draw(dashboard, outcomes, args.out / f"{stem}.png")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
