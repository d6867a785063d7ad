"""OTLP metrics as they arrive at a collector: the GenAI semconv v1.41.0 instruments
and the `ttft.*` ones, their units, attribute sets and bucket boundaries, values as
measured; the per-chunk gaps replayed exactly from a probe's fixed-size histogram."""

from __future__ import annotations

import random
import re
from bisect import bisect_left
from typing import Any

import pytest

from tests.otlp_receiver import OTLPReceiver, attributes_of
from tests.unit.sinks.otel.otel_factory import failure, flush, sink_for, success, target
from ttft_exporter.catalogue import DEFAULT_BUCKETS, DEFAULT_INTER_TOKEN_BUCKETS, OTEL_BUCKETS
from ttft_exporter.probes.base import GapHistogram
from ttft_exporter.sinks.otel.metrics import replay_gaps
from ttft_exporter.sinks.otel.providers import otel_specs
from ttft_exporter.sinks.otel.semconv import target_attributes

REQUIRED = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "m",
    "server.address": "127.0.0.1",
    "server.port": 8000,
    "ttft.target": "a",
    "ttft.protocol": "openai-chat",
    "ttft.scenario": "default",
}


def points(metric: Any) -> list[Any]:
    return list(getattr(metric, metric.WhichOneof("data")).data_points)


def by_attributes(metric: Any) -> dict[frozenset[tuple[str, Any]], Any]:
    return {frozenset(attributes_of(p.attributes).items()): p for p in points(metric)}


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_semconv_instruments_as_received(receiver: OTLPReceiver, protocol: str) -> None:
    sink = await sink_for(receiver, protocol, traces=False)
    t = target()
    good, bad = success(), failure()
    sink.on_target(t)
    sink.on_probe_result(t, good, timeout=5)
    sink.on_probe_result(t, bad, timeout=5)
    await flush(sink)
    metrics = receiver.last_metrics()
    # Every instrument is one of the catalogue's (no other list of names exists).
    assert set(metrics) <= {spec.otel_name for spec in otel_specs()}

    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    assert duration.WhichOneof("data") == "histogram"
    found = by_attributes(duration)
    ok = found[frozenset(REQUIRED.items())]
    failed = found[frozenset({**REQUIRED, "error.type": "503"}.items())]
    assert list(ok.explicit_bounds) == list(OTEL_BUCKETS["gen_ai_duration"])
    assert (ok.count, ok.sum) == (1, pytest.approx(good.duration))
    assert (failed.count, failed.sum) == (1, pytest.approx(0.03))

    first_chunk = points(metrics["gen_ai.client.operation.time_to_first_chunk"])
    assert [p.sum for p in first_chunk] == [pytest.approx(0.040)]
    assert list(first_chunk[0].explicit_bounds) == list(OTEL_BUCKETS["gen_ai_duration"])
    assert attributes_of(first_chunk[0].attributes) == REQUIRED

    tokens = by_attributes(metrics["gen_ai.client.token.usage"])
    assert metrics["gen_ai.client.token.usage"].unit == "{token}"
    inputs = tokens[frozenset({**REQUIRED, "gen_ai.token.type": "input"}.items())]
    outputs = tokens[
        frozenset({**REQUIRED, "gen_ai.token.type": "output", "ttft.usage_source": "usage"}.items())
    ]
    assert (inputs.count, inputs.sum, outputs.count, outputs.sum) == (1, 12, 1, 4)
    assert list(inputs.explicit_bounds) == list(OTEL_BUCKETS["gen_ai_tokens"])

    # Our TTFT: the first chunk carrying text (reasoning counts), not the role chunk.
    ttft = points(metrics["ttft.probe.time_to_first_token"])[0]
    assert ttft.sum == pytest.approx(0.100)
    assert list(ttft.explicit_bounds) == list(DEFAULT_BUCKETS["latency"])
    ttfot = points(metrics["ttft.probe.time_to_first_output_token"])[0]
    assert ttfot.sum == pytest.approx(0.130)

    gaps = points(metrics["gen_ai.client.operation.time_per_output_chunk"])[0]
    assert list(gaps.explicit_bounds) == list(DEFAULT_INTER_TOKEN_BUCKETS)
    assert good.inter_chunk_gaps is not None
    assert list(gaps.bucket_counts) == good.inter_chunk_gaps.counts
    assert (gaps.count, gaps.sum) == (3, pytest.approx(0.090))
    assert (gaps.min, gaps.max) == (pytest.approx(0.020), pytest.approx(0.040))

    failures = by_attributes(metrics["ttft.probe.failures"])
    assert set(failures) == {frozenset({**REQUIRED, "error.type": "http_status"}.items())}
    requests = by_attributes(metrics["ttft.probe.requests"])
    assert {dict(k)["ttft.outcome"]: p.as_int for k, p in requests.items()} == {
        "success": 1,
        "failure": 1,
    }
    phases = by_attributes(metrics["ttft.probe.phase.duration"])
    assert {dict(k)["ttft.phase"] for k in phases} == {"dns", "connect", "tls", "headers"}
    resources = receiver.resource_attributes()
    assert resources
    assert resources[0]["service.name"] == "ttft-exporter"


async def test_suspect_probe_timings_dropped_when_the_target_says_so(
    receiver: OTLPReceiver,
) -> None:
    sink = await sink_for(receiver, traces=False)
    t = target(on_suspect="drop")
    sink.on_probe_result(t, success(suspect=("loop_lag",)), timeout=5)
    await flush(sink)
    metrics = receiver.last_metrics()
    assert "ttft.probe.time_to_first_token" not in metrics
    assert "gen_ai.client.operation.duration" not in metrics
    suspect = by_attributes(metrics["ttft.probe.suspect"])
    assert [dict(k)["ttft.cause"] for k in suspect] == ["loop_lag"]
    assert "gen_ai.client.token.usage" in metrics  # counted, as on /metrics


def test_provider_per_protocol_and_override() -> None:
    assert target_attributes(target())["gen_ai.provider.name"] == "openai"
    assert target_attributes(target(otel_provider="vllm"))["gen_ai.provider.name"] == "vllm"
    ollama = target(protocol="ollama-generate", url="http://ollama:11434")
    assert (ollama.protocol, target_attributes(ollama)["gen_ai.operation.name"]) == (
        "ollama-generate",
        "text_completion",
    )
    assert target_attributes(ollama)["gen_ai.provider.name"] == "ollama"
    assert "server.port" in target_attributes(ollama)
    vertex = target(
        protocol="gemini",
        url="https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/l/publishers/google",
    )
    attributes = target_attributes(vertex)
    assert (attributes["gen_ai.provider.name"], attributes["gen_ai.operation.name"]) == (
        "gcp.vertex_ai",
        "generate_content",
    )
    # server.port only where the URL has one (yarl gives https its default, 443).
    assert attributes["server.port"] == 443


@pytest.mark.parametrize("seed", range(20))
def test_replayed_gaps_reproduce_the_histogram_exactly(seed: int) -> None:
    rng = random.Random(seed)
    bounds = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
    gaps = GapHistogram(bounds)
    values = [
        rng.choice([rng.expovariate(40), rng.choice(bounds)]) for _ in range(rng.randint(1, 400))
    ]
    for value in values:
        gaps.observe(value)
    replayed = replay_gaps(gaps)
    # Into the probe's boundaries and into a subset of them (a View's), as recorded.
    for subset in (bounds, bounds[::2], ()):
        assert _counts(replayed, subset) == _counts(values, subset)
    assert len(replayed) == len(values)
    assert sum(replayed) == pytest.approx(sum(values), rel=1e-9)
    assert (min(replayed), max(replayed)) == (min(values), max(values))


def _counts(values: list[float], bounds: tuple[float, ...]) -> list[int]:
    counts = [0] * (len(bounds) + 1)
    for value in values:
        counts[bisect_left(bounds, value)] += 1
    return counts


def test_the_readme_lists_every_instrument() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[4] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## OpenTelemetry\n", 1)[1].split("\n## ", 1)[0]
    # Rows of the instrument tables (3 columns and more; the attribute table has 2).
    rows = [line for line in section.splitlines() if line.count(" | ") >= 2]
    listed = {m.group(1) for r in rows if (m := re.match(r"\| `((?:gen_ai|ttft)\.[a-z_.]+)`", r))}
    assert listed == {spec.otel_name for spec in otel_specs()}


async def test_standard_environment_variables_apply_where_the_config_is_silent(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK reads OTEL_EXPORTER_OTLP_COMPRESSION and _HEADERS itself; the config
    # names neither, so they apply (and the receiver decodes gzip like a collector).
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=team-a")
    sink = await sink_for(receiver, traces=False)
    sink.on_probe_result(target(), success(), timeout=5)
    await flush(sink)
    assert receiver.headers[0]["content-encoding"] == "gzip"
    assert receiver.headers[0]["x-tenant"] == "team-a"
    assert "gen_ai.client.operation.duration" in receiver.last_metrics()
