"""Exemplars on the latency histograms (sinks/prometheus/exemplars.py, recorded by
record.py, rendered by series.py): only in OpenMetrics, the latest per bucket, the
classic text byte-identical with or without trace ids."""

from __future__ import annotations

import dataclasses
from typing import Any

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)

from tests.conftest import make_config
from ttft_exporter.catalogue import OPTIONAL_HISTOGRAMS
from ttft_exporter.errors import FailureReason
from ttft_exporter.probes.base import ProbeResult
from ttft_exporter.sinks.prometheus.exemplars import EXEMPLAR_FAMILIES, MAX_LABEL_CHARS, ProbeTrace
from ttft_exporter.sinks.prometheus.record import record_result
from ttft_exporter.sinks.prometheus.series import MetricStore

TTFT = "ttft_probe_time_to_first_token_seconds"
DURATION = "ttft_probe_duration_seconds"
TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN = 0x00F067AA0BA902B7
TRACE_HEX = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_HEX = "00f067aa0ba902b7"
STARTED = 1732579200.1234


def _result(**overrides: Any) -> ProbeResult:
    values: dict[str, Any] = {
        "success": True,
        "started_at": STARTED,
        "http_status": 200,
        "time_to_first_byte": 0.006,
        "time_to_first_chunk": 0.007,
        "time_to_first_token": 0.23,
        "time_to_first_output_token": 0.4,
        "duration": 0.68,
        "time_per_output_token": 0.01,
        "output_tokens": 10,
        "decode_tokens": 9,
        "usage_source": "usage",
        "trace_id": TRACE,
        "span_id": SPAN,
    }
    values.update(overrides)
    return ProbeResult(**values)


def _store(**histograms: bool) -> MetricStore:
    config = make_config({"name": "a", "url": "http://127.0.0.1:9/v1", "histograms": histograms})
    store = MetricStore()
    store.apply_config(config)
    store.ensure(
        "a", {"target": "a", "model": "m", "protocol": "openai-chat", "scenario": "default"}
    )
    return store


def _record(store: MetricStore, result: ProbeResult) -> None:
    series = store.get("a")
    assert series is not None
    record_result(series, result, timeout=5.0)


def _exemplars(text: str) -> dict[tuple[str, str], Any]:
    """(sample name, le) -> exemplar of every bucket sample that has one, read by
    prometheus_client's strict OpenMetrics parser."""
    return {
        (s.name, s.labels["le"]): s.exemplar
        for family in parse_openmetrics(text + "# EOF\n")  # type: ignore[no-untyped-call]
        for s in family.samples
        if s.exemplar is not None
    }


def _bucket_of(text: str, name: str, value: float) -> str:
    """The `le` of the first bucket of `name` whose bound is not below `value`."""
    les: list[str] = [
        s.labels["le"]
        for family in parse_openmetrics(text + "# EOF\n")  # type: ignore[no-untyped-call]
        for s in family.samples
        if s.name == f"{name}_bucket"
    ]
    return next(le for le in les if value <= float(le))


def test_exemplar_sits_on_the_bucket_of_the_observed_value() -> None:
    store = _store()
    _record(store, _result())
    text = store.render(openmetrics=True)

    found = _exemplars(text)
    # TTFT 0.23 -> le 0.3 (default latency buckets); duration to its own bucket. The
    # first-chunk and TTFOT histograms are off by default, so they carry none.
    duration_le = _bucket_of(text, DURATION, 0.68)
    assert set(found) == {(f"{TTFT}_bucket", "0.3"), (f"{DURATION}_bucket", duration_le)}
    ttft = found[(f"{TTFT}_bucket", "0.3")]
    assert ttft.labels == {"trace_id": TRACE_HEX, "span_id": SPAN_HEX}
    assert ttft.value == 0.23
    # The probe's start, to the millisecond Prometheus keeps.
    assert float(ttft.timestamp) == 1732579200.123
    assert found[(f"{DURATION}_bucket", duration_le)].value == 0.68
    line = next(x for x in text.splitlines() if x.startswith(f'{TTFT}_bucket{{target="a"'))
    assert 'le="0.005"} 0\n' in text  # buckets without an exemplar are plain
    assert line.endswith(" 0")  # le=0.005: nothing observed, no exemplar
    assert (
        f'{TTFT}_bucket{{target="a",model="m",protocol="openai-chat",scenario="default",le="0.3"}} 1 '
        f'# {{trace_id="{TRACE_HEX}",span_id="{SPAN_HEX}"}} 0.23 1732579200.123\n'
    ) in text


def test_a_value_on_a_boundary_takes_that_buckets_exemplar() -> None:
    store = _store()
    _record(store, _result(time_to_first_token=0.5))
    assert (f"{TTFT}_bucket", "0.5") in _exemplars(store.render(openmetrics=True))


def test_every_exemplar_family_carries_one_when_switched_on() -> None:
    store = _store(**dict.fromkeys(OPTIONAL_HISTOGRAMS, True))
    _record(store, _result())
    names = {name.removesuffix("_bucket") for name, _ in _exemplars(store.render(openmetrics=True))}
    assert names == EXEMPLAR_FAMILIES


def test_the_latest_probe_of_a_bucket_wins_and_other_buckets_keep_theirs() -> None:
    store = _store()
    _record(store, _result(time_to_first_token=0.23))
    _record(store, _result(time_to_first_token=0.9, trace_id=2, span_id=3))
    _record(store, _result(time_to_first_token=0.25, trace_id=4, span_id=5))
    found = _exemplars(store.render(openmetrics=True))
    assert found[(f"{TTFT}_bucket", "0.3")].labels["trace_id"] == f"{4:032x}"
    assert found[(f"{TTFT}_bucket", "0.3")].value == 0.25
    assert found[(f"{TTFT}_bucket", "1.0")].labels == {
        "trace_id": f"{2:032x}",
        "span_id": f"{3:016x}",
    }


def test_classic_text_is_byte_identical_with_or_without_trace_ids() -> None:
    traced, plain = _store(), _store()
    for ttft in (0.23, 0.9, 0.01):
        _record(traced, _result(time_to_first_token=ttft))
        _record(plain, _result(time_to_first_token=ttft, trace_id=None, span_id=None))
    # Classic text first and after an OpenMetrics render: the caches stay apart.
    assert traced.render() == plain.render()
    assert " # {" in traced.render(openmetrics=True)
    assert traced.render() == plain.render()
    assert " # {" not in traced.render()


def test_no_exemplar_without_trace_ids() -> None:
    store = _store()
    _record(store, _result(trace_id=None, span_id=None))
    text = store.render(openmetrics=True)
    assert "trace_id" not in text
    assert _exemplars(text) == {}


def test_openmetrics_cache_follows_new_exemplars() -> None:
    store = _store()
    _record(store, _result())
    first = store.render(openmetrics=True)
    assert store.render(openmetrics=True) == first  # cached
    _record(store, _result(trace_id=9, span_id=9))
    assert (
        _exemplars(store.render(openmetrics=True))[(f"{TTFT}_bucket", "0.3")].labels["trace_id"]
        == f"{9:032x}"
    )


def test_failures_and_dropped_suspects_leave_no_exemplar() -> None:
    store = _store()
    _record(
        store, ProbeResult(False, FailureReason.TIMEOUT, started_at=STARTED, trace_id=1, span_id=1)
    )
    assert _exemplars(store.render(openmetrics=True)) == {}
    config = make_config({"name": "a", "url": "http://127.0.0.1:9/v1", "on_suspect": "drop"})
    dropping = MetricStore()
    dropping.apply_config(config)
    series = dropping.ensure("a", {"target": "a"})
    record_result(series, _result(suspect=("loop_lag",)), timeout=5.0, drop_suspect=True)
    assert _exemplars(dropping.render(openmetrics=True)) == {}


def test_exemplar_label_set_fits_openmetrics_limit() -> None:
    exemplar = ProbeTrace((1 << 128) - 1, (1 << 64) - 1, STARTED).exemplar(0.1)
    size = sum(len(k) + len(v) for k, v in exemplar.labels.items())
    assert size == 63 <= MAX_LABEL_CHARS


def test_exemplar_without_a_wall_time_leaves_the_timestamp_out() -> None:
    exemplar = ProbeTrace(1, 2, 0.0).exemplar(0.5)
    assert exemplar.timestamp is None
    assert exemplar.text.endswith("} 0.5")
    store = _store()
    _record(store, dataclasses.replace(_result(), started_at=0.0))
    assert _exemplars(store.render(openmetrics=True))[(f"{TTFT}_bucket", "0.3")].timestamp is None
