"""Several sinks on one exporter: an extra sink attached to the state receives every
scheduled probe result and every Flux event from real runs against the simulators,
beside the Prometheus sink, without any change to probes or Flux; a sink that raises
costs the other sinks nothing."""

from __future__ import annotations

import pytest
from pytest_aiohttp import AiohttpClient

from tests.conftest import SimFactory, make_config, make_state
from tests.helpers import poll
from tests.unit.flux.conftest import FluxFactory
from tests.unit.flux.conftest import make_flux_sim as make_flux_sim  # the fixture
from ttft_exporter.errors import FailureReason
from ttft_exporter.flux.events import (
    ConnectionState,
    FluxEvent,
    FluxReport,
    FluxStarted,
    FrameReceived,
    Reconnected,
)
from ttft_exporter.probes.base import ProbeResult
from ttft_exporter.server import EXPORTER, create_app
from ttft_exporter.sinks import FanOut
from ttft_exporter.sinks.prometheus.series import MetricStore
from ttft_exporter.sinks.prometheus.sink import PrometheusSink
from ttft_exporter.targets import TargetBase


class RecordingSink:
    """A sink that keeps what it is given (what an OTel sink would export)."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.removed: list[str] = []
        self.results: list[tuple[str, ProbeResult, float]] = []
        self.events: list[FluxEvent] = []

    def on_target(self, target: TargetBase) -> None:
        self.targets.append(target.name)

    def on_target_removed(self, name: str) -> None:
        self.removed.append(name)

    def on_probe_result(self, target: TargetBase, result: ProbeResult, *, timeout: float) -> None:
        self.results.append((target.name, result, timeout))

    def on_flux_event(self, event: FluxEvent) -> None:
        self.events.append(event)

    def gap_bounds(self, target: str) -> tuple[float, ...] | None:
        return None

    def budget_series(self, target: TargetBase) -> None:
        return None


class BrokenSink(RecordingSink):
    """A sink with a bug: every call raises after being counted."""

    def on_probe_result(self, target: TargetBase, result: ProbeResult, *, timeout: float) -> None:
        super().on_probe_result(target, result, timeout=timeout)
        raise RuntimeError("sink bug")

    def on_flux_event(self, event: FluxEvent) -> None:
        super().on_flux_event(event)
        raise RuntimeError("sink bug")


async def test_an_extra_sink_sees_probe_results_and_flux_events(
    make_llm_sim: SimFactory, make_flux_sim: FluxFactory, aiohttp_client: AiohttpClient
) -> None:
    sim = await make_llm_sim()
    flux = await make_flux_sim()
    config = make_config(
        {"name": "a", "url": f"{sim.url}/v1"},
        flux=[{"name": "main", "url": flux.url, "stale_after": "2s", "groups": ["sensor-"]}],
    )
    extra = RecordingSink()
    state = make_state(config, extra_sinks=[extra])
    client = await aiohttp_client(create_app(state))
    # The OTel switch is always there (it forwards to nothing while `otel:` is absent).
    assert client.app[EXPORTER].sinks.sinks == [state.prometheus, state.otel, extra]

    async def probed() -> bool:
        return len(extra.results) >= 1

    # Caps generous for a loaded 2-core machine; nothing here measures time.
    await poll(probed, "the first probe result", cap=20.0)
    name, result, timeout = extra.results[0]
    assert (name, result.success, timeout) == ("a", True, 5.0)
    assert extra.targets == ["a"]
    # The Prometheus sink recorded the very same probe.
    series = state.store.series["a", "default"]
    assert series.get("ttft_probe_requests_total", ("success",)) == len(extra.results)
    assert series.histogram("ttft_probe_time_to_first_token_seconds") == (
        1,
        result.time_to_first_token,
    )

    def seen(kind: type) -> list[FluxEvent]:
        return [e for e in extra.events if isinstance(e, kind)]

    async def streamed() -> bool:
        return any(isinstance(e, FluxReport) for e in extra.events)

    await poll(streamed, "a metrics_update", cap=20.0)
    assert seen(FluxStarted) == [FluxStarted("main", ("sensor-",))]
    assert ConnectionState("main", connected=True, stale=False) in seen(ConnectionState)
    frames = [e for e in seen(FrameReceived) if isinstance(e, FrameReceived)]
    assert {(e.instance, e.kind) for e in frames} >= {("main", "metrics_update")}
    assert seen(Reconnected) == []
    # The Prometheus sink counted the same frames (read now, with no await since).
    metrics_updates = sum(1 for e in frames if e.kind == "metrics_update")
    assert state.metrics.registry.get_sample_value(
        "ttft_flux_messages_total", {"flux": "main", "type": "metrics_update"}
    ) == float(metrics_updates)


def test_a_raising_sink_does_not_cost_the_others_their_copy() -> None:
    store = MetricStore()
    broken, after = BrokenSink(), RecordingSink()
    fan = FanOut([broken, PrometheusSink(store), after])
    target = make_config({"name": "a", "url": "http://127.0.0.1:9/v1"}).targets[0]
    fan.on_target(target)
    failed = ProbeResult(False, FailureReason.CONNECT, "refused", started_at=1.0)
    # The error still reaches the caller's boundary (the supervised probe loop).
    with pytest.raises(RuntimeError, match="sink bug"):
        fan.on_probe_result(target, failed, timeout=5.0)
    assert store.series["a", "default"].get("ttft_probe_failures_total", ("connect",)) == 1.0
    assert [r[0] for r in after.results] == ["a"]
    with pytest.raises(RuntimeError, match="sink bug"):
        fan.on_flux_event(FluxStarted("main", ()))
    assert after.events == [FluxStarted("main", ())]


def test_gap_bounds_come_from_the_first_sink_that_has_them() -> None:
    store = MetricStore({"inter_token": (0.1, 0.2)})
    assert FanOut([RecordingSink()]).gap_bounds("a") == MetricStore().buckets["inter_token"]
    assert FanOut([RecordingSink(), PrometheusSink(store)]).gap_bounds("a") == (0.1, 0.2)
