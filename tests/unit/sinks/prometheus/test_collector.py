"""The prometheus_client Collector adapter of the series store: the same samples and
family headers as the hand-written renderer, readable with `get_sample_value`."""

from __future__ import annotations

import math
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_config
from tests.helpers import success_result
from ttft_exporter.catalogue import OPTIONAL_HISTOGRAMS
from ttft_exporter.errors import FailureReason
from ttft_exporter.probes.base import ProbeResult
from ttft_exporter.sinks.prometheus.collector import StoreCollector
from ttft_exporter.sinks.prometheus.record import record_result
from ttft_exporter.sinks.prometheus.series import MetricStore
from ttft_exporter.targets import target_labels

Sample = tuple[str, tuple[tuple[str, str], ...], str, tuple[Any, ...] | None]


def _success(**overrides: Any) -> ProbeResult:
    return success_result(**{"reasoning_chunks": 3, **overrides})


def _store() -> MetricStore:
    """Two targets laid out by a real config: `a` with every optional histogram and a
    label value that needs escaping, `b` with the defaults (and `auto` histograms a
    reasoning probe turns on); successes, a failure, a burst. Target `a`'s probes carry
    trace ids (exemplars), `b`'s do not."""
    config = make_config(
        {
            "name": "a",
            "url": "http://127.0.0.1:9/v1",
            "labels": {"env": 'we"ird\\\n'},
            "histograms": dict.fromkeys(OPTIONAL_HISTOGRAMS, True),
        },
        {"name": "b", "url": "http://127.0.0.1:9/v1"},
    )
    store = MetricStore()
    store.apply_config(config)
    for n, target in enumerate(config.targets):
        series = store.ensure(target.name, target_labels(target))
        ids: dict[str, Any] = {"trace_id": (1 << 127) + n, "span_id": 7} if n == 0 else {}
        record_result(series, _success(**ids), timeout=5.0)
        burst = _success(time_to_first_token=1e-7, burst=True, **ids)
        record_result(series, burst, timeout=5.0)
        failed = ProbeResult(False, FailureReason.TIMEOUT, "slow", started_at=1700000001.0)
        record_result(series, failed, timeout=5.0)
    return store


def _samples(families: Any) -> tuple[set[Sample], dict[str, tuple[str, str]]]:
    samples: set[Sample] = set()
    headers: dict[str, tuple[str, str]] = {}
    for family in families:
        headers[family.name] = (family.type, family.documentation)
        for s in family.samples:
            # NaN != NaN: compare the spelling of the value, normalised through float.
            value = "NaN" if math.isnan(s.value) else repr(float(s.value))
            ex = s.exemplar
            exemplar = (
                None
                if ex is None
                else (tuple(sorted(ex.labels.items())), ex.value, str(ex.timestamp))
            )
            samples.add((s.name, tuple(sorted(s.labels.items())), value, exemplar))
    return samples, headers


def _registry(store: MetricStore) -> CollectorRegistry:
    registry = CollectorRegistry()
    StoreCollector(store, registry)
    return registry


def test_adapter_exposes_the_same_samples_and_headers_as_the_renderer() -> None:
    store = _store()
    ours = _samples(text_string_to_metric_families(store.render()))
    theirs = _samples(text_string_to_metric_families(generate_latest(_registry(store)).decode()))
    assert theirs == ours
    # Not vacuous: both targets, histograms, NaN gauges and the escaped label are in.
    names = {name for name, _, _, _ in ours[0]}
    assert "ttft_probe_inter_chunk_latency_seconds_bucket" in names
    assert any(value == "NaN" for _, _, value, _ in ours[0])
    # The classic text format has no exemplars, on either side.
    assert all(exemplar is None for *_, exemplar in ours[0] | theirs[0])
    assert len(ours[0]) > 150


def test_adapter_matches_the_renderer_in_openmetrics_too() -> None:
    store = _store()
    ours_text = store.render(openmetrics=True) + "# EOF\n"
    ours = _samples(parse_openmetrics(ours_text))  # type: ignore[no-untyped-call]
    core = om_exposition.generate_latest(_registry(store)).decode()  # type: ignore[no-untyped-call]
    theirs = _samples(parse_openmetrics(core))  # type: ignore[no-untyped-call]
    assert theirs == ours
    # Exemplars compared too, and not vacuously: target `a`'s TTFT and duration
    # buckets (and, all histograms on, first chunk and TTFOT) carry them, `b`'s none.
    exemplified = {
        (name, dict(labels)["target"]) for name, labels, _, exemplar in ours[0] if exemplar
    }
    assert exemplified == {
        (f"{name}_bucket", "a")
        for name in (
            "ttft_probe_time_to_first_chunk_seconds",
            "ttft_probe_time_to_first_token_seconds",
            "ttft_probe_time_to_first_output_token_seconds",
            "ttft_probe_duration_seconds",
        )
    }


def test_get_sample_value_reads_the_store() -> None:
    store = _store()
    registry = _registry(store)
    labels = {"target": "b", "model": "m", "protocol": "openai-chat", "scenario": "default"}
    get = registry.get_sample_value
    assert get("ttft_probe_requests_total", {**labels, "outcome": "success"}) == 2.0
    assert get("ttft_probe_failures_total", {**labels, "reason": "timeout"}) == 1.0
    assert get("ttft_probe_burst_streams_total", labels) == 1.0
    assert get("ttft_probe_time_to_first_token_seconds_count", labels) == 2.0
    assert get("ttft_probe_time_to_first_token_seconds_bucket", {**labels, "le": "0.3"}) == 2.0
    # A later probe shows at the next collection: the adapter holds no copy.
    record_result(store.series["b", "default"], _success(), timeout=5.0)
    assert get("ttft_probe_requests_total", {**labels, "outcome": "success"}) == 3.0
