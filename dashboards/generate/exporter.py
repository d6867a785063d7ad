"""Exporter health: is the exporter itself well (config, loops, CPU, event loop,
scrape size), so its latency figures can be trusted."""

from __future__ import annotations

from dashboards.generate.common import (
    JOB,
    RATE,
    Board,
    datasource_variable,
    job_variable,
    query,
    query_variable,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from dashboards.generate.text import describe

UID = "ttft-exporter"
INSTANCE = f'{JOB},instance=~"$instance"'


def build() -> Board:
    board = Board(
        uid=UID,
        title="ttft-exporter health",
        description="The exporter's own health: build, config reloads, probe scheduling, event-loop lag, CPU and memory, series count.",
        tags=["ttft-exporter"],
        variables=[
            datasource_variable(),
            job_variable("ttft_exporter_build_info"),
            query_variable(
                "instance", "Instance", f"ttft_exporter_build_info{{{JOB}}}", "instance"
            ),
        ],
    )
    board.row("Build and config")
    board.add(
        table_panel(
            "Build info",
            describe(
                "Version and Python version of each exporter replica (ttft_exporter_build_info).",
                "replicas on different versions after a rollout finished.",
            ),
            "none",
            query(f"ttft_exporter_build_info{{{INSTANCE}}}", "{{version}}", instant=True),
        ),
        8,
        6,
    )
    board.add(
        stat_panel(
            "Config reload",
            describe(
                "1 if the last configuration load succeeded "
                "(ttft_exporter_config_last_reload_successful).",
                "0 (TTFTExporterConfigReloadFailed): the exporter still runs the old "
                "config; its log says which field is wrong.",
            ),
            "bool_yes_no",
            query(
                f"ttft_exporter_config_last_reload_successful{{{INSTANCE}}}",
                "{{instance}}",
                instant=True,
            ),
            thresholds=((None, "red"), (1, "green")),
        ),
        8,
        6,
    )
    board.add(
        stat_panel(
            "Last successful reload",
            describe(
                "How long ago the configuration was last loaded successfully.",
                "recent while nobody changed the config: something reloads it in a loop.",
            ),
            "s",
            query(
                f"time() - ttft_exporter_config_last_reload_success_timestamp_seconds{{{INSTANCE}}}",
                "{{instance}}",
                instant=True,
            ),
        ),
        8,
        6,
    )

    board.row("Scheduling")
    board.add(
        timeseries_panel(
            "Probes in flight",
            describe(
                "Probes running at this moment, against the configured concurrency cap.",
                "pinned at the cap: probes queue for a slot and start late.",
            ),
            "short",
            query(f"ttft_exporter_probes_in_flight{{{INSTANCE}}}", "{{instance}}"),
        ),
        8,
        8,
    )
    board.add(
        timeseries_panel(
            "Skipped probes",
            describe(
                "Scheduled probes skipped per second because the target's previous probe "
                "was still running.",
                "any: the target is slower than its interval, so it is probed less often "
                "than configured (raise the interval or lower the timeout).",
            ),
            "ops",
            query(
                f"sum by (target) (rate(ttft_exporter_probes_skipped_total{{{INSTANCE}}}[{RATE}]))",
                "{{target}}",
            ),
        ),
        8,
        8,
    )
    board.add(
        timeseries_panel(
            "Background loops: errors and down",
            describe(
                "Failures of long-lived loops per second (each restarted with backoff), "
                "and loops that gave up (then /-/ready answers 503).",
                "any down loop (TTFTExporterBackgroundLoopDown); errors that repeat "
                "(TTFTExporterBackgroundErrors).",
            ),
            "short",
            query(
                f"sum by (component) (rate(ttft_exporter_background_errors_total{{{INSTANCE}}}[{RATE}]))",
                "{{component}} errors/s",
                "A",
            ),
            query(
                f"sum by (component) (ttft_exporter_background_down{{{INSTANCE}}})",
                "{{component}} down",
                "B",
            ),
        ),
        8,
        8,
    )

    board.row("Starvation")
    board.add(
        timeseries_panel(
            "Event-loop lag p50 / p99",
            describe(
                "How late the event loop ran a wake-up due every 100 ms: every timestamp "
                "of every probe may be late by this much.",
                "p99 above a few ms: TTFT figures include the exporter's own delay (see "
                "suspect probes on the fleet dashboard).",
            ),
            "s",
            *[
                query(
                    f"histogram_quantile({q}, sum by (le, instance) "
                    f"(rate(ttft_exporter_event_loop_lag_seconds_bucket{{{INSTANCE}}}[{RATE}])))",
                    f"{{{{instance}}}} p{int(q * 100)}",
                    ref,
                )
                for q, ref in ((0.5, "A"), (0.99, "B"))
            ],
        ),
        12,
        8,
    )
    board.add(
        timeseries_panel(
            "CPU throttling",
            describe(
                "Share of CFS periods in which the exporter's cgroup ran out of CPU quota "
                "(absent where the cgroup does not expose cpu.stat).",
                "above a few percent: a CPU limit too tight for the exporter; its "
                "timings get the throttled time added.",
            ),
            "percentunit",
            query(
                f"sum by (instance) (rate(ttft_exporter_cpu_throttled_periods_total{{{INSTANCE}}}[{RATE}])) / "
                f"(sum by (instance) (rate(ttft_exporter_cpu_periods_total{{{INSTANCE}}}[{RATE}])) > 0) "
                # No runnable periods (no quota, or idle) means nothing was throttled: 0,
                # not a gap.
                f"or sum by (instance) (rate(ttft_exporter_cpu_throttled_periods_total{{{INSTANCE}}}[{RATE}]))",
                "{{instance}} throttled periods",
                "A",
            ),
            query(
                f"sum by (instance) (rate(ttft_exporter_cpu_throttled_seconds_total{{{INSTANCE}}}[{RATE}]))",
                "{{instance}} throttled s/s",
                "B",
            ),
        ),
        12,
        8,
    )

    board.row("Process")
    board.add(
        timeseries_panel(
            "Process CPU",
            describe(
                "CPU seconds per second the exporter process uses (1 = one core).",
                "close to its CPU limit or request: expect throttling and event-loop lag.",
            ),
            "percentunit",
            query(f"rate(process_cpu_seconds_total{{{INSTANCE}}}[{RATE}])", "{{instance}}"),
        ),
        8,
        8,
    )
    board.add(
        timeseries_panel(
            "Process memory",
            describe(
                "Resident memory of the exporter process.",
                "growing without bound over days: a leak (report it with the config).",
            ),
            "bytes",
            query(f"process_resident_memory_bytes{{{INSTANCE}}}", "{{instance}}"),
        ),
        8,
        8,
    )
    board.add(
        timeseries_panel(
            "Series per scrape",
            describe(
                "Samples the exporter returns per scrape (Prometheus' "
                "scrape_samples_scraped), by default at most 80 per target.",
                "much more than 80 x targets: more buckets or labels than expected, "
                "costly for Prometheus.",
            ),
            "short",
            query(f"scrape_samples_scraped{{{INSTANCE}}}", "{{instance}}"),
        ),
        8,
        8,
    )
    board.add(
        timeseries_panel(
            "OTLP export failures",
            describe(
                "OTLP exports (metrics, traces) per second that failed: the collector "
                "refused, timed out or was unreachable (`otel:` set; 0 otherwise). "
                "Probing never waits for the collector.",
                "above 0 for minutes: the collector is down or rejects us, and OTLP "
                "metrics and traces are being dropped (Prometheus /metrics is unaffected).",
            ),
            "reqps",
            query(
                f"sum by (instance, signal) (rate(ttft_exporter_otlp_export_failures_total{{{INSTANCE}}}[{RATE}]))",
                "{{instance}} {{signal}}",
            ),
        ),
        8,
        8,
    )
    return board
