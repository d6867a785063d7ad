"""Flux event stream: is the WebSocket up and fresh, how many events flow, how late
state updates arrive, and whether a published canary comes back."""

from __future__ import annotations

from grafana_foundation_sdk.builders import prometheus

from dashboards.generate.common import (
    JOB,
    RATE,
    Board,
    datasource_variable,
    job_variable,
    query,
    query_variable,
    stat_panel,
    timeseries_panel,
)
from dashboards.generate.text import describe

UID = "ttft-flux"
FLUX = f'{JOB},flux=~"$flux"'


def _p95(metric: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return query(
        f"histogram_quantile(0.95, sum by (le, flux) (rate({metric}_bucket{{{FLUX}}}[{RATE}])))",
        f"{{{{flux}}}} {legend}",
        ref,
    )


def build() -> Board:
    board = Board(
        uid=UID,
        title="Flux event stream",
        description="ttft-exporter's Flux monitor: stream health, event throughput, state-update lag and the canary round trip.",
        tags=["ttft-exporter", "flux"],
        variables=[
            datasource_variable(),
            job_variable("ttft_flux_up"),
            query_variable("flux", "Flux", f"ttft_flux_up{{{JOB}}}", "flux"),
        ],
    )
    board.row("Stream")
    board.add(
        stat_panel(
            "Stream up",
            describe(
                "1 when the WebSocket is connected and a message arrived within "
                "stale_after (ttft_flux_up).",
                "0 for minutes (FluxStreamDown): every other Flux panel is blind.",
            ),
            "bool_on_off",
            query(f"ttft_flux_up{{{FLUX}}}", "{{flux}}", instant=True),
            thresholds=((None, "red"), (1, "green")),
        ),
        6,
        6,
    )
    board.add(
        timeseries_panel(
            "Staleness (time since last message)",
            describe(
                "Seconds since the last WebSocket message of any kind.",
                "above stale_after (FluxStreamStale): connected but silent, a stuck "
                "Flux or a half-open connection.",
            ),
            "s",
            query(f"time() - ttft_flux_last_message_timestamp_seconds{{{FLUX}}}", "{{flux}}"),
        ),
        9,
        6,
    )
    board.add(
        timeseries_panel(
            "Reconnects by reason",
            describe(
                "WebSocket reconnects per second by why the previous connection ended.",
                "a steady rate: the connection keeps dropping (the reason names the "
                "layer: refused, handshake, stale, closed by server, ...).",
            ),
            "ops",
            query(
                f"sum by (flux, reason) (rate(ttft_flux_reconnects_total{{{FLUX}}}[{RATE}]))",
                "{{flux}} {{reason}}",
            ),
            stacked=True,
        ),
        9,
        6,
    )

    board.row("Throughput")
    board.add(
        timeseries_panel(
            "Events/s: derived vs reported",
            describe(
                "Events Flux processed per second, from the deltas of its events.total "
                "(recording rule flux:ttft_flux_events_processed:rate5m), beside Flux's "
                "own rate_per_second, which freezes at its last value when traffic stops.",
                "the derived rate falling toward 0 (FluxEventRateDrop) while the "
                "reported one stays flat: trust the derived one.",
            ),
            "ops",
            query(
                f"flux:ttft_flux_events_processed:rate5m{{{FLUX}}}", "{{flux}} derived (5m)", "A"
            ),
            query(
                f"sum by (flux) (rate(ttft_flux_events_processed_total{{{FLUX}}}[{RATE}]))",
                "{{flux}} derived",
                "B",
            ),
            query(f"ttft_flux_reported_events_per_second{{{FLUX}}}", "{{flux}} reported", "C"),
        ),
        12,
        8,
    )
    board.add(
        timeseries_panel(
            "Messages by type",
            describe(
                "WebSocket messages per second by type, plus malformed frames.",
                "malformed frames above 0 (a protocol change), or state_update "
                "messages stopping while metrics_update goes on.",
            ),
            "ops",
            query(
                f"sum by (flux, type) (rate(ttft_flux_messages_total{{{FLUX}}}[{RATE}]))",
                "{{flux}} {{type}}",
                "A",
            ),
            query(
                f"sum by (flux) (rate(ttft_flux_malformed_messages_total{{{FLUX}}}[{RATE}]))",
                "{{flux}} malformed",
                "B",
            ),
        ),
        12,
        8,
    )
    board.add(
        timeseries_panel(
            "Entities, publishers and WebSocket connections",
            describe(
                "What Flux reports about itself: entities in memory, distinct publishers "
                "in its window, open /api/ws sessions (ours included).",
                "publishers dropping (sources stopped sending), entities growing without "
                "bound, or connections piling up (clients that never close).",
            ),
            "short",
            query(f"ttft_flux_entities{{{FLUX}}}", "{{flux}} entities", "A"),
            query(f"ttft_flux_publishers_active{{{FLUX}}}", "{{flux}} publishers", "B"),
            query(f"ttft_flux_websocket_connections{{{FLUX}}}", "{{flux}} ws connections", "C"),
        ),
        12,
        8,
    )
    board.add(
        timeseries_panel(
            "State updates by group",
            describe(
                "state_update messages per second by configured entity-id prefix group.",
                "a group going silent while others flow: its publishers stopped.",
            ),
            "ops",
            query(
                f"sum by (flux, group) (rate(ttft_flux_state_updates_total{{{FLUX}}}[{RATE}]))",
                "{{flux}} {{group}}",
            ),
            stacked=True,
        ),
        12,
        8,
    )

    board.row("Latency")
    board.add(
        timeseries_panel(
            "State-update lag p50 / p95",
            describe(
                "Receive time minus the state_update's server timestamp (two hosts' wall "
                "clocks: a constant offset is clock skew).",
                "growing lag: Flux or the WebSocket falls behind the events.",
            ),
            "s",
            query(
                f"histogram_quantile(0.5, sum by (le, flux) (rate(ttft_flux_state_update_lag_seconds_bucket{{{FLUX}}}[{RATE}])))",
                "{{flux}} p50",
                "A",
            ),
            _p95("ttft_flux_state_update_lag_seconds", "p95", "B"),
        ),
        12,
        8,
    )
    board.add(
        timeseries_panel(
            "Canary publish and propagation (p95)",
            describe(
                "The canary's POST until its acknowledgement (publish), and until its "
                "state_update arrived on our WebSocket (propagation); the 5m p95 is the "
                "recording rule FluxCanaryPropagationSlow reads.",
                "propagation p95 above 2 s (FluxCanaryPropagationSlow): events reach "
                "subscribers late although the publish was quick.",
            ),
            "s",
            _p95("ttft_flux_canary_publish_seconds", "publish", "A"),
            _p95("ttft_flux_canary_propagation_seconds", "propagation", "B"),
            query(
                f"flux:ttft_flux_canary_propagation_seconds:p95_5m{{{FLUX}}}",
                "{{flux}} propagation p95 5m",
                "C",
            ),
        ),
        12,
        8,
    )

    board.row("Failures")
    board.add(
        timeseries_panel(
            "Canary failures by reason",
            describe(
                "Failed canary checks per second by reason (publish refused, timed out, "
                "never seen on the stream, ...).",
                "any sustained rate (FluxCanaryFailing): published events do not come "
                "back to subscribers.",
            ),
            "ops",
            query(
                f"sum by (flux, reason) (rate(ttft_flux_canary_failures_total{{{FLUX}}}[{RATE}]))",
                "{{flux}} {{reason}}",
            ),
            stacked=True,
        ),
        12,
        8,
    )
    board.add(
        timeseries_panel(
            "Background errors and read-check failures",
            describe(
                "Unexpected failures of the Flux loops (each restarted with backoff), "
                "and failed reads of /api/state/entities.",
                "any background error (TTFTExporterBackgroundErrors): a bug or an input "
                "the monitor did not expect; read failures: the query API is down.",
            ),
            "ops",
            query(
                f'sum by (component) (rate(ttft_exporter_background_errors_total{{{JOB},component=~"flux.*"}}[{RATE}]))',
                "{{component}}",
                "A",
            ),
            query(
                f"sum by (flux) (rate(ttft_flux_query_failures_total{{{FLUX}}}[{RATE}]))",
                "{{flux}} read failures",
                "B",
            ),
        ),
        12,
        8,
    )
    return board
