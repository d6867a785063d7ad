"""errors.py: every exception under one base, and every component's failure reasons as
enums whose values are the label values the metrics have always had."""

from __future__ import annotations

import enum
import inspect

import pytest

import ttft_exporter.errors as errors
from ttft_exporter import catalogue as metrics


@pytest.mark.parametrize(
    ("reasons", "labels"),
    [
        # The label values as they were before the enums: dashboards and alerts use them.
        (errors.AdhocRejectReason, ("target_busy", "pool_timeout", "budget_exhausted")),
        (errors.HTTPDropReason, ("limit", "client_limit", "header_timeout")),
        (
            errors.FluxReconnectReason,
            ("connect_failed", "closed", "error", "stale", "ping_timeout"),
        ),
        (
            errors.FluxCanaryReason,
            (
                "connect",
                "timeout",
                "http_4xx",
                "http_5xx",
                "auth",
                "rate_limited",
                "not_propagated",
                "protocol",
            ),
        ),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_reason_enums_keep_their_label_values(
    reasons: type[enum.StrEnum], labels: tuple[str, ...]
) -> None:
    assert tuple(r.value for r in reasons) == labels


def test_the_catalogue_children_are_the_enums() -> None:
    assert tuple(errors.AdhocRejectReason) == metrics.ADHOC_REJECT_REASONS
    assert tuple(errors.HTTPDropReason) == metrics.HTTP_DROP_REASONS
    assert tuple(errors.FluxReconnectReason) == metrics.FLUX_RECONNECT_REASONS
    assert tuple(errors.FluxCanaryReason) == metrics.FLUX_CANARY_REASONS


def test_every_exception_is_under_the_one_base() -> None:
    exceptions = [
        obj
        for _name, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__ == errors.__name__
    ]
    assert len(exceptions) >= 7
    assert all(issubclass(e, errors.TTFTExporterError) for e in exceptions)
    # YAMLLimitError stays a ValueError for callers that catch that.
    assert issubclass(errors.YAMLLimitError, ValueError)


def test_canary_failure_carries_its_enum_reason() -> None:
    exc = errors.CanaryFailureError(errors.FluxCanaryReason.RATE_LIMITED, "HTTP 429", 60.0)
    assert str(exc) == "rate_limited: HTTP 429"
    assert exc.reason == "rate_limited" and exc.retry_after == 60.0
