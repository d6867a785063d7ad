"""The catalogue, the per-target store, recording and the text renderer."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_config
from ttft_exporter.errors import FailureReason
from ttft_exporter.metrics import (
    DEFAULT_BUCKETS,
    OPTIONAL_HISTOGRAMS,
    PROBE_METRICS,
    Kind,
    MetricStore,
    record_result,
)
from ttft_exporter.probes.base import FINISH_REASONS, GapHistogram, ProbeResult

LABELS = {"target": "a", "model": "m", "protocol": "openai-chat", "env": 'we"ird\\\n'}
INTER_CHUNK = "ttft_probe_inter_chunk_latency_seconds"
TTFOT = "ttft_probe_time_to_first_output_token_seconds"


def configured(*targets: dict[str, Any], **top: Any) -> MetricStore:
    """A store laid out by a real config, as the server does it (apply_config)."""
    config = make_config(*({"url": "http://127.0.0.1:9/v1", **t} for t in targets), **top)
    store = MetricStore()
    store.apply_config(config)
    return store


def with_inter_chunk() -> MetricStore:
    """A store whose target `a` exports the (optional) inter-chunk histogram."""
    return configured({"name": "a", "histograms": {"inter_chunk_latency": True}})


def gap_histogram(gaps: tuple[float, ...], bounds: tuple[float, ...] | None = None) -> GapHistogram:
    hist = GapHistogram(bounds or DEFAULT_BUCKETS["inter_token"])
    for gap in gaps:
        hist.observe(gap)
    return hist


def success(**overrides: object) -> ProbeResult:
    values: dict[str, object] = {
        "success": True,
        "started_at": 1700000000.5,
        "phases": {"dns": 0.0, "connect": 0.001, "tls": 0.002, "headers": 0.003},
        "http_status": 200,
        "time_to_first_byte": 0.006,
        "time_to_first_chunk": 0.007,
        "time_to_first_token": 0.3,
        "time_to_first_output_token": 0.5,
        "duration": 0.68,
        "inter_chunk_gaps": gap_histogram((0.02,) * 19),
        "time_per_output_token": 0.38 / 39,
        "output_tokens": 40,
        "usage_source": "usage",
        "input_tokens": 7,
        "finish_reason": "length",
    }
    values.update(overrides)
    return ProbeResult(**values)  # type: ignore[arg-type]


def sample(store: MetricStore, name: str, **labels: str) -> float | None:
    wanted = {**LABELS, **labels}
    for family in text_string_to_metric_families(store.render()):
        for s in family.samples:
            if s.name == name and s.labels == wanted:
                return float(s.value)
    return None


def test_closed_enums_and_counters_exist_at_zero() -> None:
    store = MetricStore()
    store.ensure("a", LABELS)
    for reason in FailureReason:
        assert sample(store, "ttft_probe_failures_total", reason=reason.value) == 0.0
    assert sample(store, "ttft_probe_failures_total", reason="truncated") == 0.0
    for finish in FINISH_REASONS:
        assert sample(store, "ttft_probe_finish_reasons_total", finish_reason=finish) == 0.0
    assert sample(store, "ttft_probe_burst_streams_total") == 0.0
    assert sample(store, "ttft_probe_requests_total", outcome="success") == 0.0
    assert sample(store, "ttft_probe_output_tokens_total", usage_source="chunks") == 0.0
    assert sample(store, "ttft_probe_usage_rejected_total") == 0.0
    assert sample(store, "ttft_probe_time_to_first_token_seconds_count") == 0.0
    # Gauges are absent until a probe sets them: no fake zero TTFT.
    assert sample(store, "ttft_probe_last_time_to_first_token_seconds") is None


def test_record_success() -> None:
    store = with_inter_chunk()
    record_result(store.ensure("a", LABELS), success(), timeout=5.0)
    assert sample(store, "ttft_probe_requests_total", outcome="success") == 1.0
    assert sample(store, "ttft_probe_time_to_first_token_seconds_count") == 1.0
    assert sample(store, "ttft_probe_time_to_first_token_seconds_sum") == 0.3
    assert sample(store, "ttft_probe_time_to_first_token_seconds_bucket", le="0.2") == 0.0
    assert sample(store, "ttft_probe_time_to_first_token_seconds_bucket", le="0.3") == 1.0
    assert sample(store, "ttft_probe_inter_chunk_latency_seconds_count") == 19.0
    assert sample(store, "ttft_probe_output_tokens_total", usage_source="usage") == 40.0
    assert sample(store, "ttft_probe_decode_tokens_total") == 39.0
    assert sample(store, "ttft_probe_generation_seconds_total") == pytest.approx(0.38)
    assert sample(store, "ttft_probe_input_tokens_total") == 7.0
    assert sample(store, "ttft_probe_last_output_tokens_per_second") == pytest.approx(39 / 0.38)
    assert sample(store, "ttft_probe_phase_duration_seconds", phase="tls") == 0.002
    assert sample(store, "ttft_probe_success") == 1.0
    assert sample(store, "ttft_probe_timeout_seconds") == 5.0
    assert sample(store, "ttft_probe_last_success_timestamp_seconds") == 1700000000.5
    assert sample(store, "ttft_probe_finish_reasons_total", finish_reason="length") == 1.0
    assert sample(store, "ttft_probe_burst_streams_total") == 0.0


def test_record_failure_keeps_latencies_out() -> None:
    store = MetricStore()
    failed = ProbeResult(False, FailureReason.STREAM_ERROR, "boom", started_at=1.0, http_status=200)
    record_result(store.ensure("a", LABELS), failed, timeout=5.0)
    assert sample(store, "ttft_probe_failures_total", reason="stream_error") == 1.0
    assert sample(store, "ttft_probe_requests_total", outcome="failure") == 1.0
    assert sample(store, "ttft_probe_success") == 0.0
    assert sample(store, "ttft_probe_time_to_first_token_seconds_count") == 0.0
    assert sample(store, "ttft_probe_last_success_timestamp_seconds") is None
    # Its stream never ended: no finish reason is counted.
    counted = [
        sample(store, "ttft_probe_finish_reasons_total", finish_reason=f) for f in FINISH_REASONS
    ]
    assert counted == [0.0] * len(FINISH_REASONS)


def nan(value: float | None) -> bool:
    return value is not None and math.isnan(value)


def test_unmeasured_last_values_are_nan_never_stale() -> None:
    # One rule for every last-value gauge: a figure the last probe did not measure is
    # NaN (absent before the first probe), never an older probe's value or a made-up
    # 0; the HTTP status is 0 without a response, as in blackbox.
    store = MetricStore()
    series = store.ensure("a", LABELS)
    record_result(series, success(), timeout=5.0)
    failed = ProbeResult(
        False,
        FailureReason.CONNECT,
        "refused",
        started_at=1700000010.0,
        phases={"dns": 0.0, "connect": math.nan, "tls": math.nan, "headers": math.nan},
    )
    record_result(series, failed, timeout=5.0)
    assert sample(store, "ttft_probe_http_status_code") == 0.0
    assert nan(sample(store, "ttft_probe_last_time_to_first_token_seconds"))
    assert nan(sample(store, "ttft_probe_last_output_tokens_per_second"))
    assert sample(store, "ttft_probe_phase_duration_seconds", phase="dns") == 0.0
    for phase in ("connect", "tls", "headers"):
        assert nan(sample(store, "ttft_probe_phase_duration_seconds", phase=phase)), phase
    assert sample(store, "ttft_probe_last_probe_timestamp_seconds") == 1700000010.0
    # The last *success* timestamp means what it says: still the earlier success.
    assert sample(store, "ttft_probe_last_success_timestamp_seconds") == 1700000000.5

    # A result without phases at all (the probe could not even be prepared).
    record_result(series, ProbeResult(False, FailureReason.INTERNAL, "x"), timeout=5.0)
    for phase in ("dns", "connect", "tls", "headers"):
        assert nan(sample(store, "ttft_probe_phase_duration_seconds", phase=phase)), phase

    record_result(series, success(), timeout=5.0)
    assert sample(store, "ttft_probe_http_status_code") == 200.0
    assert sample(store, "ttft_probe_last_time_to_first_token_seconds") == 0.3
    assert sample(store, "ttft_probe_last_output_tokens_per_second") == pytest.approx(39 / 0.38)


def test_single_token_success_has_no_rate() -> None:
    store = MetricStore()
    series = store.ensure("a", LABELS)
    record_result(series, success(), timeout=5.0)
    one = success(output_tokens=1, time_per_output_token=None, duration=0.3)
    record_result(series, one, timeout=5.0)
    assert nan(sample(store, "ttft_probe_last_output_tokens_per_second"))
    assert sample(store, "ttft_probe_burst_streams_total") == 0.0


def test_burst_feeds_no_decode_figure() -> None:
    store = MetricStore()
    series = store.ensure("a", LABELS)
    record_result(series, success(), timeout=5.0)
    burst = success(burst=True, time_per_output_token=None, inter_chunk_gaps=None, duration=0.3)
    record_result(series, burst, timeout=5.0)
    assert sample(store, "ttft_probe_burst_streams_total") == 1.0
    assert sample(store, "ttft_probe_time_per_output_token_seconds_count") == 1.0
    assert sample(store, "ttft_probe_inter_chunk_latency_seconds_count") == 19.0
    assert sample(store, "ttft_probe_decode_tokens_total") == 39.0
    assert sample(store, "ttft_probe_generation_seconds_total") == pytest.approx(0.38)
    assert nan(sample(store, "ttft_probe_last_output_tokens_per_second"))
    # What a burst did measure is kept: TTFT, e2e, tokens.
    assert sample(store, "ttft_probe_time_to_first_token_seconds_count") == 2.0
    assert sample(store, "ttft_probe_duration_seconds_count") == 2.0
    assert sample(store, "ttft_probe_output_tokens_total", usage_source="usage") == 80.0


def test_failure_with_an_ended_stream_counts_its_finish_reason() -> None:
    store = MetricStore()
    truncated = ProbeResult(False, FailureReason.TRUNCATED, "cut", finish_reason="none")
    record_result(store.ensure("a", LABELS), truncated, timeout=5.0)
    assert sample(store, "ttft_probe_failures_total", reason="truncated") == 1.0
    assert sample(store, "ttft_probe_finish_reasons_total", finish_reason="none") == 1.0


def test_gap_histogram_merges_in_one_step_with_the_same_bounds() -> None:
    # 1.6 M gaps (a 200 MB response) reach the store as one merge, not 1.6 M
    # observations on the event loop.
    store = with_inter_chunk()
    series = store.ensure("a", LABELS)
    hist = gap_histogram((0.02, 0.0025, 7.0))
    hist.counts = [c * 1_000_000 for c in hist.counts]
    hist.count, hist.sum = 3_000_000, hist.sum * 1_000_000
    version = series.version
    record_result(series, success(inter_chunk_gaps=hist), timeout=5.0)
    assert series.version - version < 50  # a few dozen series updates, not millions
    name = "ttft_probe_inter_chunk_latency_seconds"
    assert sample(store, f"{name}_count") == 3_000_000
    assert sample(store, f"{name}_bucket", le="0.0025") == 1_000_000
    assert sample(store, f"{name}_bucket", le="0.02") == 2_000_000
    assert sample(store, f"{name}_bucket", le="1.0") == 2_000_000
    assert sample(store, f"{name}_bucket", le="+Inf") == 3_000_000
    assert sample(store, f"{name}_sum") == pytest.approx(7.0225e6)


def test_gap_histogram_with_other_bounds_never_lands_below_its_bucket() -> None:
    # A probe that straddled a bucket change: each bucket moves to the first bucket of
    # the store whose bound is not below its own; count and sum stay exact.
    store = with_inter_chunk()
    series = store.ensure("a", LABELS)
    hist = gap_histogram((0.003, 0.012, 9.0), bounds=(0.004, 0.012))
    record_result(series, success(inter_chunk_gaps=hist), timeout=5.0)
    name = "ttft_probe_inter_chunk_latency_seconds"
    assert sample(store, f"{name}_count") == 3
    assert sample(store, f"{name}_sum") == pytest.approx(9.015)
    assert sample(store, f"{name}_bucket", le="0.0025") == 0  # 0.003 never counted <= 2.5 ms
    assert sample(store, f"{name}_bucket", le="0.005") == 1  # its bucket (<= 4 ms) fits here
    assert sample(store, f"{name}_bucket", le="0.01") == 1  # 12 ms is not <= 10 ms
    assert sample(store, f"{name}_bucket", le="0.02") == 2
    assert sample(store, f"{name}_bucket", le="1.0") == 2
    assert sample(store, f"{name}_bucket", le="+Inf") == 3


def test_rejected_usage_is_counted() -> None:
    store = MetricStore()
    rejected = success(output_tokens=3, usage_source="chunks", usage_rejected="negative")
    record_result(store.ensure("a", LABELS), rejected, timeout=5.0)
    assert sample(store, "ttft_probe_usage_rejected_total") == 1.0
    assert sample(store, "ttft_probe_output_tokens_total", usage_source="chunks") == 3.0
    record_result(store.ensure("a", LABELS), success(), timeout=5.0)
    assert sample(store, "ttft_probe_usage_rejected_total") == 1.0


def test_boundary_value_lands_in_its_bucket() -> None:
    store = MetricStore()
    series = store.ensure("a", LABELS)
    series.observe("ttft_probe_time_to_first_token_seconds", 0.8)
    assert sample(store, "ttft_probe_time_to_first_token_seconds_bucket", le="0.5") == 0.0
    assert sample(store, "ttft_probe_time_to_first_token_seconds_bucket", le="0.8") == 1.0
    assert sample(store, "ttft_probe_time_to_first_token_seconds_bucket", le="+Inf") == 1.0


def test_thresholds_become_boundaries_and_overrides_replace() -> None:
    store = MetricStore()
    store.configure({"inter_token": [0.01, 0.1]}, {"latency": [0.333], "inter_token": [0.05]})
    assert 0.333 in store.buckets["latency"]
    assert set(DEFAULT_BUCKETS["latency"]) < set(store.buckets["latency"])
    assert store.buckets["inter_token"] == (0.01, 0.05, 0.1)
    assert not store.configure(
        {"inter_token": [0.01, 0.1]}, {"latency": [0.333], "inter_token": [0.05]}
    )


def test_labels_escaped_and_render_parses() -> None:
    store = MetricStore()
    record_result(store.ensure("a", LABELS), success(), timeout=5.0)
    families = {f.name: f for f in text_string_to_metric_families(store.render())}
    for spec in PROBE_METRICS:
        name = spec.name.removesuffix("_total") if spec.kind is Kind.COUNTER else spec.name
        assert families[name].type == spec.kind.value
    assert sample(store, "ttft_probe_success") == 1.0  # matched with the weird label value


def test_openmetrics_counter_families_drop_total() -> None:
    store = MetricStore()
    store.ensure("a", LABELS)
    text = store.render(openmetrics=True)
    assert "# TYPE ttft_probe_requests counter" in text
    assert "# TYPE ttft_probe_requests_total" not in text
    assert re.search(r"^ttft_probe_requests_total\{", text, re.M)


def test_labels_change_recreates_series_and_remove_forgets() -> None:
    store = MetricStore()
    first = store.ensure("a", LABELS)
    assert store.ensure("a", LABELS) is first
    assert store.ensure("a", {**LABELS, "env": "x"}) is not first
    store.remove("a")
    assert "target=" not in store.render()


def test_every_catalogue_metric_is_documented_in_the_readme() -> None:
    from pathlib import Path

    from ttft_exporter.metrics import EXPORTER_METRICS, FLUX_METRICS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [
        s.name
        for s in (*PROBE_METRICS, *EXPORTER_METRICS, *FLUX_METRICS)
        if f"`{s.name}`" not in readme
    ]
    assert missing == []


TIMING_HISTOGRAMS = (
    "ttft_probe_time_to_first_token_seconds",
    "ttft_probe_time_to_first_output_token_seconds",
    "ttft_probe_time_to_first_byte_seconds",
    "ttft_probe_time_to_first_chunk_seconds",
    "ttft_probe_duration_seconds",
    "ttft_probe_inter_chunk_latency_seconds",
    "ttft_probe_time_per_output_token_seconds",
)


def test_suspect_causes_exist_at_zero_and_count() -> None:
    store = MetricStore()
    series = store.ensure("a", LABELS)
    assert sample(store, "ttft_probe_suspect_total", cause="loop_lag") == 0.0
    assert sample(store, "ttft_probe_suspect_total", cause="throttled") == 0.0

    record_result(series, success(suspect=("loop_lag", "throttled")), timeout=5.0)
    record_result(
        series, ProbeResult(False, FailureReason.TIMEOUT, suspect=("loop_lag",)), timeout=5.0
    )

    assert sample(store, "ttft_probe_suspect_total", cause="loop_lag") == 2.0
    assert sample(store, "ttft_probe_suspect_total", cause="throttled") == 1.0
    # record (the default): a suspect probe's timings are recorded like any other.
    for name in TIMING_HISTOGRAMS:
        assert series.histogram(name) is not None
        assert series.histogram(name)[0] >= 1, name  # type: ignore[index]


def test_drop_keeps_every_timing_of_a_suspect_probe_out_but_counts_it() -> None:
    store = MetricStore()
    series = store.ensure("a", LABELS)
    record_result(series, success(), timeout=5.0, drop_suspect=True)  # clean: recorded
    before = {name: series.histogram(name) for name in TIMING_HISTOGRAMS}
    last_ttft = series.get("ttft_probe_last_time_to_first_token_seconds")
    generation = series.get("ttft_probe_generation_seconds_total")

    starved = success(
        suspect=("loop_lag",),
        time_to_first_token=0.9,
        duration=0.9,
        phases={"dns": 0.5, "connect": 0.5, "tls": 0.5, "headers": 0.5},
        started_at=1700000100.0,
    )
    record_result(series, starved, timeout=5.0, drop_suspect=True)

    assert {name: series.histogram(name) for name in TIMING_HISTOGRAMS} == before
    assert last_ttft == 0.3
    assert series.get("ttft_probe_generation_seconds_total") == generation
    assert series.get("ttft_probe_decode_tokens_total") == 39.0
    # The last probe's timing gauges: not vouched for, so NaN (not the starved value,
    # not an older probe's).
    for gauge, child in (
        ("ttft_probe_last_time_to_first_token_seconds", ()),
        ("ttft_probe_last_output_tokens_per_second", ()),
        ("ttft_probe_phase_duration_seconds", ("dns",)),
    ):
        value = series.get(gauge, child)
        assert value is not None and math.isnan(value), gauge
    # Counted: the SLO denominators (requests) and token totals stay whole.
    assert series.get("ttft_probe_requests_total", ("success",)) == 2.0
    assert series.get("ttft_probe_suspect_total", ("loop_lag",)) == 1.0
    assert series.get("ttft_probe_output_tokens_total", ("usage",)) == 80.0
    assert series.get("ttft_probe_input_tokens_total") == 14.0
    assert series.get("ttft_probe_success") == 1.0
    assert series.get("ttft_probe_last_success_timestamp_seconds") == 1700000100.0
