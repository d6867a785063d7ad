"""Tests for ttft_exporter.logs, and for the suite's guard that no test leaks logging
state (tests/conftest.py): `cli.run()` binds the root logger to the sys.stderr of its
test, a capture file pytest closes afterwards."""

from __future__ import annotations

import io
import logging

import pytest

from tests.helpers import LOGGING_ERRORS
from ttft_exporter.cli import run
from ttft_exporter.logs import setup_logging


def _closed_stream_handlers() -> list[logging.Handler]:
    return [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and getattr(h.stream, "closed", False)
    ]


def test_setup_logging_replaces_the_root_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("debug", "json")
    root = logging.getLogger()
    assert len(root.handlers) == 1 and root.level == logging.DEBUG
    logging.getLogger("ttft_exporter.test").info("hello")
    assert '"msg": "hello"' in capsys.readouterr().err


def test_cli_run_configures_logging_on_this_tests_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The first half of the pair: run() installs a handler bound to capsys' stream,
    # which pytest closes when this test ends.
    assert run(["config-schema"]) == 0
    root = logging.getLogger()
    assert len(root.handlers) == 1
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    assert handler.stream is not None and not handler.stream.closed
    capsys.readouterr()


def test_the_next_test_logs_without_a_logging_error() -> None:
    # The second half, run right after the first (pytest keeps file order): without the
    # guard in tests/conftest.py the root logger still holds the previous test's closed
    # stream, this warning raises "--- Logging error ---" and the `_no_logging_errors`
    # fixture fails the test; the explicit check below says why.
    assert _closed_stream_handlers() == []
    logging.getLogger("ttft_exporter.test").warning("after run()")


def test_a_failing_handler_is_seen_by_the_guard() -> None:
    # The guard itself: a handler writing to a closed stream is recorded, not only
    # printed. Record and clear here, so this test does not fail on purpose.
    stream = io.StringIO()
    stream.close()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("ttft_exporter.test.guard")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("into a closed stream")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert LOGGING_ERRORS == ["StreamHandler: 'into a closed stream'"]
    LOGGING_ERRORS.clear()
