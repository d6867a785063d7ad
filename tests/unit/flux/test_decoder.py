"""Pure decoding of Flux frames: every input decodes to a value, hostile ones to
Malformed (issue #8), never to an exception."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest

from ttft_exporter.flux.decoder import (
    MAX_COUNT,
    EntityDeleted,
    Malformed,
    MetricsUpdate,
    StateUpdate,
    UnknownMessage,
    decode_frame,
    parse_timestamp,
)

METRICS = (
    '{"type":"metrics_update","timestamp":"2026-02-14T10:30:45.123456789Z","entities":{"total":5},'
    '"events":{"total":120,"rate_per_second":20.4},"websocket":{"connections":2},"publishers":{"active":3}}'
)
TS = "2026-02-14T10:30:45Z"
TS_SECONDS = datetime.fromisoformat("2026-02-14T10:30:45+00:00").timestamp()


def metrics_with(group: str, key: str, value: Any) -> str:
    obj = json.loads(METRICS)
    obj[group][key] = value
    return json.dumps(obj)


def state_update(timestamp: Any) -> str:
    return json.dumps(
        {
            "type": "state_update",
            "entity_id": "a",
            "property": "p",
            "value": 1,
            "timestamp": timestamp,
        }
    )


def test_metrics_update() -> None:
    assert decode_frame(METRICS) == MetricsUpdate(5, 120, 20.4, 2, 3, complete=True)


def test_metrics_update_extra_fields_ignored_missing_keys_flagged() -> None:
    assert decode_frame(METRICS.replace('"type"', '"new":1,"type"')) == MetricsUpdate(
        5, 120, 20.4, 2, 3, True
    )
    partial = decode_frame('{"type":"metrics_update","events":{"total":7}}')
    assert partial == MetricsUpdate(None, 7, None, None, None, complete=False)


def test_rate_is_float_even_when_integer_json() -> None:
    update = decode_frame(METRICS.replace("20.4", "0"))
    assert isinstance(update, MetricsUpdate) and update.rate_per_second == 0.0


def test_counts_up_to_the_float64_exact_limit() -> None:
    update = decode_frame(metrics_with("events", "total", MAX_COUNT))
    assert isinstance(update, MetricsUpdate) and update.events_total == MAX_COUNT


@pytest.mark.parametrize(
    ("group", "key", "value"),
    [
        ("events", "total", -5),
        ("events", "total", MAX_COUNT + 1),
        ("events", "total", 10**23),  # beyond u64: orjson gives a float
        ("events", "total", 5.0),
        ("events", "total", True),
        ("events", "total", "120"),
        ("events", "total", [1]),
        ("entities", "total", -1),
        ("websocket", "connections", {"n": 1}),
        ("publishers", "active", -3),
        ("events", "rate_per_second", -0.2),
        ("events", "rate_per_second", "fast"),
        ("events", "rate_per_second", 1e300),
        ("events", "rate_per_second", False),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_metrics_value_no_flux_sends_is_malformed(group: str, key: str, value: Any) -> None:
    assert isinstance(decode_frame(metrics_with(group, key, value)), Malformed)


@pytest.mark.parametrize("nested", [5, "x", [1, 2], True])
def test_metrics_group_that_is_not_an_object_is_malformed(nested: Any) -> None:
    obj = json.loads(METRICS)
    obj["events"] = nested
    assert isinstance(decode_frame(json.dumps(obj)), Malformed)


def test_non_finite_numbers_are_not_json() -> None:
    # Python's json writes these; orjson (and Flux) reject them.
    for literal in ("NaN", "Infinity", "-Infinity", "1e999"):
        assert isinstance(decode_frame(METRICS.replace("20.4", literal)), Malformed)


def test_state_update_and_deleted() -> None:
    frame = f'{{"type":"state_update","entity_id":"ns/a","property":"temp","value":{{"x":1}},"timestamp":"{TS}"}}'
    assert decode_frame(frame) == StateUpdate("ns/a", "temp", {"x": 1}, TS_SECONDS)
    assert decode_frame(
        '{"type":"entity_deleted","entity_id":"a","timestamp":"x"}'
    ) == EntityDeleted("a")


def test_unknown_type_is_forward_compatible() -> None:
    assert decode_frame('{"type":"hello","x":1}') == UnknownMessage("hello")


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        "[1,2]",
        '"text"',
        '{"no":"type"}',
        '{"type":7}',
        '{"type":"state_update","entity_id":"a"}',
        '{"type":"entity_deleted"}',
        b"\xff\xfe",
        "[" * 5000 + "]" * 5000,  # deeper than orjson's recursion limit
        state_update(None),
        state_update(1771065045),
        state_update("2026-02-14T10:30:45." + "1" * 5000 + "Z"),  # int() would raise
        state_update("2026-02-14T10:30:45.1234567890Z"),  # 10 digits: not chrono
        state_update("2026-02-14T10:30:45.\u0661\u0662Z"),  # Arabic-Indic digits
        state_update("0001-01-01T00:00:00Z"),  # absurd: 2025 years of lag
        state_update("9999-12-31T23:59:59Z"),
        state_update("2026-02-14T10:30:45"),  # no offset: a local time of some zone
        state_update("yesterday"),
        state_update("2026-13-99T00:00:00Z"),
    ],
    ids=lambda f: repr(f)[:40],
)
def test_malformed(frame: str | bytes) -> None:
    assert isinstance(decode_frame(frame), Malformed)


def test_huge_digit_string_is_rejected_in_bounded_time() -> None:
    # A 4 MiB frame (the WebSocket limit) of timestamp digits: rejected from its length,
    # without scanning it. Bound: a linear scan of 4 MiB is ~1 ms; 0.5 s holds on a
    # heavily loaded 2-core machine while a quadratic scan would take minutes.
    frame = state_update("2026-02-14T10:30:45." + "1" * (4 * 1024 * 1024 - 200) + "Z")
    started = time.perf_counter()
    assert isinstance(decode_frame(frame), Malformed)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-14T10:30:45.123456789Z",
        "2026-02-14T10:30:45.123456789+00:00",
        "2026-02-14T10:30:45Z",
        "2026-02-14T10:30:45.5Z",
        "2026-02-14T11:30:45.5+01:00",  # not what Flux writes, still a valid instant
    ],
)
def test_timestamp_matches_stdlib(text: str) -> None:
    expected = datetime.fromisoformat(text).timestamp()
    parsed = parse_timestamp(text)
    assert parsed is not None
    assert parsed == pytest.approx(expected, abs=1e-6)
