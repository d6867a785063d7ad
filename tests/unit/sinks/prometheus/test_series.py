"""The catalogue, the per-target series store, recording and the text renderer
(sinks/prometheus/series.py, record.py, render.py)."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_config
from tests.helpers import gap_histogram
from tests.helpers import success_result as success
from ttft_exporter.catalogue import DEFAULT_BUCKETS, OPTIONAL_HISTOGRAMS, PROBE_METRICS, Kind
from ttft_exporter.errors import FailureReason
from ttft_exporter.probes.base import FINISH_REASONS, ProbeResult, ServerTimings
from ttft_exporter.sinks.prometheus.record import record_result
from ttft_exporter.sinks.prometheus.series import MetricStore

LABELS = {"target": "a", "model": "m", "protocol": "openai-chat", "env": 'we"ird\\\n'}
INTER_CHUNK = "ttft_probe_inter_chunk_latency_seconds"
TTFOT = "ttft_probe_time_to_first_output_token_seconds"


def configured(*targets: dict[str, Any], **top: Any) -> MetricStore:
    """A store laid out by a real config, as the server does it (apply_config)."""
    config = make_config(*({"url": "http://127.0.0.1:9/v1", **t} for t in targets), **top)
    store = MetricStore()
    store.apply_config(config)
    return store


def all_histograms() -> MetricStore:
    """A store whose target `a` exports every optional histogram too."""
    return configured({"name": "a", "histograms": dict.fromkeys(OPTIONAL_HISTOGRAMS, True)})


def with_inter_chunk() -> MetricStore:
    """A store whose target `a` exports the (optional) inter-chunk histogram."""
    return configured({"name": "a", "histograms": {"inter_chunk_latency": True}})


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
    one = success(output_tokens=1, decode_tokens=0, time_per_output_token=None, duration=0.3)
    record_result(series, one, timeout=5.0)
    assert nan(sample(store, "ttft_probe_last_output_tokens_per_second"))
    assert sample(store, "ttft_probe_burst_streams_total") == 0.0


def test_burst_feeds_no_decode_figure() -> None:
    store = with_inter_chunk()
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
    rejected = success(
        output_tokens=3, decode_tokens=2, usage_source="chunks", usage_rejected="negative"
    )
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

    from ttft_exporter.catalogue import EXPORTER_METRICS, FLUX_METRICS

    readme = (Path(__file__).resolve().parents[4] / "README.md").read_text()
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
    store = all_histograms()
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
    store = all_histograms()
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


# --- a series count that fits production (issue #9, section 4) ----------------------

DEFAULT_SERIES_CAP = 80


def series_lines(store: MetricStore, *, openmetrics: bool = False) -> list[str]:
    """The sample lines of a real render (one per series)."""
    text = store.render(openmetrics=openmetrics)
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def probed_once(store: MetricStore, **overrides: object) -> MetricStore:
    """Target `a` after one successful probe: every gauge set, every phase there."""
    record_result(store.ensure("a", LABELS), success(**overrides), timeout=5.0)
    return store


def test_default_series_count_per_target_is_at_most_80() -> None:
    # Before issue #9: 215 series per target (26 latency boundaries in 4 histograms,
    # 21 inter-token ones in 2, 19 duration ones). Counted from a real render of a
    # target configured with every default, after a probe set every gauge.
    lines = series_lines(probed_once(configured({"name": "a"})))
    assert all('target="a"' in line for line in lines)
    assert len(lines) <= DEFAULT_SERIES_CAP, len(lines)
    # The families the rules read are all there.
    for family in (
        "ttft_probe_time_to_first_token_seconds_bucket",
        "ttft_probe_time_per_output_token_seconds_bucket",
        "ttft_probe_requests_total",
        "ttft_probe_failures_total",
        "ttft_probe_decode_tokens_total",
        "ttft_probe_generation_seconds_total",
        "ttft_probe_usage_rejected_total",
        "ttft_probe_output_tokens_total",
        "ttft_probe_input_tokens_total",
    ):
        assert any(line.startswith(family + "{") for line in lines), family


def test_default_latency_buckets_start_at_5ms() -> None:
    # A sidecar beside a local model sees 5-15 ms TTFT: it must not all land in one
    # bucket below 25 ms.
    store = probed_once(configured({"name": "a"}), time_to_first_token=0.007)
    name = "ttft_probe_time_to_first_token_seconds_bucket"
    assert DEFAULT_BUCKETS["latency"][0] == 0.005
    assert sample(store, name, le="0.005") == 0.0
    assert sample(store, name, le="0.01") == 1.0


@pytest.mark.parametrize("key", sorted(OPTIONAL_HISTOGRAMS))
def test_each_optional_histogram_is_off_by_default_and_on_when_asked(key: str) -> None:
    family = OPTIONAL_HISTOGRAMS[key]
    bucket_set = next(s.buckets for s in PROBE_METRICS if s.name == family)
    off = series_lines(probed_once(configured({"name": "a"})))
    on = series_lines(probed_once(configured({"name": "a", "histograms": {key: True}})))
    assert not any(line.startswith(family) for line in off)
    assert any(line.startswith(f"{family}_count{{") for line in on)
    # Its boundaries, +Inf, _sum and _count: nothing else changes.
    assert len(on) - len(off) == len(DEFAULT_BUCKETS[bucket_set or "latency"]) + 3


def test_histograms_switched_off_ignore_observations() -> None:
    store = configured(
        {"name": "a", "histograms": {"time_to_first_output_token": False}},
    )
    probed_once(store, reasoning_chunks=5)  # `false` is not `auto`: reasoning does not count
    assert not any(line.startswith(TTFOT) for line in series_lines(store))
    assert sample(store, "ttft_probe_time_to_first_token_seconds_count") == 1.0


def test_ttfot_auto_turns_on_after_a_reasoning_probe_and_stays_on() -> None:
    store = configured({"name": "a"})
    probed_once(store)  # an answer without reasoning: TTFOT would equal TTFT
    assert not any(line.startswith(TTFOT) for line in series_lines(store))
    probed_once(store, reasoning_chunks=3, time_to_first_output_token=0.45)
    assert sample(store, f"{TTFOT}_count") == 1.0
    assert sample(store, f"{TTFOT}_bucket", le="0.5") == 1.0
    probed_once(store, time_to_first_output_token=0.3)  # no reasoning this time
    assert sample(store, f"{TTFOT}_count") == 2.0
    # A reload that leaves the switch at auto keeps it on.
    store.apply_config(make_config({"name": "a", "url": "http://127.0.0.1:9/v1"}))
    assert sample(store, f"{TTFOT}_count") == 2.0


def test_slo_thresholds_add_boundaries_only_to_the_targets_they_select() -> None:
    # First match wins per kind, as in the rules: `a` takes its own TTFT threshold
    # (2.5 s) over the prod SLO's (0.7 s); `b` takes the prod one; `c` (dev) neither,
    # only slos.ttft_threshold (0.8, a default boundary). TPOT 60 ms: prod only.
    slos = {
        "targets": [
            {"selector": {"name": "a"}, "ttft": {"threshold": "2.5s"}},
            {
                "selector": {"labels": {"env": "prod"}},
                "ttft": {"objective": 0.99, "threshold": "700ms"},
                "tpot": {"objective": 0.99, "threshold": "60ms"},
            },
        ]
    }
    store = configured(
        {"name": "a", "labels": {"env": "prod"}},
        {"name": "b", "labels": {"env": "prod"}},
        {"name": "c", "labels": {"env": "dev"}},
        slos=slos,
    )
    for name in ("a", "b", "c"):
        store.ensure(name, {"target": name})
    text = store.render()

    def les(target: str, family: str) -> set[str]:
        pattern = rf'^{family}_bucket{{target="{target}",le="([^"]+)"}}'
        return set(re.findall(pattern, text, re.M))

    ttft, tpot = (
        "ttft_probe_time_to_first_token_seconds",
        "ttft_probe_time_per_output_token_seconds",
    )
    default = {repr(b) for b in DEFAULT_BUCKETS["latency"]} | {"+Inf"}
    assert les("a", ttft) == default | {"2.5"}
    assert les("b", ttft) == default | {"0.7"}
    assert les("c", ttft) == default
    assert "0.06" in les("a", tpot) and "0.06" in les("b", tpot)
    assert "0.06" not in les("c", tpot)
    # The probe of each target buckets its gaps with the target's own boundaries.
    assert 0.06 in store.layout("b").buckets["inter_token"]
    assert 0.06 not in store.layout("c").buckets["inter_token"]


def test_reload_keeps_counters_and_restarts_only_histograms_whose_boundaries_moved() -> None:
    def config(threshold: str) -> Any:
        slos = {
            "targets": [
                {"selector": {"name": "a"}, "tpot": {"objective": 0.9, "threshold": threshold}}
            ]
        }
        return make_config({"name": "a", "url": "http://127.0.0.1:9/v1"}, slos=slos)

    store = MetricStore()
    store.apply_config(config("60ms"))
    probed_once(store)
    assert store.apply_config(config("60ms")) == []  # nothing moved
    assert store.apply_config(config("70ms")) == ["a"]
    tpot = "ttft_probe_time_per_output_token_seconds"
    assert sample(store, f"{tpot}_count") == 0.0  # new boundaries: from zero
    assert sample(store, f"{tpot}_bucket", le="0.07") == 0.0
    assert sample(store, f"{tpot}_bucket", le="0.06") is None
    # Everything else carries on.
    assert sample(store, "ttft_probe_time_to_first_token_seconds_count") == 1.0
    assert sample(store, "ttft_probe_requests_total", outcome="success") == 1.0
    assert sample(store, "ttft_probe_success") == 1.0


def test_help_text_is_escaped_per_exposition_format() -> None:
    # Classic text escapes backslash and line feed in HELP (a raw line feed would end
    # the comment and the rest would be read as a sample); OpenMetrics escapes double
    # quotes too. Both parsers of prometheus_client must read the text back unchanged.
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as parse_openmetrics,
    )

    from ttft_exporter.catalogue import MetricSpec
    from ttft_exporter.sinks.prometheus.render import family_header as _family_header

    spec = MetricSpec("ttft_probe_demo_total", Kind.COUNTER, 'a \\ b\nc "d"')
    classic = _family_header(spec, False)
    assert classic.startswith('# HELP ttft_probe_demo_total a \\\\ b\\nc "d"\n')
    (family,) = text_string_to_metric_families(classic + "ttft_probe_demo_total 1.0\n")
    assert family.documentation == spec.help
    openmetrics = _family_header(spec, True)
    assert openmetrics.startswith('# HELP ttft_probe_demo a \\\\ b\\nc \\"d\\"\n')
    (family,) = parse_openmetrics(openmetrics + "ttft_probe_demo_total 1.0\n# EOF\n")  # type: ignore[no-untyped-call]
    assert family.documentation == spec.help


def test_every_family_parses_in_both_formats_and_passes_promtool() -> None:
    import subprocess

    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as parse_openmetrics,
    )

    from tests.helpers import require_tool

    every = dict.fromkeys(OPTIONAL_HISTOGRAMS, True)
    store = probed_once(configured({"name": "a", "histograms": every}))
    classic = store.render()
    docs = {f.name: f.documentation for f in text_string_to_metric_families(classic)}
    for spec in PROBE_METRICS:
        name = spec.name.removesuffix("_total") if spec.kind is Kind.COUNTER else spec.name
        assert docs[name] == spec.help
    om = {f.name for f in parse_openmetrics(store.render(openmetrics=True) + "# EOF\n")}  # type: ignore[no-untyped-call]
    assert len(om) == len(PROBE_METRICS)
    promtool = require_tool("promtool", "prometheus")
    # Bounded by a timeout that holds on a starved machine; promtool reads stdin.
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=classic.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_readme_series_table_matches_a_real_render() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[4] / "README.md").read_text()
    every = dict.fromkeys(OPTIONAL_HISTOGRAMS, True)
    rows: dict[str, dict[str, Any]] = {
        "default": {},
        "`time_to_first_output_token: true` (or `auto` once reasoning was streamed)": {
            "time_to_first_output_token": True
        },
        "`time_to_first_byte: true`": {"time_to_first_byte": True},
        "`time_to_first_chunk: true`": {"time_to_first_chunk": True},
        "`inter_chunk_latency: true`": {"inter_chunk_latency": True},
        "all four on": every,
    }
    for label, histograms in rows.items():
        count = len(series_lines(probed_once(configured({"name": "a", "histograms": histograms}))))
        assert f"| {label} | {count} |" in readme, f"README: {label} should say {count}"
    default = len(series_lines(probed_once(configured({"name": "a"}))))
    assert f"A target exports **{default} series** by default" in readme


# --- server-reported timings (issue #10 section 3) ----------------------------------

SERVER_GAUGES = (
    "ttft_probe_server_load_seconds",
    "ttft_probe_server_prefill_seconds",
    "ttft_probe_server_decode_seconds",
    "ttft_probe_server_total_seconds",
)
OVERHEAD = "ttft_probe_prefill_overhead_seconds"
OLLAMA_TIMINGS = ServerTimings(load=0.05, prefill=0.2, decode=0.3, total=0.56)


def server_lines(store: MetricStore) -> list[str]:
    return [
        line
        for line in series_lines(store)
        if line.startswith(("ttft_probe_server_", "ttft_probe_prefill_overhead"))
    ]


def test_server_timings_and_the_overhead_are_exported_for_the_last_probe() -> None:
    store = MetricStore()
    record_result(store.ensure("a", LABELS), success(server_timings=OLLAMA_TIMINGS), timeout=5.0)
    assert sample(store, "ttft_probe_server_load_seconds") == 0.05
    assert sample(store, "ttft_probe_server_prefill_seconds") == 0.2
    assert sample(store, "ttft_probe_server_decode_seconds") == 0.3
    assert sample(store, "ttft_probe_server_total_seconds") == 0.56
    # Client TTFT 0.3 s less the server's 0.05 s load and 0.2 s prefill.
    assert sample(store, OVERHEAD) == pytest.approx(0.05)


def test_no_server_timings_means_no_series_not_nan_or_zero() -> None:
    store = MetricStore()
    record_result(store.ensure("a", LABELS), success(), timeout=5.0)
    assert server_lines(store) == []


@pytest.mark.parametrize(
    "later",
    [
        success(),  # a probe whose server reported nothing this time
        ProbeResult(success=False, reason=FailureReason.TIMEOUT, started_at=1700000100.0),
        # Only part of them: the rest of the earlier report must not linger.
        success(server_timings=ServerTimings(decode=0.4)),
    ],
    ids=["none-reported", "failure", "partial"],
)
def test_a_later_probe_removes_the_values_it_did_not_report(later: ProbeResult) -> None:
    store = MetricStore()
    series = store.ensure("a", LABELS)
    record_result(series, success(server_timings=OLLAMA_TIMINGS), timeout=5.0)
    assert len(server_lines(store)) == 5
    record_result(series, later, timeout=5.0)
    reported = later.server_timings if later.success else None
    decode = reported.decode if reported is not None else None
    assert sample(store, "ttft_probe_server_decode_seconds") == decode
    for name in ("ttft_probe_server_load_seconds", "ttft_probe_server_prefill_seconds"):
        assert sample(store, name) is None
    assert sample(store, "ttft_probe_server_total_seconds") is None
    assert sample(store, OVERHEAD) is None  # no prefill, no overhead


def test_a_suspect_probe_keeps_server_timings_but_not_the_client_overhead() -> None:
    store = MetricStore()
    result = success(server_timings=OLLAMA_TIMINGS, suspect=("loop_lag",))
    record_result(store.ensure("a", LABELS), result, timeout=5.0, drop_suspect=True)
    # The server timed these itself; the exporter's starvation cannot have spoilt them.
    assert sample(store, "ttft_probe_server_prefill_seconds") == 0.2
    assert sample(store, OVERHEAD) is None


def test_overhead_without_a_load_time_is_ttft_less_prefill_and_not_clamped() -> None:
    store = MetricStore()
    series = store.ensure("a", LABELS)
    record_result(series, success(server_timings=ServerTimings(prefill=0.1)), timeout=5.0)
    assert sample(store, OVERHEAD) == pytest.approx(0.2)
    assert sample(store, "ttft_probe_server_load_seconds") is None
    # A server claiming more prefill than the client's TTFT: shown as it is, below 0.
    record_result(series, success(server_timings=ServerTimings(prefill=0.45)), timeout=5.0)
    assert sample(store, OVERHEAD) == pytest.approx(-0.15)


def test_server_timing_series_per_target() -> None:
    # The default (OpenAI-compatible) target stays within the cap: it reports none.
    default = series_lines(probed_once(configured({"name": "a"})))
    assert len(default) <= DEFAULT_SERIES_CAP
    # An Ollama target after a probe that reported all four durations: five more.
    ollama = configured(
        {"name": "a", "protocol": "ollama-chat", "url": "http://127.0.0.1:9"},
    )
    lines = series_lines(probed_once(ollama, server_timings=OLLAMA_TIMINGS))
    assert len(lines) == len(default) + 5


def test_readme_server_timing_rows_match_a_real_render() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[4] / "README.md").read_text()
    rows = {
        "Ollama (load, prefill, decode, total, and the overhead), default `histograms:`": (
            OLLAMA_TIMINGS
        ),
        "llama.cpp `timings` (prefill, decode, and the overhead), default `histograms:`": (
            ServerTimings(prefill=0.1, decode=0.2)
        ),
    }
    for label, timings in rows.items():
        count = len(series_lines(probed_once(configured({"name": "a"}), server_timings=timings)))
        assert f"| {label} | {count} |" in readme, f"README: {label} should say {count}"
