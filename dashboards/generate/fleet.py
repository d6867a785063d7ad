"""LLM endpoints fleet overview: how fast, how reliable and how costly every probed
endpoint is, per target, model and scenario, and whether the exporter's own timings
can be trusted."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, table
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.generate.catalogue import has_metric
from dashboards.generate.common import (
    BY,
    PROBE,
    RATE,
    SERIES,
    Board,
    datasource_variable,
    heatmap_panel,
    probe_variables,
    query,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from dashboards.generate.text import describe

UID = "ttft-fleet"
TOKENS_PER_SECOND = "suffix: tok/s"


def _quantiles(metric: str) -> list[prometheus.Dataquery]:
    return [
        query(f"target:{metric}:p{q}_5m{{{PROBE}}}", f"{SERIES} p{q}", ref)
        for q, ref in (("50", "A"), ("95", "B"), ("99", "C"))
    ]


def _p95(metric: str, legend: str, ref: str) -> prometheus.Dataquery:
    return query(
        f"histogram_quantile(0.95, sum by (le, {BY}) (rate({metric}_bucket{{{PROBE}}}[{RATE}])))",
        f"{SERIES} {legend}",
        ref,
        exemplar=metric in EXEMPLAR_HISTOGRAMS,
    )


# The histograms whose buckets carry trace-id exemplars (README "Exemplars").
EXEMPLAR_HISTOGRAMS = (
    "ttft_probe_time_to_first_token_seconds",
    "ttft_probe_duration_seconds",
)


def targets_table() -> table.Panel:
    link = dashboard_builders.DashboardLink("Detail: this target").url(
        f"/d/{UID}/?var-target=${{__value.raw}}&${{__url_time_range}}&var-datasource=${{datasource}}"
    )
    panel = table_panel(
        "Targets",
        describe(
            "One row per target: whether its last probe succeeded (1/0), the share of "
            "probes that succeeded over 5m, p95 TTFT over 5m, the HTTP status and how "
            "long ago the last probe started. Click a target for its detail view.",
            "up = 0, a success ratio under 1, a p95 above the target's threshold, or a "
            "last probe older than a few intervals (the exporter stopped probing it).",
        ),
        "short",
        query(f"ttft_probe_success{{{PROBE}}}", "up", "A", instant=True),
        query(
            f"target:ttft_probe_requests:success_ratio_rate5m{{{PROBE}}}",
            "success",
            "B",
            instant=True,
        ),
        query(
            f"target:ttft_probe_time_to_first_token_seconds:p95_5m{{{PROBE}}}",
            "p95",
            "C",
            instant=True,
        ),
        query(f"ttft_probe_http_status_code{{{PROBE}}}", "status", "D", instant=True),
        query(
            f"time() - ttft_probe_last_probe_timestamp_seconds{{{PROBE}}}", "age", "E", instant=True
        ),
    )
    panel = panel.with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
    panel = panel.with_transformation(
        dm.DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": {"Time": True, "__name__": True, "instance": True, "job": True},
                "renameByName": {
                    "Value #A": "up",
                    "Value #B": "success ratio 5m",
                    "Value #C": "p95 TTFT 5m",
                    "Value #D": "HTTP status",
                    "Value #E": "last probe age",
                },
            },
        )
    )
    panel = panel.override_by_name(
        "target", [dm.DynamicConfigValue(id_val="links", value=[link.build()])]
    )
    panel = panel.override_by_name(
        "success ratio 5m", [dm.DynamicConfigValue(id_val="unit", value="percentunit")]
    )
    panel = panel.override_by_name("p95 TTFT 5m", [dm.DynamicConfigValue(id_val="unit", value="s")])
    panel = panel.override_by_name(
        "last probe age", [dm.DynamicConfigValue(id_val="unit", value="s")]
    )
    return panel.override_by_name(
        "HTTP status", [dm.DynamicConfigValue(id_val="unit", value="none")]
    )


def build() -> Board:
    board = Board(
        uid=UID,
        title="LLM endpoints: fleet overview",
        description="ttft-exporter: latency, reliability, decode speed and probe cost of every probed LLM endpoint.",
        tags=["ttft-exporter", "llm"],
        variables=[datasource_variable(), *probe_variables()],
    )
    board.row("Status")
    board.add(targets_table(), 24, 8)

    board.row("Latency")
    board.add(
        timeseries_panel(
            "TTFT p50 / p95 / p99",
            describe(
                "Time from sending the request to the first generated text (answer or "
                "reasoning), quantiles of successful probes over 5m (recording rules "
                "target:ttft_probe_time_to_first_token_seconds:p*_5m). The cold probe "
                "(scenario cold) is left out, slow on purpose: its TTFT is in the TTFT "
                "distribution and the TTFB vs first chunk vs TTFT panel.",
                "p95 above the SLO threshold (TTFTLatencyRegression), or a p99 far above "
                "p50 (queueing: some requests wait for a free slot).",
            ),
            "s",
            *_quantiles("ttft_probe_time_to_first_token_seconds"),
        ),
        12,
        8,
    )
    board.add(
        timeseries_panel(
            "Time to first output token (TTFOT) p50 / p95 / p99",
            describe(
                "For reasoning models: time to the first answer (non-reasoning) text. "
                "Exported once a target streams reasoning; absent for other models.",
                "TTFOT rising while TTFT stays flat: the model thinks longer before it "
                "answers (a prompt or model change), which users feel as latency.",
            ),
            "s",
            *_quantiles("ttft_probe_time_to_first_output_token_seconds"),
        ),
        12,
        8,
    )
    board.add(
        heatmap_panel(
            "TTFT distribution",
            describe(
                "Successful probes per TTFT bucket over time (the histogram itself, not a "
                "quantile): each column is one rate interval.",
                "a second band above the main one (bimodal: a slow replica or a cold "
                "cache), or the whole band drifting up.",
            ),
            f"sum by (le) (rate(ttft_probe_time_to_first_token_seconds_bucket{{{PROBE}}}[{RATE}]))",
        ),
        12,
        8,
    )
    board.add(
        timeseries_panel(
            "TTFB vs first chunk vs TTFT (p95)",
            describe(
                "Where the wait is: response headers (TTFB), the first stream event of "
                "any kind, and the first text. TTFB and first chunk need "
                "`histograms: {time_to_first_byte: true, time_to_first_chunk: true}`.",
                "a large TTFB: the server queues before answering; TTFB small but TTFT "
                "large: it answers at once and then prefills (long prompt, busy GPU).",
            ),
            "s",
            _p95("ttft_probe_time_to_first_byte_seconds", "TTFB", "A"),
            _p95("ttft_probe_time_to_first_chunk_seconds", "first chunk", "B"),
            _p95("ttft_probe_time_to_first_token_seconds", "TTFT", "C"),
        ),
        12,
        8,
    )
    board.add(
        timeseries_panel(
            "Connection phases (last probe)",
            describe(
                "DNS, TCP connect, TLS and connection-ready-to-headers of each target's "
                "last probe, stacked (0 for a phase a reused connection skipped).",
                "DNS or connect of more than a few ms, or a TLS phase that grows: the "
                "network or the load balancer in front of the model, not the model.",
            ),
            "s",
            query(f"ttft_probe_phase_duration_seconds{{{PROBE}}}", f"{SERIES} {{{{phase}}}}"),
            stacked=True,
        ),
        12,
        8,
    )
    if has_metric("ttft_probe_server_prefill_seconds"):
        # Server timing (#10): only targets whose server reports it (Ollama, llama.cpp).
        board.add(
            timeseries_panel(
                "Server-reported timing vs overhead (last probe)",
                describe(
                    "What the server says it spent on the last probe (model load, prompt "
                    "prefill, decode, total; Ollama and llama.cpp report them), and the "
                    "prefill overhead: client TTFT minus server load + prefill, i.e. "
                    "network, TLS, queueing and HTTP. Only targets whose server reports "
                    "timings have these series.",
                    "a large or growing overhead with a flat server prefill: the time goes "
                    "in front of the model (queue, proxy, network); a load above 0: the "
                    "model was (re)loaded for this request.",
                ),
                "s",
                query(
                    " or ".join(
                        f'label_replace(ttft_probe_server_{phase}_seconds{{{PROBE}}}, "phase", "{phase}", "", "")'
                        for phase in ("load", "prefill", "decode", "total")
                    ),
                    f"{SERIES} server {{{{phase}}}}",
                    "A",
                ),
                query(f"ttft_probe_prefill_overhead_seconds{{{PROBE}}}", f"{SERIES} overhead", "B"),
                min_zero=False,
            ),
            12,
            8,
        )
    board.row("Decode")
    board.add(
        timeseries_panel(
            "Output tokens/s (decode rate)",
            describe(
                "Tokens streamed after the first one divided by the time they took, over "
                "5m (recording rule target:ttft_probe_output_tokens_per_second:rate5m), "
                "without the cold probe.",
                "a drop against the target's usual rate (TokensPerSecondDrop): a busier "
                "or smaller GPU, or batching that got larger.",
            ),
            TOKENS_PER_SECOND,
            query(f"target:ttft_probe_output_tokens_per_second:rate5m{{{PROBE}}}", SERIES),
        ),
        8,
        8,
    )
    board.add(
        timeseries_panel(
            "Inter-chunk latency and TPOT (p95)",
            describe(
                "Gaps between token chunks (needs `histograms: {inter_chunk_latency: "
                "true}`) and time per output token per probe, p95.",
                "inter-chunk p95 far above TPOT: the stream stalls now and then "
                "(preemption, a buffering proxy) although the average is fine.",
            ),
            "s",
            _p95("ttft_probe_inter_chunk_latency_seconds", "inter-chunk", "A"),
            _p95("ttft_probe_time_per_output_token_seconds", "TPOT", "B"),
        ),
        8,
        8,
    )

    board.add(
        timeseries_panel(
            "End-to-end duration p95",
            describe(
                "Request sent to last token chunk, p95 of successful probes.",
                "growing with TTFT flat: decoding got slower (see tokens/s).",
            ),
            "s",
            _p95("ttft_probe_duration_seconds", "e2e", "A"),
        ),
        8,
        8,
    )

    board.row("Reliability")
    board.add(
        timeseries_panel(
            "Success ratio",
            describe(
                "Share of probes that succeeded over 5m (recording rule "
                "target:ttft_probe_requests:success_ratio_rate5m).",
                "anything below 1; below 0.5 pages (LLMProbeFailing). The next panel says why.",
            ),
            "percentunit",
            query(f"target:ttft_probe_requests:success_ratio_rate5m{{{PROBE}}}", SERIES),
        ).max(1),
        8,
        8,
    )
    board.add(
        timeseries_panel(
            "Failures by reason",
            describe(
                "Failed probes per second by bounded reason (connect, tls, http_status, "
                "timeout, stream_error, truncated, ...); only reasons that occurred.",
                "any line: the reason names the layer (connect and tls: network; "
                "http_status: the server refused; timeout/truncated: it stalled).",
            ),
            "reqps",
            query(
                f"sum by ({BY}, reason) (rate(ttft_probe_failures_total{{{PROBE}}}[{RATE}])) > 0",
                f"{SERIES} {{{{reason}}}}",
            ),
            stacked=True,
        ),
        8,
        8,
    )
    board.add(
        timeseries_panel(
            "Finish reasons",
            describe(
                "Why each stream ended, per second: stop, length (max_tokens hit), "
                "content_filter, tool_calls, other, none.",
                "none (the stream ended without one: truncated) or content_filter "
                "appearing; length when the probe expects a short answer.",
            ),
            "reqps",
            query(
                f"sum by ({BY}, finish_reason) (rate(ttft_probe_finish_reasons_total{{{PROBE}}}[{RATE}])) > 0",
                f"{SERIES} {{{{finish_reason}}}}",
            ),
            stacked=True,
        ),
        8,
        8,
    )

    board.row("Tokens and cost")
    board.add(
        timeseries_panel(
            "Tokens spent by probes",
            describe(
                "Input (prompt, as the server reports it) and output tokens per second "
                "that the probes themselves consume.",
                "output tokens well above max_tokens x probe rate (the server ignores "
                "max_tokens), or input tokens growing (a prompt that grew).",
            ),
            TOKENS_PER_SECOND,
            query(
                f"sum by ({BY}) (rate(ttft_probe_output_tokens_total{{{PROBE}}}[{RATE}]))",
                f"{SERIES} output",
                "A",
            ),
            query(
                f"sum by ({BY}) (rate(ttft_probe_input_tokens_total{{{PROBE}}}[{RATE}]))",
                f"{SERIES} input",
                "B",
            ),
        ),
        12,
        8,
    )
    if has_metric("ttft_probe_cost_total"):
        # Cost guard (#10): series only for targets with `cost:` or `budget:`.
        board.add(
            timeseries_panel(
                "Probe cost per hour",
                describe(
                    "What the probes of each target cost per hour, from their tokens and "
                    "the target's `cost:` prices, in the currency of the label (only "
                    "targets with `cost:` have it).",
                    "a step up: a target probed more often, answers that got longer, or a "
                    "pricier model; compare with the daily budget.",
                ),
                "short",
                query(
                    f"sum by ({BY}, currency) (rate(ttft_probe_cost_total{{{PROBE}}}[{RATE}])) * 3600",
                    f"{SERIES} {{{{currency}}}}/h",
                ),
            ),
            12,
            8,
        )
        board.add(
            timeseries_panel(
                "Daily budget: tokens spent today",
                describe(
                    "Input + output tokens the probes of each target spent since 00:00 "
                    "UTC, counted against its `budget:` (only targets with one).",
                    "approaching daily_tokens: the target's probing pauses until 00:00 UTC "
                    "and its panels go blank.",
                ),
                "short",
                query(f"ttft_probe_budget_spent_tokens{{{PROBE}}}", SERIES),
            ),
            8,
            8,
        )
        board.add(
            stat_panel(
                "Budget exhausted",
                describe(
                    "1 while a target's daily budget is spent and its probing is paused "
                    "(until 00:00 UTC); skipped scheduled probes per second beside it.",
                    "1: no fresh data for that target today, so its latency and SLO panels "
                    "are stale; raise the budget or probe less often.",
                ),
                "short",
                query(
                    f"ttft_probe_budget_exhausted{{{PROBE}}}",
                    f"{SERIES} exhausted",
                    "A",
                    instant=True,
                ),
                query(
                    f"sum by ({BY}) (rate(ttft_probe_budget_skipped_total{{{PROBE}}}[{RATE}]))",
                    f"{SERIES} skipped/s",
                    "B",
                    instant=True,
                ),
                thresholds=((None, "green"), (1, "red")),
            ),
            8,
            8,
        )
    board.add(
        stat_panel(
            "Output tokens in range",
            describe(
                "Output tokens the probes consumed over the dashboard's time range.",
                "far more than expected for the probe interval and max_tokens.",
            ),
            "short",
            query(
                f"sum by ({BY}) (increase(ttft_probe_output_tokens_total{{{PROBE}}}[$__range]))",
                SERIES,
                instant=True,
            ),
        ),
        8,
        8,
    )

    board.row("Exporter trust")
    board.add(
        timeseries_panel(
            "Suspect and buffered probes",
            describe(
                "Share of probes during which the exporter itself was starved (event-loop "
                "lag or CPU throttling: their timings include the exporter's wait) and "
                "share of successful probes whose tokens arrived in one burst (a buffering "
                "proxy: decode figures are not measured).",
                "suspect above 0.1 (TTFTExporterStarved): give the exporter CPU before "
                "trusting the latency panels; buffered above 0.2 (LLMStreamsBuffered).",
            ),
            "percentunit",
            query(
                f"sum by ({BY}) (rate(ttft_probe_suspect_total{{{PROBE}}}[{RATE}])) / "
                f"(sum by ({BY}) (rate(ttft_probe_requests_total{{{PROBE}}}[{RATE}])) > 0)",
                f"{SERIES} suspect",
                "A",
            ),
            query(
                f"sum by ({BY}) (rate(ttft_probe_burst_streams_total{{{PROBE}}}[{RATE}])) / "
                f'(sum by ({BY}) (rate(ttft_probe_requests_total{{{PROBE},outcome="success"}}[{RATE}])) > 0)',
                f"{SERIES} buffered",
                "B",
            ),
        ).max(1),
        24,
        7,
    )
    return board
