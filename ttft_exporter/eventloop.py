"""Which event loop runs the exporter and the load tester: asyncio's own, or uvloop's.

uvloop (libuv under asyncio's API, MagicStack) does the loop's own work (polling,
transports, callbacks) in C. At 200 concurrent reference streams it kept the load
tester's own loop lag and TTFT p99 drift lower (lag p99 1.3-1.8 against 5.6-5.9 ms,
drift p99 +3.5-5.9 against +5.8-7.9 ms); its CPU per token hardly moved, aiohttp's and
the engine's Python code being most of it (benchmarks/README.md, "The CPU floor"). The
measurements do not depend on it: every stamp is `perf_counter_ns`, never `loop.time()`
(which uvloop keeps in whole milliseconds, cached per loop pass).

It is an optional dependency (`pip install 'ttft-exporter[uvloop]'`): `auto` takes it
when it is installed and asyncio's loop otherwise; `uvloop` insists on it.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, Final, Literal, TypeVar, cast, get_args

__all__ = ["EVENT_LOOPS", "EventLoopChoice", "EventLoopError", "LoopName", "loop_name", "run"]

EventLoopChoice = Literal["auto", "asyncio", "uvloop"]
LoopName = Literal["asyncio", "uvloop"]
EVENT_LOOPS: Final = cast("tuple[EventLoopChoice, ...]", get_args(EventLoopChoice))

_T = TypeVar("_T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class EventLoopError(RuntimeError):
    """The event loop asked for cannot be had (uvloop asked for, not installed)."""


def _uvloop_factory() -> LoopFactory | None:
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    return cast(LoopFactory, uvloop.new_event_loop)


def _factory(choice: EventLoopChoice) -> LoopFactory | None:
    """The loop factory of a choice; None is asyncio's default loop."""
    if choice == "asyncio":
        return None
    factory = _uvloop_factory()
    if factory is None and choice == "uvloop":
        raise EventLoopError(
            "--event-loop=uvloop: uvloop is not installed "
            "(pip install 'ttft-exporter[uvloop]', or use --event-loop=asyncio)"
        )
    return factory


def loop_name(choice: EventLoopChoice) -> LoopName:
    """The loop a choice resolves to here: "uvloop" or "asyncio"."""
    return "asyncio" if _factory(choice) is None else "uvloop"


def run(main: Coroutine[Any, Any, _T], choice: EventLoopChoice) -> _T:
    """`asyncio.run(main)` on the chosen loop."""
    try:
        factory = _factory(choice)
    except EventLoopError:
        main.close()  # never awaited: close it so Python does not warn about it
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
