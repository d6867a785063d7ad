"""Live progress of a load test: on a terminal one bar per step, redrawn in place
(requests done, errors, running TTFT p50/p99, output tokens/s); otherwise a plain line
every few seconds. Then the final table. Redraws are rate-limited: the display must
cost the measuring loop next to nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TextIO

from ttft_exporter.bench.profile import Step
from ttft_exporter.bench.records import RequestRecord
from ttft_exporter.bench.results import StepResult, SweepResult
from ttft_exporter.bench.stats import percentile

__all__ = ["Progress", "format_table"]

_TTY_EVERY = 0.25  # seconds between redraws on a terminal
_PLAIN_EVERY = 5.0  # seconds between lines otherwise
_BAR = 24


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


class Progress:
    """Writes to `out` (a terminal when `tty`)."""

    def __init__(
        self,
        out: TextIO,
        *,
        tty: bool,
        steps: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = out
        self._tty = tty
        self._steps = steps
        self._clock = clock
        self._step: Step | None = None
        self._reset()

    def _reset(self) -> None:
        self._done = 0
        self._errors = 0
        self._tokens = 0
        self._ttft: list[float] = []
        self._started = self._clock()
        self._measuring_since: float | None = None
        self._last = self._started

    def start_step(self, step: Step) -> None:
        """A step begins (its warm-up first)."""
        self._step = step
        self._reset()
        if not self._tty:
            self._line(f"step {step.index + 1}/{self._steps} {step.label}: started")

    def on_record(self, record: RequestRecord) -> None:
        """A request ended; warm-up requests only move the clock."""
        if not record.warmup:
            if self._measuring_since is None:
                self._measuring_since = self._clock()
            self._done += 1
            if record.success:
                self._tokens += record.output_tokens or 0
                if record.ttft is not None:
                    self._ttft.append(record.ttft)
            else:
                self._errors += 1
        now = self._clock()
        if now - self._last >= (_TTY_EVERY if self._tty else _PLAIN_EVERY):
            self._last = now
            self._draw(now, final=False)

    def end_step(self, result: StepResult) -> None:
        """A step ended: its last state, and a newline on a terminal."""
        self._draw(self._clock(), final=True, result=result)

    def _status(self, now: float) -> str:
        step = self._step
        assert step is not None  # noqa: S101 - start_step() comes first
        elapsed = now - (self._measuring_since or now)
        if step.stop.requests is not None:
            total = step.stop.requests
            frac = min(self._done / total, 1.0)
            count = f"{self._done}/{total}"
        else:
            duration = step.stop.duration or 1.0
            frac = min(elapsed / duration, 1.0)
            count = f"{self._done} req {elapsed:.0f}/{duration:g}s"
        ordered = sorted(self._ttft)
        bar = "#" * int(frac * _BAR) + "." * (_BAR - int(frac * _BAR))
        rate = self._tokens / elapsed if elapsed > 0 else 0.0
        warm = "warm-up " if self._measuring_since is None else ""
        return (
            f"step {step.index + 1}/{self._steps} {step.label:>9} [{bar}] {warm}{count} "
            f"err {self._errors} ttft p50 {_ms(percentile(ordered, 50))} "
            f"p99 {_ms(percentile(ordered, 99))} ms {rate:,.0f} tok/s"
        )

    def _draw(self, now: float, *, final: bool, result: StepResult | None = None) -> None:
        text = self._status(now)
        if result is not None and result.self_watch.client_bound:
            text += " CLIENT-BOUND"
        if self._tty:
            self._out.write("\r\x1b[2K" + text + ("\n" if final else ""))
            self._out.flush()
        else:
            self._line(text)

    def _line(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()


_COLUMNS = (
    ("step", 4),
    ("load", 9),
    ("reqs", 6),
    ("err", 5),
    ("ttft p50", 8),
    ("ttft p99", 8),
    ("tpot p50", 8),
    ("itl p99", 8),
    ("e2e p99", 8),
    ("conn p99", 8),
    ("req/s", 7),
    ("out tok/s", 9),
    ("goodput", 7),
    ("lag max", 7),
    ("cpu", 5),
    ("client", 6),
)


def format_table(steps: Sequence[StepResult], sweep: SweepResult | None = None) -> str:
    """The final table (latencies in ms); `client` says `BOUND` where the client was
    the bottleneck, and `*` marks a step that missed its SLOs."""
    header = " ".join(name.rjust(width) for name, width in _COLUMNS)
    lines = [header]
    for result in steps:
        s, w = result.stats, result.self_watch
        load = f"c={result.load:g}" if result.kind == "concurrency" else f"r={result.load:g}/s"
        goodput = "-" if s.goodput is None else f"{s.goodput:.0%}"
        if result.slo_met is False:
            goodput += "*"
        cells = (
            str(result.index + 1),
            load,
            str(s.requests),
            str(s.requests - s.succeeded),
            _ms(s.ttft.p50),
            _ms(s.ttft.p99),
            _ms(s.tpot.p50),
            _ms(s.itl.p99),
            _ms(s.e2e.p99),
            _ms(s.connect.p99),
            f"{s.requests_per_second:.1f}",
            f"{s.output_tokens_per_second:,.0f}",
            goodput,
            _ms(w.loop_lag_max),
            f"{w.cpu_cores:.2f}",
            "BOUND" if w.client_bound else "ok",
        )
        lines.append(
            " ".join(c.rjust(width) for c, (_, width) in zip(cells, _COLUMNS, strict=True))
        )
    for result in steps:
        for why in result.self_watch.why:
            lines.append(f"step {result.index + 1}: client-bound: {why}")
    if sweep is not None:
        found = "none" if sweep.max_load is None else f"{sweep.max_load:g}"
        lines.append(
            f"sweep: highest load meeting the SLOs: {found} (stopped by {sweep.stopped_by})"
        )
    return "\n".join(lines) + "\n"
