"""Tests for ttft_exporter.server: every endpoint through aiohttp_client(create_app(...)),
with the built-in LLM simulator as the probed target."""

from __future__ import annotations

import asyncio
import gzip
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from pytest_aiohttp import AiohttpClient

from tests.conftest import RunningSim, SimFactory, make_config, make_state
from tests.helpers import CountingLLM
from ttft_exporter.config import Config, load_config
from ttft_exporter.errors import FailureReason
from ttft_exporter.server import ExporterState, create_app
from ttft_exporter.sim.llm import ModelBehaviour

Client = TestClient[web.Request, web.Application]

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TTFT = "ttft_probe_time_to_first_token_seconds"
# The simulator's first token is due `ttft` after the request arrives; the probe also pays
# connect and request time on loopback, so it measures a little more, never less.
SIM_TTFT = 0.12
# Upper bound on a TTFT measured against the simulator on a starved machine.
TTFT_STARVED = 2.0
FAST = ModelBehaviour(ttft=0.0, itl=0.0, tokens=2)
POLL_CAP = 5.0


async def wait_for(predicate: Callable[[], bool], what: str, cap: float = POLL_CAP) -> None:
    """Poll `predicate` until it holds; fail after `cap` seconds."""
    deadline = time.monotonic() + cap
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {cap}s waiting for {what}")
        await asyncio.sleep(0.01)


def successes(state: ExporterState, target: str) -> float:
    """The background store's success counter of a target (0 if it has no series)."""
    series = state.store.get(target)
    if series is None:
        return 0.0
    return series.get("ttft_probe_requests_total", ("success",)) or 0.0


async def wait_probed(state: ExporterState, target: str, count: float = 1.0) -> None:
    await wait_for(lambda: successes(state, target) >= count, f"{count} probes of {target}")


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample `name` whose labels include `labels` (classic text)."""
    found = [
        s.value
        for family in parse_text(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    ]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


def bucket_bounds(text: str, name: str, **labels: str) -> list[str]:
    """The `le` labels of histogram `name`'s buckets for the series with `labels`."""
    return [
        s.labels["le"]
        for family in parse_text(text)
        for s in family.samples
        if s.name == f"{name}_bucket" and labels.items() <= s.labels.items()
    ]


def target_lines(text: str, target: str) -> list[str]:
    return [line for line in text.splitlines() if f'target="{target}"' in line]


async def start(
    aiohttp_client: AiohttpClient, config: Config, **state_kwargs: Any
) -> tuple[Client, ExporterState]:
    state = make_state(config, **state_kwargs)
    client = await aiohttp_client(create_app(state))
    return client, state


async def get_text(client: Client, path: str, status: int = 200, **kwargs: Any) -> str:
    resp = await client.get(path, **kwargs)
    text = await resp.text()
    assert resp.status == status, text
    return text


def chat_target(sim: RunningSim, name: str = "a", **fields: Any) -> dict[str, Any]:
    return {"name": name, "url": f"{sim.url}/v1", **fields}


def sim_models(sim: RunningSim) -> list[str]:
    return [r.body["model"] for r in sim.state.requests if r.path == "/v1/chat/completions"]


# /metrics


async def test_metrics_classic_text(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient
) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=SIM_TTFT, itl=0.0, tokens=3))
    client, state = await start(aiohttp_client, make_config(chat_target(sim)))
    await wait_probed(state, "a")

    resp = await client.get("/metrics")
    text = await resp.text()

    assert resp.status == 200
    assert resp.headers["Content-Type"] == TEXT_TYPE
    assert "# EOF" not in text
    assert "# TYPE ttft_probe_requests_total counter\n" in text
    assert "# TYPE ttft_exporter_target_unknown_total counter\n" in text
    assert sample(text, f"{TTFT}_count", target="a") == 1.0
    # Semantics, not speed: the histogram holds exactly the TTFT the probe measured
    # (its history record), in the right bucket of whatever the default buckets are.
    (record,) = [r for r in state.history.records() if r.target == "a"]
    measured = record.result.time_to_first_token
    assert measured is not None
    ttft_sum = sample(text, f"{TTFT}_sum", target="a")
    assert ttft_sum == pytest.approx(measured, rel=1e-9)
    # Bounds (real clock): never below the simulator's sleep; generous above it, for a
    # starved 2-core box (stress-ng --cpu 2).
    assert SIM_TTFT - 0.001 <= ttft_sum <= SIM_TTFT + TTFT_STARVED
    buckets = {
        float(le): sample(text, f"{TTFT}_bucket", target="a", le=le)
        for le in bucket_bounds(text, TTFT, target="a")
    }
    assert buckets[float("inf")] == 1.0
    assert buckets == {le: 1.0 if measured <= le else 0.0 for le in buckets}
    assert sample(text, "ttft_probe_requests_total", target="a", outcome="success") == 1.0
    assert sample(text, "ttft_probe_success", target="a") == 1.0
    assert sample(text, "ttft_exporter_config_last_reload_successful") == 1.0
    assert (
        'ttft_probe_success{target="a",model="m",protocol="openai-chat",scenario="default"} 1.0\n'
        in text
    ), "target labels are target, model, protocol, scenario in that order"


async def test_metrics_openmetrics(make_llm_sim: SimFactory, aiohttp_client: AiohttpClient) -> None:
    sim = await make_llm_sim(m=FAST)
    client, state = await start(aiohttp_client, make_config(chat_target(sim)))
    await wait_probed(state, "a")

    resp = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    text = await resp.text()

    assert resp.status == 200
    assert resp.headers["Content-Type"] == OPENMETRICS_TYPE
    assert text.endswith("\n# EOF\n")
    assert text.count("# EOF") == 1
    counter_types = [
        line for line in text.splitlines() if line.startswith("# TYPE") and line.endswith("counter")
    ]
    assert "# TYPE ttft_probe_requests counter" in counter_types
    assert "# TYPE ttft_probe_failures counter" in counter_types
    assert "# TYPE ttft_exporter_target_unknown counter" in counter_types
    assert [line for line in counter_types if "_total " in line] == []
    # The strict OpenMetrics parser accepts the whole exposition.
    families = {f.name: f for f in parse_openmetrics(text)}  # type: ignore[no-untyped-call]
    requests = families["ttft_probe_requests"]
    assert requests.type == "counter"
    values = {
        s.labels["outcome"]: s.value
        for s in requests.samples
        if s.name == "ttft_probe_requests_total" and s.labels["target"] == "a"
    }
    assert values == {"success": 1.0, "failure": 0.0}
    assert families[TTFT].type == "histogram"


def _exemplars(text: str, family: str, target: str) -> dict[str, Any]:
    """le -> exemplar of the buckets of `family` for `target` that carry one, read by
    the strict OpenMetrics parser."""
    return {
        s.labels["le"]: s.exemplar
        for f in parse_openmetrics(text)  # type: ignore[no-untyped-call]
        for s in f.samples
        if s.name == f"{family}_bucket" and s.labels["target"] == target and s.exemplar
    }


async def test_trace_ids_become_exemplars_in_openmetrics_only(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient
) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=SIM_TTFT, itl=0.0, tokens=3))
    client, state = await start(aiohttp_client, make_config(chat_target(sim)), trace_ids=True)
    await wait_probed(state, "a")
    om = await get_text(client, "/metrics", headers={"Accept": "application/openmetrics-text"})
    classic = await get_text(client, "/metrics")

    (record,) = [r for r in state.history.records() if r.target == "a"]
    result = record.result
    assert result.trace_id is not None and result.span_id is not None
    measured = result.time_to_first_token
    assert measured is not None
    found = _exemplars(om, TTFT, "a")
    # Exactly one exemplar: on the bucket the measured TTFT falls in (the smallest
    # bound not below it), naming this probe's trace and carrying its value.
    (le,) = found
    bounds = [float(b) for b in bucket_bounds(classic, TTFT, target="a")]
    assert float(le) == min(b for b in bounds if measured <= b)
    assert found[le].labels == {
        "trace_id": f"{result.trace_id:032x}",
        "span_id": f"{result.span_id:016x}",
    }
    assert found[le].value == pytest.approx(measured, rel=1e-9)
    assert float(found[le].timestamp) == pytest.approx(result.started_at, abs=0.001)
    (duration_le,) = _exemplars(om, "ttft_probe_duration_seconds", "a")
    assert result.duration is not None and result.duration <= float(duration_le)
    # The classic text format has no exemplars.
    assert "trace_id" not in classic


async def test_no_exemplars_with_trace_ids_off(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient
) -> None:
    sim = await make_llm_sim(m=FAST)
    client, state = await start(aiohttp_client, make_config(chat_target(sim)))
    await wait_probed(state, "a")
    om = await get_text(client, "/metrics", headers={"Accept": "application/openmetrics-text"})
    assert _exemplars(om, TTFT, "a") == {}
    assert " # {" not in om


async def test_ttfot_histogram_appears_only_for_a_target_that_streams_reasoning(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient
) -> None:
    # Issue #9: TTFOT is `auto` by default. Real probes of the simulator: `thinker`
    # streams reasoning before its answer, `plain` does not, so only `thinker` exports
    # the TTFOT histogram (and only it pays its series).
    sim = await make_llm_sim(
        m=FAST, r=ModelBehaviour(ttft=0.0, itl=0.0, tokens=2, reasoning_tokens=2)
    )
    config = make_config(chat_target(sim, "plain"), chat_target(sim, "thinker", model="r"))
    client, state = await start(aiohttp_client, config)
    await wait_probed(state, "plain")
    await wait_probed(state, "thinker")

    text = await get_text(client, "/metrics")

    ttfot = "ttft_probe_time_to_first_output_token_seconds"
    assert sample(text, f"{ttfot}_count", target="thinker") >= 1.0
    assert [line for line in target_lines(text, "plain") if line.startswith(ttfot)] == []
    assert len(target_lines(text, "thinker")) > len(target_lines(text, "plain"))


@pytest.mark.parametrize(
    ("accept_encoding", "content_encoding"),
    [("gzip", "gzip"), ("identity", None)],
    ids=["gzip", "identity"],
)
async def test_metrics_compression(
    make_llm_sim: SimFactory,
    aiohttp_client: AiohttpClient,
    accept_encoding: str,
    content_encoding: str | None,
) -> None:
    sim = await make_llm_sim(m=FAST)
    client, _ = await start(aiohttp_client, make_config(chat_target(sim)))

    # A raw session, so the body is seen as sent.
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(
            client.make_url("/metrics"), headers={"Accept-Encoding": accept_encoding}
        ) as resp,
    ):
        raw = await resp.read()
        assert resp.status == 200
        assert resp.headers.get("Content-Encoding") == content_encoding
    body = gzip.decompress(raw) if content_encoding == "gzip" else raw
    assert b"# TYPE ttft_probe_time_to_first_token_seconds histogram\n" in body


async def test_every_target_and_reason_exists_at_zero_before_any_probe_ends(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient
) -> None:
    # The first probes take a second, so nothing has been recorded when we look.
    sim = await make_llm_sim(m=ModelBehaviour(ttft=1.0, tokens=1))
    config = make_config(
        chat_target(sim, "a"),
        chat_target(sim, "b", labels={"env": "prod"}),
        chat_target(sim, "c", protocol="openai-completions"),
    )
    client, state = await start(aiohttp_client, config)

    text = await get_text(client, "/metrics")

    assert state.history.records() == []
    prefixes = {
        "a": 'target="a",model="m",protocol="openai-chat",scenario="default"',
        "b": 'target="b",model="m",protocol="openai-chat",scenario="default",env="prod"',
        "c": 'target="c",model="m",protocol="openai-completions",scenario="default"',
    }
    for prefix in prefixes.values():
        for reason in FailureReason:
            assert f'ttft_probe_failures_total{{{prefix},reason="{reason}"}} 0.0\n' in text
        for outcome in ("success", "failure"):
            assert f'ttft_probe_requests_total{{{prefix},outcome="{outcome}"}} 0.0\n' in text
        assert f"{TTFT}_count{{{prefix}}} 0\n" in text
    for name in prefixes:
        assert f'ttft_exporter_probes_skipped_total{{target="{name}"}} 0.0\n' in text
    # Gauges only exist once a probe has set them.
    assert "ttft_probe_success{" not in text


# Health, readiness


async def test_healthy(make_llm_sim: SimFactory, aiohttp_client: AiohttpClient) -> None:
    sim = await make_llm_sim(m=FAST)
    client, _ = await start(aiohttp_client, make_config(chat_target(sim)))
    assert await get_text(client, "/-/healthy") == "Healthy\n"


async def test_ready_after_startup_only(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient
) -> None:
    sim = await make_llm_sim(m=FAST)
    config = make_config(chat_target(sim))
    state = make_state(config)
    assert state.ready is False
    client = await aiohttp_client(create_app(state))

    assert await get_text(client, "/-/ready") == "Ready\n"
    assert state.scheduler is not None
    assert sorted(state.scheduler.runners) == ["a"]

    state.ready = False  # as during shutdown
    assert await get_text(client, "/-/ready", status=503) == "Not ready\n"


# /-/reload


def write_config(path: Path, targets: list[dict[str, Any]], **top: Any) -> None:
    full = [
        {"protocol": "openai-chat", "prompt": "hello", "interval": "10s", "timeout": "5s", **t}
        for t in targets
    ]
    path.write_text(yaml.safe_dump({"targets": full, **top}, sort_keys=False), encoding="utf-8")


async def start_from_file(
    aiohttp_client: AiohttpClient, path: Path
) -> tuple[Client, ExporterState]:
    config, checksum = load_config(path)
    state = make_state(config, path=path)
    state.holder.checksum = checksum
    client = await aiohttp_client(create_app(state))
    return client, state


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_reload_needs_post(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient, tmp_path: Path, method: str
) -> None:
    sim = await make_llm_sim(m=FAST)
    path = tmp_path / "ttft.yml"
    write_config(path, [chat_target(sim, model="m")])
    client, state = await start_from_file(aiohttp_client, path)
    before = state.holder.config

    resp = await client.request(method, "/-/reload")

    assert resp.status == 405
    assert state.holder.config is before


async def test_reload_applies_a_changed_file(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    sim = await make_llm_sim(keep=FAST, gone=FAST, new=FAST)
    path = tmp_path / "ttft.yml"
    keep = chat_target(sim, "keep", model="keep")
    write_config(path, [keep, chat_target(sim, "gone", model="gone")])
    client, state = await start_from_file(aiohttp_client, path)
    await wait_probed(state, "keep")
    await wait_probed(state, "gone")
    assert state.scheduler is not None
    keep_runner = state.scheduler.runners["keep"]
    stamp_before = state.metrics.reload_timestamp._value.get()

    write_config(path, [keep, chat_target(sim, "new", model="new")])
    resp = await client.post("/-/reload")

    assert resp.status == 200
    assert await resp.text() == "OK\n"
    assert [t.name for t in state.holder.config.targets] == ["keep", "new"]
    assert sorted(state.scheduler.runners) == ["keep", "new"]
    assert state.scheduler.runners["keep"] is keep_runner
    # A restarted loop probes at once (no start jitter), so once the new target has
    # been probed, an unchanged target would have been too if it had restarted.
    await wait_probed(state, "new")
    text = await get_text(client, "/metrics")
    assert target_lines(text, "gone") == []
    assert sample(text, "ttft_probe_requests_total", target="new", outcome="success") == 1.0
    assert sample(text, "ttft_probe_requests_total", target="keep", outcome="success") == 1.0
    assert sample(text, "ttft_exporter_probes_skipped_total", target="new") == 0.0
    assert sample(text, "ttft_exporter_config_last_reload_successful") == 1.0
    assert state.metrics.reload_timestamp._value.get() >= stamp_before
    assert sorted(sim_models(sim)) == ["gone", "keep", "new"]


async def test_reload_with_a_new_slo_threshold_keeps_loops_and_counters(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    # Issue #9: a TPOT SLO added for `keep` gives only `keep` the 60 ms boundary. Its
    # TPOT histogram restarts with the new boundaries; its counters, its other
    # histograms and every probe loop carry on (before: every series of every target
    # was dropped and every loop restarted).
    sim = await make_llm_sim(m=FAST)
    path = tmp_path / "ttft.yml"
    targets = [chat_target(sim, "keep", model="m"), chat_target(sim, "other", model="m")]
    write_config(path, targets)
    client, state = await start_from_file(aiohttp_client, path)
    await wait_probed(state, "keep")
    await wait_probed(state, "other")
    assert state.scheduler is not None
    runners = dict(state.scheduler.runners)

    slos = {
        "targets": [{"selector": {"name": "keep"}, "tpot": {"objective": 0.9, "threshold": "60ms"}}]
    }
    write_config(path, targets, slos=slos)
    resp = await client.post("/-/reload")

    assert resp.status == 200
    assert state.scheduler.runners == runners  # the same loop objects
    text = await get_text(client, "/metrics")
    tpot = "ttft_probe_time_per_output_token_seconds"
    assert sample(text, f"{tpot}_bucket", target="keep", le="0.06") >= 0.0
    # New boundaries: from zero, so it lacks at least the probe before the reload (a
    # bound that holds even if the next 10 s tick came on a starved machine).
    assert sample(text, f"{tpot}_count", target="keep") < sample(
        text, "ttft_probe_requests_total", target="keep", outcome="success"
    )
    assert [line for line in target_lines(text, "other") if 'le="0.06"' in line] == []
    for name in ("keep", "other"):
        assert sample(text, "ttft_probe_requests_total", target=name, outcome="success") >= 1.0
        assert sample(text, f"{TTFT}_count", target=name) >= 1.0


async def test_reload_requested_like_sighup_runs_as_a_lifecycle_job(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    sim = await make_llm_sim(keep=FAST, new=FAST)
    path = tmp_path / "ttft.yml"
    write_config(path, [chat_target(sim, "keep", model="keep")])
    _client, state = await start_from_file(aiohttp_client, path)
    write_config(path, [chat_target(sim, "new", model="new")])
    state.reload_requested.set()  # what the SIGHUP handler does
    await wait_probed(state, "new")
    assert [t.name for t in state.holder.config.targets] == ["new"]
    assert not state.reload_requested.is_set()


@pytest.mark.parametrize(
    ("content", "problems"),
    [
        (
            "targets: [\n",
            ["invalid YAML: line 2 column 1: did not find expected node content"],
        ),
        (
            yaml.safe_dump(
                {
                    "targets": [
                        {
                            "name": "a",
                            "protocol": "openai-chat",
                            "url": "http://127.0.0.1:1/v1",
                            "model": "m",
                            "prompt": "hi",
                            "interval": "1s",
                            "timeout": "2s",
                            "bogus": 1,
                        }
                    ]
                }
            ),
            # Both at once (issue #9): the unknown field used to hide the timeout rule.
            ["targets[0].bogus: unknown field", "targets[0].timeout: must be below interval (1s)"],
        ),
        (None, ["cannot read file: No such file or directory"]),
    ],
    ids=["bad-yaml", "invalid-field", "missing-file"],
)
async def test_reload_with_a_bad_file_keeps_the_running_config(
    make_llm_sim: SimFactory,
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    content: str | None,
    problems: list[str],
) -> None:
    sim = await make_llm_sim(m=FAST)
    path = tmp_path / "ttft.yml"
    write_config(path, [chat_target(sim, model="m")])
    client, state = await start_from_file(aiohttp_client, path)
    await wait_probed(state, "a")
    running = state.holder.config
    assert state.scheduler is not None
    runner = state.scheduler.runners["a"]

    if content is None:
        path.unlink()
    else:
        path.write_text(content, encoding="utf-8")
    resp = await client.post("/-/reload")

    assert resp.status == 500
    lines = "".join(f"  {p}\n" for p in problems)
    assert await resp.text() == f"failed to reload config: invalid configuration {path}:\n{lines}"
    assert state.holder.config is running
    assert state.scheduler.runners["a"] is runner
    text = await get_text(client, "/metrics")
    assert "ttft_exporter_config_last_reload_successful 0.0\n" in text
    assert sample(text, "ttft_probe_requests_total", target="a", outcome="success") == 1.0

    # Fixing the file brings the gauge back.
    write_config(path, [chat_target(sim, model="m")])
    resp = await client.post("/-/reload")
    assert resp.status == 200
    text = await get_text(client, "/metrics")
    assert "ttft_exporter_config_last_reload_successful 1.0\n" in text


async def test_reload_with_unloadable_tls_files_keeps_the_running_config(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    # The file exists, so the config validates, but it is no PEM bundle.
    sim = await make_llm_sim(m=FAST)
    path = tmp_path / "ttft.yml"
    write_config(path, [chat_target(sim, model="m")])
    client, state = await start_from_file(aiohttp_client, path)
    running = state.holder.config
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n", encoding="utf-8")
    tls = {"url": f"https://127.0.0.1:{sim.port}/v1", "tls": {"ca_file": str(bundle)}}
    write_config(
        path,
        [
            chat_target(sim, model="m"),
            chat_target(sim, "t", model="m", **tls),
            chat_target(sim, "z", model="m"),
        ],
    )

    resp = await client.post("/-/reload")
    text = await resp.text()

    assert resp.status == 500
    assert text.startswith(
        f"failed to reload config: invalid configuration {path}:\n"
        "  targets[1].tls: cannot load TLS files: [X509: NO_CERTIFICATE_OR_CRL_FOUND] "
    )
    assert state.holder.config is running
    assert state.scheduler is not None
    assert sorted(state.scheduler.runners) == ["a"]
    metrics = await get_text(client, "/metrics")
    assert "ttft_exporter_config_last_reload_successful 0.0\n" in metrics
    assert target_lines(metrics, "z") == []


# /probe


async def test_probe_uses_a_fresh_registry(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient
) -> None:
    sim = await make_llm_sim(m=FAST)
    client, state = await start(aiohttp_client, make_config(chat_target(sim)))
    await wait_probed(state, "a")
    before = await get_text(client, "/metrics")

    resp = await client.get("/probe", params={"target": "a"})
    text = await resp.text()

    assert resp.status == 200
    assert resp.headers["Content-Type"] == TEXT_TYPE
    assert (
        'ttft_probe_success{target="a",model="m",protocol="openai-chat",scenario="default"} 1.0\n'
        in text
    )
    assert sample(text, "ttft_probe_requests_total", target="a", outcome="success") == 1.0
    assert sample(text, f"{TTFT}_count", target="a") == 1.0
    assert sample(text, "ttft_probe_timeout_seconds", target="a") == 5.0
    assert "ttft_exporter_" not in text
    # The background series did not see the ad-hoc probe.
    after = await get_text(client, "/metrics")
    assert target_lines(after, "a") == target_lines(before, "a")
    assert successes(state, "a") == 1.0
    assert len(sim_models(sim)) == 2


async def test_probe_uses_the_targets_own_boundaries(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient
) -> None:
    # Issue #9: an SLO threshold is a boundary of the targets its entry selects only,
    # in the background store and in /probe alike.
    sim = await make_llm_sim(m=FAST)
    slos = {
        "targets": [{"selector": {"name": "a"}, "tpot": {"objective": 0.9, "threshold": "60ms"}}]
    }
    config = make_config(chat_target(sim, "a"), chat_target(sim, "b"), slos=slos)
    client, state = await start(aiohttp_client, config)
    await wait_probed(state, "a")
    await wait_probed(state, "b")
    tpot = "ttft_probe_time_per_output_token_seconds_bucket"

    background = await get_text(client, "/metrics")
    probe_a = await get_text(client, "/probe?target=a")
    probe_b = await get_text(client, "/probe?target=b")

    assert sample(background, tpot, target="a", le="0.06") >= 0.0
    assert sample(probe_a, tpot, target="a", le="0.06") >= 0.0
    for text in (background, probe_b):
        assert [line for line in target_lines(text, "b") if 'le="0.06"' in line] == []


@pytest.mark.parametrize(
    "name",
    ["unknown", "A", "http://127.0.0.1:{port}/v1"],
    ids=["unknown", "case-differs", "url"],
)
async def test_probe_unknown_target_makes_no_request(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient, name: str
) -> None:
    sim = await make_llm_sim(m=FAST)
    client, state = await start(aiohttp_client, make_config(chat_target(sim)))
    await wait_probed(state, "a")
    requests_before = len(sim.state.requests)
    name = name.format(port=sim.port)

    for count in (1.0, 2.0):
        resp = await client.get("/probe", params={"target": name})
        assert resp.status == 400
        assert await resp.text() == (
            f"unknown target {name!r}: only configured target names can be probed\n"
        )
        text = await get_text(client, "/metrics")
        assert f"ttft_exporter_target_unknown_total {count}\n" in text

    assert len(sim.state.requests) == requests_before == 1
    assert len(state.history.records()) == 1


async def test_probe_picks_a_scenario(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient
) -> None:
    sim = await make_llm_sim(m=FAST)
    scenarios = [{"name": "short", "prompt": "one"}, {"name": "long", "prompt": "two"}]
    client, state = await start(
        aiohttp_client, make_config(chat_target(sim, interval="60s", scenarios=scenarios))
    )
    await wait_for(
        lambda: all(state.store.get("a", s) is not None for s in ("short", "long")),
        "the scenario series",
    )
    await wait_for(lambda: len(sim.state.requests) == 2, "one probe per scenario")

    text = await get_text(client, "/probe", params={"target": "a", "scenario": "long"})
    assert sample(text, "ttft_probe_success", scenario="long") == 1.0
    assert 'scenario="short"' not in text
    assert sim.state.requests[-1].body["messages"][0]["content"].endswith(" two")
    # Without `scenario`: the first one.
    text = await get_text(client, "/probe", params={"target": "a"})
    assert sample(text, "ttft_probe_success", scenario="short") == 1.0
    resp = await client.get("/probe", params={"target": "a", "scenario": "cold"})
    assert resp.status == 400
    assert await resp.text() == "target 'a' has no scenario 'cold'; it has: short, long\n"
    assert len(sim.state.requests) == 4


@pytest.mark.parametrize("query", ["", "?target=", "?debug=true"], ids=["none", "empty", "debug"])
async def test_probe_without_target(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient, query: str
) -> None:
    sim = await make_llm_sim(m=FAST)
    client, _ = await start(aiohttp_client, make_config(chat_target(sim)))

    assert await get_text(client, f"/probe{query}", status=400) == "target parameter is missing\n"
    text = await get_text(client, "/metrics")
    assert "ttft_exporter_target_unknown_total 0.0\n" in text


@pytest.mark.parametrize(
    ("scrape_timeout", "expected"),
    [
        ("0.5", 0.25),  # 0.5 - 0.25 offset, below the target's 0.4
        ("10", 0.4),  # 9.75 is capped by the target's timeout
        (None, 0.4),  # no header: 120 s - offset, capped
        ("0", 0.4),  # 0 means "not set", as in blackbox
        ("0.1", 0.4),  # negative budget: the target's timeout
        ("soon", 0.4),  # unparsable: as if missing
        ("nan", 0.4),  # not a number: as if missing (it used to hang the probe)
        ("inf", 0.4),
    ],
    ids=["header", "capped", "missing", "zero", "negative", "garbage", "nan", "inf"],
)
async def test_probe_deadline_from_the_scrape_timeout(
    make_llm_sim: SimFactory,
    aiohttp_client: AiohttpClient,
    scrape_timeout: str | None,
    expected: float,
) -> None:
    # One token, then the stream stalls: only the deadline ends the probe.
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, tokens=4, stall_after=1))
    config = make_config(chat_target(sim, timeout="0.4s"))
    client, state = await start(aiohttp_client, config, timeout_offset=0.25)
    # The scheduled probe runs first (and stalls until its timeout): /probe would get 429.
    await wait_for(lambda: len(state.history.records()) == 1, "the scheduled probe")
    headers = (
        {} if scrape_timeout is None else {"X-Prometheus-Scrape-Timeout-Seconds": scrape_timeout}
    )

    started = time.monotonic()
    async with asyncio.timeout(10.0):
        text = await get_text(client, "/probe?target=a", headers=headers)
    took = time.monotonic() - started

    assert sample(text, "ttft_probe_timeout_seconds", target="a") == expected
    assert sample(text, "ttft_probe_success", target="a") == 0.0
    assert sample(text, "ttft_probe_failures_total", target="a", reason="timeout") == 1.0
    assert sample(text, "ttft_probe_requests_total", target="a", outcome="failure") == 1.0
    # Exact: the probe ran under at most the expected deadline (what is left of it
    # after waiting for an ad-hoc slot): 0.25 s, not the target's 0.4 s, a difference
    # no wall-clock window can tell on a loaded box.
    last = state.history.records()[0]  # newest first
    found = re.search(r"deadline of ([0-9.]+)s passed", last.result.detail)
    assert last.target == "a" and found is not None, last.result.detail
    assert 0.0 < float(found.group(1)) <= expected
    # Bounds (real clock): the stalled stream ends at the deadline, not before; the
    # upper bound is generous for a starved 2-core box.
    assert expected - 0.01 <= took <= expected + 2.0


async def test_probe_debug_success(make_llm_sim: SimFactory, aiohttp_client: AiohttpClient) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=3))
    config = make_config(chat_target(sim, labels={"env": "dev"}))
    client, state = await start(aiohttp_client, config)
    await wait_probed(state, "a")  # else the scheduled probe is in flight: 429

    resp = await client.get("/probe", params={"target": "a", "debug": "true"})
    text = await resp.text()

    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    logs, rest = text.split("\n\nMetrics that would have been returned:\n")
    metrics, target_yaml = rest.split("\nTarget configuration:\n")
    assert logs.splitlines() == [
        "Logs for the probe:",
        f"POST {sim.url}/v1/chat/completions",
        "response headers: HTTP 200 text/event-stream",
        "stream terminated after 3 token chunks, finish reason 'stop'",
        logs.splitlines()[4],
        "probe succeeded",
    ]
    assert logs.splitlines()[4].startswith("ttfb=")
    assert (
        " ttft=" in logs.splitlines()[4] and " tokens=3 (usage) chunks=3 " in logs.splitlines()[4]
    )
    assert sample(metrics, "ttft_probe_success", target="a", env="dev") == 1.0
    assert yaml.safe_load(target_yaml) == config.targets[0].redacted()


async def test_probe_debug_failure(make_llm_sim: SimFactory, aiohttp_client: AiohttpClient) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(status=503))
    client, state = await start(aiohttp_client, make_config(chat_target(sim)))
    await wait_for(lambda: len(state.history.records()) == 1, "the scheduled probe")

    text = await get_text(client, "/probe?target=a&debug=true")

    detail = (
        'HTTP 503: {"error":{"message":"Simulated error (HTTP 503).",'
        '"type":"server_error","param":null,"code":503}}'
    )
    assert text.startswith(
        "Logs for the probe:\n"
        f"POST {sim.url}/v1/chat/completions\n"
        "response headers: HTTP 503 application/json\n"
        f"probe failed: http_status: {detail}\n"
        f"probe failed: http_status ({detail})\n\n"
        "Metrics that would have been returned:\n"
    )
    assert "\nTarget configuration:\nname: a\n" in text
    assert (
        'ttft_probe_failures_total{target="a",model="m",protocol="openai-chat",scenario="default",reason="http_status"} 1.0\n'
        in text
    )
    assert (
        'ttft_probe_http_status_code{target="a",model="m",protocol="openai-chat",scenario="default"} 503.0\n'
        in text
    )


# /config, /, /logs


async def test_config_endpoint(make_llm_sim: SimFactory, aiohttp_client: AiohttpClient) -> None:
    sim = await make_llm_sim(m=FAST)
    config = make_config(
        chat_target(sim, "a"),
        chat_target(sim, "b", interval="30s", labels={"env": "x"}),
        concurrency=3,
    )
    client, _ = await start(aiohttp_client, config)

    resp = await client.get("/config")
    data = yaml.safe_load(await resp.text())

    assert resp.status == 200
    assert data["concurrency"] == 3
    assert [t["name"] for t in data["targets"]] == ["a", "b"]
    assert data["targets"][1]["interval"] == "30s"
    assert data["targets"][1]["labels"] == {"env": "x"}
    assert data["targets"][0] == config.targets[0].redacted()


async def test_index_and_logs(make_llm_sim: SimFactory, aiohttp_client: AiohttpClient) -> None:
    sim = await make_llm_sim(ok=FAST, broken=ModelBehaviour(status=500))
    config = make_config(
        chat_target(sim, "good", model="ok"), chat_target(sim, "bad", model="broken")
    )
    client, state = await start(aiohttp_client, config)
    await wait_for(lambda: len(state.history.records()) == 2, "both first probes")
    records = {r.target: r for r in state.history.records()}

    resp = await client.get("/")
    page = await resp.text()

    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    # "probe now" is a POST form (tests/unit/test_index.py), not a GET link.
    assert 'href="probe?' not in page
    assert '<input type="hidden" name="target" value="good">' in page
    recent = page.split("<h2>Recent probes</h2>", 1)[1]
    ttft = records["good"].result.time_to_first_token
    assert f"<td>good</td><td>success</td><td>{ttft:.3f}s</td>" in recent
    assert "<td>bad</td><td>failure</td><td>-</td><td>http_status: HTTP 500: " in recent
    for record in records.values():
        assert f'<a href="logs?id={record.id}">logs</a>' in page

    good = await get_text(client, f"/logs?id={records['good'].id}")
    assert good.startswith("target good: success\nPOST ")
    assert good.endswith("\n")
    bad = await get_text(client, f"/logs?id={records['bad'].id}")
    assert bad.splitlines()[0] == (
        'target bad: failure: http_status (HTTP 500: {"error":{"message":'
        '"Simulated error (HTTP 500).","type":"server_error","param":null,"code":500}})'
    )
    assert bad.splitlines()[1:] == list(records["bad"].log)


@pytest.mark.parametrize("query", ["", "?id=", "?id=abc", "?id=999"])
async def test_logs_of_an_unknown_probe(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient, query: str
) -> None:
    sim = await make_llm_sim(m=FAST)
    client, _ = await start(aiohttp_client, make_config(chat_target(sim)))
    assert await get_text(client, f"/logs{query}", status=404) == "no such probe\n"


async def test_unknown_path_is_404(make_llm_sim: SimFactory, aiohttp_client: AiohttpClient) -> None:
    sim = await make_llm_sim(m=FAST)
    client, _ = await start(aiohttp_client, make_config(chat_target(sim)))
    resp = await client.get("/debug")
    assert resp.status == 404


def _hostile_config(path: Path, kind: str) -> str:
    """Write a config a reload must refuse; returns the expected problem."""
    if kind == "yaml-bomb":
        bomb = Path(__file__).parent.parent / "testdata" / "config" / "invalid-yaml-bomb.yml"
        path.write_bytes(bomb.read_bytes())
        return (
            "targets[0].extra_body.g: expands to more than 1000000 YAML nodes through "
            "aliases (line 15)"
        )
    if kind == "30mb-file":
        path.unlink()
        with path.open("wb") as file:
            file.truncate(30_000_000)
        return "cannot read file: larger than 4 MiB (30000000 bytes)"
    # Just under the 4 MiB cap: seconds of parsing, which must not happen on the loop.
    filler = ", ".join(str(100_000 + i) for i in range(440_000))
    path.write_text(f"x-filler: [{filler}]\n", encoding="utf-8")
    assert path.stat().st_size < 4 * 1024 * 1024
    return "x-filler: unknown field"


@pytest.mark.parametrize(
    "kind",
    # 5-18 s of parsing off the loop: slow, out of `make test`, in .ci/run.
    ["yaml-bomb", "30mb-file", pytest.param("big-valid-yaml", marks=pytest.mark.slow)],
)
async def test_hostile_reload_keeps_the_old_config_probing_and_health_answering(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient, tmp_path: Path, kind: str
) -> None:
    sim = await make_llm_sim(m=FAST)
    path = tmp_path / "ttft.yml"
    write_config(path, [chat_target(sim, model="m", interval="200ms", timeout="150ms")])
    client, state = await start_from_file(aiohttp_client, path)
    await wait_probed(state, "a")
    running = state.holder.config
    latencies: list[float] = []
    statuses: list[int] = []
    stop = asyncio.Event()

    async def watch_health() -> None:
        while not stop.is_set():
            start = time.monotonic()
            resp = await client.get("/-/healthy")
            statuses.append(resp.status)
            latencies.append(time.monotonic() - start)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch_health())
    problem = _hostile_config(path, kind)
    before = successes(state, "a")
    start = time.monotonic()
    resp = await client.post("/-/reload")
    reload_seconds = time.monotonic() - start
    text = await resp.text()
    await wait_probed(state, "a", before + 2)  # the old config's loop still probes
    stop.set()
    await watcher

    assert resp.status == 500
    assert text == f"failed to reload config: invalid configuration {path}:\n  {problem}\n"
    assert state.holder.config is running
    assert statuses and set(statuses) == {200}
    # Bounds that hold on a loaded 2-core machine. Before the fix the loop froze for
    # the whole parse (10 s for 2.7 MB) or died (the bomb): health waited as long as
    # the reload. Now it waits at most a GIL switch or a few, not the parse.
    assert max(latencies) < max(1.0, reload_seconds / 2), (max(latencies), reload_seconds)


# /probe: its own pool, one probe per target, reloads keep the cap (issue #8 item 10)


@pytest.fixture
async def counting_llm() -> AsyncIterator[CountingLLM]:
    server = await CountingLLM(slow_seconds=0.3).start()
    yield server
    await server.close()


def counting_target(llm: CountingLLM, model: str, **fields: Any) -> dict[str, Any]:
    return {"name": model, "model": model, "url": llm.url, **fields}


def adhoc_rejected(state: ExporterState, reason: str) -> float:
    value = state.metrics.registry.get_sample_value(
        "ttft_exporter_adhoc_probes_rejected_total", {"reason": reason}
    )
    return value or 0.0


async def test_probe_of_a_target_with_a_scheduled_probe_in_flight_answers_429(
    counting_llm: CountingLLM, aiohttp_client: AiohttpClient
) -> None:
    config = make_config(counting_target(counting_llm, "stall", interval="10s", timeout="3s"))
    client, state = await start(aiohttp_client, config)
    await wait_for(lambda: counting_llm.in_flight.get("stall") == 1, "the scheduled probe")

    resp = await client.get("/probe", params={"target": "stall"})

    assert resp.status == 429
    assert await resp.text() == (
        "target 'stall' has a scheduled probe in flight; one probe per target at a time, "
        "so this one was not started: retry later\n"
    )
    # The scheduled probe ends within its 3 s timeout: retry after at most that.
    assert 1 <= int(resp.headers["Retry-After"]) <= 3
    assert counting_llm.starts == ["stall"]
    assert adhoc_rejected(state, "target_busy") == 1.0
    assert adhoc_rejected(state, "pool_timeout") == 0.0


async def test_waiting_for_the_adhoc_pool_counts_against_the_deadline(
    counting_llm: CountingLLM, aiohttp_client: AiohttpClient
) -> None:
    # One ad-hoc slot, held by a stalled probe of s1 for its 3 s timeout.
    targets = [
        counting_target(counting_llm, n, interval="1h", timeout="3s") for n in ("s1", "stall2")
    ]
    targets[0]["model"] = "stall1"
    client, state = await start(aiohttp_client, make_config(*targets), adhoc_concurrency=1)
    await wait_for(lambda: len(state.history.records()) == 2, "both scheduled probes", cap=10)
    first = asyncio.create_task(client.get("/probe", params={"target": "s1"}))
    # Its second request: the first was the scheduled probe, which may still be ending.
    await wait_for(lambda: counting_llm.starts.count("stall1") == 2, "the ad-hoc probe of s1")

    started = time.monotonic()
    resp = await client.get(
        "/probe",
        params={"target": "stall2"},
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.0"},
    )
    took = time.monotonic() - started
    text = await resp.text()

    assert resp.status == 503, text
    assert text == (
        "no ad-hoc probe slot became free within the probe deadline of 0.5s: all 1 slots "
        "are busy (see --probe.adhoc-concurrency)\n"
    )
    assert resp.headers["Retry-After"] == "1"
    # It waited out its whole deadline (1.0 s - 0.5 s offset), and not the 3 s of s1.
    assert took >= 0.5
    assert counting_llm.starts.count("stall2") == 1  # the scheduled one only
    assert adhoc_rejected(state, "pool_timeout") == 1.0
    first.cancel()


@pytest.mark.slow  # 7 s: out of `make test`, in .ci/run
async def test_a_burst_of_probe_calls_cannot_starve_the_scheduled_loops(
    counting_llm: CountingLLM, aiohttp_client: AiohttpClient
) -> None:
    # One global slot for the scheduled probes; 60 /probe calls on 6 stalling targets.
    # Before the fix they queued for that one slot, 1 s each, and `ok` got no probe.
    stalls = [f"stall{n}" for n in range(6)]
    config = make_config(
        counting_target(counting_llm, "ok", interval="0.3s", timeout="0.25s"),
        *(counting_target(counting_llm, s, interval="1h", timeout="1s") for s in stalls),
        concurrency=1,
    )
    client, state = await start(aiohttp_client, config, adhoc_concurrency=2)
    await wait_for(
        lambda: len({r.target for r in state.history.records()}) == 7, "first probes", cap=20
    )
    # The server notices the timed-out scheduled probes hang up a moment later.
    await wait_for(
        lambda: sum(counting_llm.in_flight.get(s, 0) for s in stalls) == 0, "stalls to end"
    )
    counting_llm.reset_peak()
    ok_before = successes(state, "ok")

    calls = [asyncio.create_task(client.get("/probe", params={"target": s})) for s in stalls * 10]
    # While the burst lasts (each probe stalls for its 1 s deadline), `ok` keeps its cadence.
    await wait_for(lambda: successes(state, "ok") >= ok_before + 3, "three probes of ok")
    responses = await asyncio.gather(*calls)
    statuses = [r.status for r in responses]

    assert set(statuses) <= {200, 429, 503}
    assert statuses.count(429) >= 30  # the same target asked for again while busy
    for stall in stalls:
        assert counting_llm.peak.get(stall, 0) <= 1, "a target never has two probes"
    # Every stalled answer ends: the probes gave up at their deadline and hung up.
    await wait_for(
        lambda: sum(counting_llm.in_flight.get(s, 0) for s in stalls) == 0, "stalls to end"
    )
    stall_peak = counting_llm.total_peak - counting_llm.peak.get("ok", 0)
    assert stall_peak <= 2, "no more ad-hoc probes at once than the pool holds"
    series = state.store.series["ok", "default"]
    assert (series.get("ttft_probe_requests_total", ("failure",)) or 0.0) == 0.0
    assert adhoc_rejected(state, "target_busy") == statuses.count(429)
    assert adhoc_rejected(state, "pool_timeout") == statuses.count(503)


async def test_a_scheduled_probe_waits_for_the_adhoc_probe_of_its_target(
    aiohttp_client: AiohttpClient,
) -> None:
    # Ordering by the server's sleeps, not by luck. A probe of `slow` takes 1 s and the
    # loop ticks every 1.9 s. Once the first scheduled probe is done, the target is idle
    # for 0.9 s (the room a starved box has to start the /probe call); the ad-hoc probe
    # then runs until at least 2 s after the first tick, so the second tick (1.9 s) falls
    # inside it whatever the load: the loop must wait, and the server never sees two at
    # once. (0.3 s probes every 0.35 s left a 50 ms window that a loaded box missed 8
    # times in a row: every call met a probe in flight, 429.)
    llm = await CountingLLM(slow_seconds=1.0).start()
    try:
        config = make_config(counting_target(llm, "slow", interval="1.9s", timeout="1.85s"))
        client, state = await start(aiohttp_client, config)
        await wait_probed(state, "slow")
        resp = await client.get("/probe", params={"target": "slow"})
        assert resp.status == 200, await resp.text()
        # The tick that came during the ad-hoc probe starts its probe right after it (1 s
        # of room for this call): the target is busy, so a call now is turned away.
        busy = await client.get("/probe", params={"target": "slow"})
        assert busy.status == 429, await busy.text()
        await wait_probed(state, "slow", 2.0)
        assert llm.peak["slow"] == 1
    finally:
        await llm.close()


async def test_a_reload_never_lets_old_and_new_probes_exceed_the_cap(
    counting_llm: CountingLLM, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    # Eight 0.3 s probes want to run every 0.4 s: there is always more demand than the cap.
    path = tmp_path / "ttft.yml"
    slow = [f"slow{n}" for n in range(8)]

    def write(concurrency: int, extra: str = "") -> None:
        targets = [counting_target(counting_llm, s, interval="0.4s", timeout="0.35s") for s in slow]
        if extra:
            targets.append(counting_target(counting_llm, extra, interval="0.4s", timeout="0.35s"))
        write_config(path, targets, concurrency=concurrency)

    write(2)
    client, state = await start_from_file(aiohttp_client, path)
    await wait_for(lambda: counting_llm.total_in_flight == 2, "two probes in flight")
    # A bigger cap with probes in flight: before the fix a new semaphore let 2 + 3 run.
    write(3, extra="slow-new")
    assert (await client.post("/-/reload")).status == 200
    await wait_for(lambda: len(counting_llm.starts) >= 20, "twenty probes", cap=10)
    assert counting_llm.total_peak <= 3
    assert counting_llm.total_peak == 3  # the new cap is used

    # A smaller cap: the 3 running finish, then never more than 1 at once.
    write(1)
    assert (await client.post("/-/reload")).status == 200
    await wait_for(lambda: counting_llm.total_in_flight <= 1, "old probes drained")
    counting_llm.reset_peak()
    seen = len(counting_llm.starts)
    await wait_for(lambda: len(counting_llm.starts) >= seen + 4, "four more probes", cap=10)
    assert counting_llm.total_peak == 1
    assert state.executor.concurrency == 1


async def test_reload_in_demo_mode_is_409_and_leaves_the_gauge(
    make_llm_sim: SimFactory, aiohttp_client: AiohttpClient
) -> None:
    """The demo's state has no config file (ConfigHolder(None, ...), as demo.py builds it)."""
    sim = await make_llm_sim(m=FAST)
    client, state = await start(aiohttp_client, make_config(chat_target(sim, model="m")))
    assert state.holder.path is None
    before = state.holder.config

    resp = await client.post("/-/reload")

    assert resp.status == 409
    assert await resp.text() == "demo mode has no config file to reload\n"
    assert state.holder.config is before
    text = await get_text(client, "/metrics")
    assert sample(text, "ttft_exporter_config_last_reload_successful") == 1.0
