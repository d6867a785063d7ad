"""eventloop.py: the chosen loop is the loop that runs, and uvloop asked for on a
machine without it is an error, not a silent fallback."""

from __future__ import annotations

import asyncio
import inspect
import sys
import warnings

import pytest

from ttft_exporter.eventloop import EVENT_LOOPS, EventLoopError, loop_name, run


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_choices() -> None:
    assert EVENT_LOOPS == ("auto", "asyncio", "uvloop")


def test_each_choice_runs_on_its_loop() -> None:
    # uvloop is installed with the test dependencies.
    assert run(_loop_module(), "asyncio").startswith("asyncio")
    assert run(_loop_module(), "uvloop").startswith("uvloop")
    assert run(_loop_module(), "auto").startswith("uvloop")
    assert [loop_name(c) for c in EVENT_LOOPS] == ["uvloop", "asyncio", "uvloop"]


def test_without_uvloop_auto_falls_back_and_uvloop_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import uvloop` raise ImportError.
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert loop_name("auto") == "asyncio"
    assert run(_loop_module(), "auto").startswith("asyncio")
    with pytest.raises(EventLoopError, match="uvloop is not installed"):
        loop_name("uvloop")
    # The coroutine that cannot run is closed, not left to warn "never awaited".
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        main = _loop_module()
        with pytest.raises(EventLoopError):
            run(main, "uvloop")
        assert inspect.getcoroutinestate(main) == inspect.CORO_CLOSED
