"""The index page (`/`): every target's status at a glance, the Flux instances, the
recent probes with their times, and a "probe now" button that POSTs (a plain GET must
never send a possibly paid request). Every value is HTML-escaped where it is written.

Tables are lists of `Column`s, so a new column is one entry (for example the suspect
cause of a probe in `RECENT_COLUMNS`)."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from ttft_exporter import __version__
from ttft_exporter.config import Config, TargetConfig
from ttft_exporter.flux.supervisor import FluxRunning
from ttft_exporter.history import ProbeRecord
from ttft_exporter.sinks.prometheus.series import MetricStore

__all__ = [
    "RECENT_COLUMNS",
    "TARGET_COLUMNS",
    "Column",
    "FluxRow",
    "TargetRow",
    "iso_utc",
    "render_index",
]

Row = TypeVar("Row")

RECENT_LIMIT = 50
# Failure details are short already (the probe engine cuts them); this bounds the page.
DETAIL_CHARS = 300


@dataclass(frozen=True)
class Column(Generic[Row]):
    """One table column: its header and how a row becomes the cell's *text* (escaped
    when written, so a cell function never builds HTML)."""

    header: str
    text: Callable[[Row], str]


def iso_utc(timestamp: float | None) -> str:
    """ISO 8601 in UTC to the second (`2026-02-14T10:30:45Z`), `-` for none."""
    if not timestamp:
        return "-"
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def _outcome(record: ProbeRecord | None) -> str:
    if record is None:
        return "not probed yet"
    return "success" if record.result.success else "failure"


def _failure(record: ProbeRecord | None) -> str:
    if record is None or record.result.success:
        return ""
    reason = record.result.reason.value if record.result.reason else "internal"
    detail = record.result.detail
    if len(detail) > DETAIL_CHARS:
        detail = detail[:DETAIL_CHARS] + "…"
    return f"{reason}: {detail}" if detail else reason


@dataclass(frozen=True)
class TargetRow:
    """A configured target, its latest probe (any kind) and its last success time."""

    target: TargetConfig
    last: ProbeRecord | None
    last_success: float | None


TARGET_COLUMNS: list[Column[TargetRow]] = [
    Column("Target", lambda r: r.target.name),
    Column("Protocol", lambda r: r.target.protocol),
    Column("Model", lambda r: r.target.model),
    Column("Last result", lambda r: _outcome(r.last)),
    Column(
        "Last TTFT",
        lambda r: _seconds(r.last.result.time_to_first_token) if r.last else "-",
    ),
    Column("Last probe (UTC)", lambda r: iso_utc(r.last.result.started_at if r.last else None)),
    Column("Last success (UTC)", lambda r: iso_utc(r.last_success)),
    Column("Failure reason", lambda r: _failure(r.last)),
]

RECENT_COLUMNS: list[Column[ProbeRecord]] = [
    Column("Started (UTC)", lambda r: iso_utc(r.result.started_at)),
    Column("Target", lambda r: r.target),
    Column("Result", _outcome),
    Column("TTFT", lambda r: _seconds(r.result.time_to_first_token)),
    Column("Failure reason", _failure),
    # The exporter itself was starved during the probe (loop lag, CPU throttling).
    Column("Suspect", lambda r: ", ".join(r.result.suspect) or "-"),
]


@dataclass(frozen=True)
class FluxRow:
    """A configured Flux instance and what its monitor and canary know."""

    name: str
    url: str
    running: FluxRunning | None


def _flux_state(row: FluxRow) -> str:
    if row.running is None:
        return "not started"
    monitor = row.running.monitor
    if monitor.stale:
        return "stale"
    return "connected" if monitor.connected else "disconnected"


def _flux_age(row: FluxRow) -> str:
    age = None if row.running is None else row.running.monitor.last_message_age()
    return "no message yet" if age is None else f"{age:.1f}s ago"


def _canary(row: FluxRow) -> str:
    canary = None if row.running is None else row.running.canary
    if canary is None:
        return "no canary configured"
    last = canary.last
    if last is None:
        return "not run yet"
    if last.reason is None:
        return f"success: {_seconds(last.propagation)} at {iso_utc(last.at)}"
    return f"failure: {last.reason} at {iso_utc(last.at)}"


FLUX_COLUMNS: list[Column[FluxRow]] = [
    Column("Instance", lambda r: r.name),
    Column("URL", lambda r: r.url),
    Column("Stream", _flux_state),
    Column("Last message", _flux_age),
    Column("Canary last result", _canary),
]


def _table(
    columns: Sequence[Column[Row]],
    rows: Iterable[Row],
    extra: tuple[str, Callable[[Row], str]] | None = None,
) -> str:
    """A table; `extra` is a trailing column of trusted HTML built by this module."""
    head = "".join(f"<th>{html.escape(c.header)}</th>" for c in columns)
    if extra is not None:
        head += f"<th>{html.escape(extra[0])}</th>"
    body = []
    for row in rows:
        cells = "".join(f"<td>{html.escape(c.text(row))}</td>" for c in columns)
        if extra is not None:
            cells += f"<td>{extra[1](row)}</td>"
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _probe_now_form(row: TargetRow) -> str:
    # POST: a GET (a prefetch, a crawler, a link preview) must not send a request that
    # may be paid. The relative action keeps working behind a path prefix.
    name = html.escape(row.target.name, quote=True)
    return (
        '<form method="post" action="-/probe-now">'
        f'<input type="hidden" name="target" value="{name}">'
        '<button type="submit">probe now</button></form>'
    )


def _logs_link(record: ProbeRecord) -> str:
    return f'<a href="logs?id={record.id}">logs</a>'


def target_rows(
    config: Config, records: Sequence[ProbeRecord], store: MetricStore
) -> list[TargetRow]:
    """One row per configured target, from the history (newest first) and the store."""
    latest: dict[str, ProbeRecord] = {}
    success: dict[str, float] = {}
    for record in records:
        latest.setdefault(record.target, record)
        if record.result.success and record.result.started_at:
            success.setdefault(record.target, record.result.started_at)
    rows = []
    for target in config.targets:
        # The newest success over the target's scenarios.
        stamps = [
            series.get("ttft_probe_last_success_timestamp_seconds")
            for series in store.of_target(target.name)
        ]
        stamp = max(filter(None, stamps), default=None)
        # The store keeps the last success of scheduled probes however old it is; the
        # history adds ad-hoc ones while they are recent.
        last_success = max(filter(None, (stamp, success.get(target.name))), default=None)
        rows.append(TargetRow(target, latest.get(target.name), last_success))
    return rows


def render_index(
    config: Config,
    records: Sequence[ProbeRecord],
    store: MetricStore,
    flux: dict[str, FluxRunning],
) -> str:
    """The whole page."""
    targets = _table(
        TARGET_COLUMNS, target_rows(config, records, store), ("Probe", _probe_now_form)
    )
    flux_rows = [FluxRow(f.name, f.url, flux.get(f.name)) for f in config.flux]
    flux_section = f"<h2>Flux</h2>{_table(FLUX_COLUMNS, flux_rows)}" if flux_rows else ""
    recent = _table(RECENT_COLUMNS, records[:RECENT_LIMIT], ("Debug", _logs_link))
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>ttft_exporter</title>'
        "</head><body>"
        f"<h1>ttft_exporter {html.escape(__version__)}</h1>"
        '<p><a href="metrics">Metrics</a> · <a href="config">Configuration</a> · '
        '<a href="-/healthy">Health</a> · <a href="-/ready">Readiness</a></p>'
        f"<h2>Targets</h2>{targets}"
        f"{flux_section}"
        f"<h2>Recent probes</h2>{recent}"
        "</body></html>"
    )
