"""The shared event-JSON layer: the container bound of one event before it is parsed,
and a server's JSON value as text without recursion."""

from __future__ import annotations

import pytest

from ttft_exporter.errors import FailureReason, ProbeFailure
from ttft_exporter.probes.event_json import (
    MAX_EVENT_CONTAINERS,
    error_text,
    load_event,
    parse_object,
    server_text,
)


def test_server_text_never_recurses() -> None:
    # A server's value as text: strings as sent, the rest as JSON, the too-deep by type.
    assert server_text("Overloaded") == "Overloaded"
    assert server_text(529) == "529"
    assert server_text({"message": "x", "code": [1]}) == '{"message":"x","code":[1]}'
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    assert server_text(deep) == "<list>"


def test_load_event_bounds_the_containers_of_one_event() -> None:
    # At the limit it parses; one container more is refused before anything is built.
    at_limit = "[" + ",".join(["[]"] * (MAX_EVENT_CONTAINERS - 1)) + "]"
    assert len(load_event(at_limit)) == MAX_EVENT_CONTAINERS - 1
    with pytest.raises(ProbeFailure) as info:
        load_event("[" + ",".join(["{}"] * MAX_EVENT_CONTAINERS) + "]")
    assert info.value.reason is FailureReason.PROTOCOL
    assert "more than 10000 JSON objects and arrays" in info.value.detail
    # Brackets in a short event are never counted, and text of brackets parses.
    assert load_event('{"text":"[[[{{{"}') == {"text": "[[[{{{"}


def test_parse_object_refuses_too_many_containers_as_protocol() -> None:
    # Every decoder parses through parse_object: the bound holds there too.
    with pytest.raises(ProbeFailure) as info:
        parse_object('{"a":[' + ",".join(["[]"] * MAX_EVENT_CONTAINERS) + "]}")
    assert info.value.reason is FailureReason.PROTOCOL


def test_error_text_of_a_deep_value_is_not_a_recursion() -> None:
    deep: list[object] = []
    for _ in range(1000):
        deep = [deep]
    assert error_text(deep, lambda _: "") == f"error in stream: {server_text(deep)}"
    assert (
        error_text({"message": "boom", "type": deep}, lambda _: "x") == "error in stream: boom (x)"
    )
