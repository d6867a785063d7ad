"""The executor's trace ids (issue 11 §4): with tracing on every probe, whatever its
outcome, carries a fresh W3C trace id and span id; off, none is drawn."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import SimFactory, make_config, make_state
from tests.helpers import free_port
from ttft_exporter.logs import fields_of
from ttft_exporter.probes.session import create_session
from ttft_exporter.sim.llm import ModelBehaviour
from ttft_exporter.traceids import format_trace_id

FAST = ModelBehaviour(ttft=0.0, itl=0.0, tokens=2)


async def test_every_probe_gets_its_own_ids_when_tracing_is_on(
    make_llm_sim: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sim = await make_llm_sim(m=FAST)
    config = make_config(
        {"name": "ok", "url": f"{sim.url}/v1"},
        # Refused for real: a failed probe has a trace too (its span shows the error).
        {"name": "down", "url": f"http://127.0.0.1:{free_port()}/v1", "timeout": "2s"},
    )
    state = make_state(config, trace_ids=True)
    ok, down = config.targets
    caplog.set_level(logging.DEBUG, logger="ttft_exporter.probe")
    async with create_session(ok.tls, reuse_connections=False) as session:
        records = [await state.executor.run(ok, session, state.sinks) for _ in range(3)]
        records.append(await state.executor.run(down, session, state.sinks))

    assert [r.result.success for r in records] == [True, True, True, False]
    traces = [r.result.trace_id for r in records]
    spans = [r.result.span_id for r in records]
    assert all(t is not None and 0 < t < 1 << 128 for t in traces)
    assert all(s is not None and 0 < s < 1 << 64 for s in spans)
    assert len(set(traces)) == len(set(spans)) == 4
    # /probe?debug=true and the log line name the trace, for the jump from logs.
    for record in records:
        assert record.result.trace_id is not None
        assert f"trace id {format_trace_id(record.result.trace_id)}" in record.log
    logged = [fields_of(r).get("trace_id") for r in caplog.records if r.name.endswith("probe")]
    assert logged == [format_trace_id(t) for t in traces if t is not None]


async def test_no_ids_when_tracing_is_off_and_the_switch_applies_to_the_next_probe(
    make_llm_sim: SimFactory,
) -> None:
    sim = await make_llm_sim(m=FAST)
    config = make_config({"name": "ok", "url": f"{sim.url}/v1"})
    state = make_state(config)
    (target,) = config.targets
    assert state.executor.trace_ids is False  # off by default
    async with create_session(target.tls, reuse_connections=False) as session:
        off = await state.executor.run(target, session, state.sinks)
        state.executor.trace_ids = True
        on = await state.executor.run(target, session, state.sinks)

    assert (off.result.trace_id, off.result.span_id) == (None, None)
    assert not any("trace id" in line for line in off.log)
    assert on.result.trace_id is not None and on.result.span_id is not None
