"""Pure decoding of Flux frames."""

from __future__ import annotations

import pytest

from ttft_exporter.flux.decoder import (
    EntityDeleted,
    MalformedFrameError,
    MetricsUpdate,
    StateUpdate,
    UnknownMessage,
    decode_frame,
    parse_timestamp,
)
from ttft_exporter.flux.monitor import _parse_ts

METRICS = (
    '{"type":"metrics_update","timestamp":"2026-02-14T10:30:45.123456789Z","entities":{"total":5},'
    '"events":{"total":120,"rate_per_second":20.4},"websocket":{"connections":2},"publishers":{"active":3}}'
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


def test_state_update_and_deleted() -> None:
    frame = '{"type":"state_update","entity_id":"ns/a","property":"temp","value":{"x":1},"timestamp":"2026-02-14T10:30:45Z"}'
    assert decode_frame(frame) == StateUpdate("ns/a", "temp", {"x": 1}, "2026-02-14T10:30:45Z")
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
        '{"type":"state_update","entity_id":"a"}',
        '{"type":"entity_deleted"}',
        b"\xff\xfe",
    ],
)
def test_malformed(frame: str | bytes) -> None:
    with pytest.raises(MalformedFrameError):
        decode_frame(frame)


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-14T10:30:45.123456789Z",
        "2026-02-14T10:30:45.123456789+00:00",
        "2026-02-14T10:30:45Z",
        "2026-02-14T10:30:45.5Z",
    ],
)
def test_fast_timestamp_matches_stdlib(text: str) -> None:
    expected = parse_timestamp(text)
    assert expected is not None
    assert _parse_ts(text) == pytest.approx(expected, abs=1e-6)


def test_bad_timestamp() -> None:
    assert _parse_ts("yesterday") is None
    assert parse_timestamp("2026-13-99T00:00:00Z") is None
