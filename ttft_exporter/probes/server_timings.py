"""Timings a server reports for its own work on one request, as a typed value, and the
pure parsers of the shapes that carry them in a stream (llm-streaming.md §A.4, §B.4):

- Ollama: the final `done: true` line, `load_duration`, `prompt_eval_duration`,
  `eval_duration` and `total_duration`, in nanoseconds;
- llama.cpp's server: the `timings` object on the last chunk of its OpenAI-compatible
  streams (`to_json_oaicompat_chat_stream` appends it to the finish or usage chunk),
  `prompt_ms` and `predicted_ms`, in milliseconds.

TGI's `/generate_stream` carries none: its final `details` hold only counts and the
finish reason, and its `x-*-time` headers are set on the non-streaming route only
(§A.5). A server's value is JSON, so anything: a field that is not a finite,
non-negative number of at most MAX_SERVER_SECONDS is taken as not reported. Parsing
never raises."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_SERVER_SECONDS", "ServerTimings", "from_llamacpp", "from_ollama"]

# No probe lasts this long (a target's timeout is below its interval, and one hour is
# beyond any sane interval): a longer duration cannot belong to this request.
MAX_SERVER_SECONDS = 3600.0
# A server duration may exceed the client's elapsed time by this fraction plus
# _SLACK_SECONDS (clock rates and rounding); beyond that it did not happen inside this
# request, which the client timed from before the server saw it to after it answered.
_SLACK_FRACTION = 0.01
_SLACK_SECONDS = 0.001
# Units per second: a division rounds once (1000 ns is exactly 1e-06 s), a multiplication
# by 1e-9 twice.
_NS = 1e9
_MS = 1e3


@dataclass(frozen=True, slots=True)
class ServerTimings:
    """Durations in seconds, as the server measured them; None where it did not
    report one (or reported one that cannot be true).

    `load`: loading the model (a cold start); `prefill`: processing the prompt;
    `decode`: generating the output; `total`: the whole request as the server saw it."""

    load: float | None = None
    prefill: float | None = None
    decode: float | None = None
    total: float | None = None

    @property
    def reported(self) -> bool:
        """Whether any duration is known."""
        return any(v is not None for v in (self.load, self.prefill, self.decode, self.total))

    def merge(self, later: ServerTimings | None) -> ServerTimings:
        """This report updated by a later one: each duration it gives wins, each it
        omits is kept (llama.cpp with `timings_per_token` repeats a growing object)."""
        if later is None:
            return self
        return ServerTimings(
            load=self.load if later.load is None else later.load,
            prefill=self.prefill if later.prefill is None else later.prefill,
            decode=self.decode if later.decode is None else later.decode,
            total=self.total if later.total is None else later.total,
        )

    def within(self, elapsed: float) -> ServerTimings | None:
        """These timings without any duration longer than the client's `elapsed`
        (request sent to stream end) allows; None if nothing is left."""
        bound = elapsed * (1 + _SLACK_FRACTION) + _SLACK_SECONDS

        def keep(value: float | None) -> float | None:
            return value if value is not None and value <= bound else None

        kept = ServerTimings(
            load=keep(self.load),
            prefill=keep(self.prefill),
            decode=keep(self.decode),
            total=keep(self.total),
        )
        return kept if kept.reported else None

    @property
    def time_to_first_token(self) -> float | None:
        """The server's share of a TTFT: load + prefill (a missing load counts as 0:
        servers that report none keep the model loaded); None without a prefill."""
        if self.prefill is None:
            return None
        return (self.load or 0.0) + self.prefill


def _duration(value: Any, per_second: float) -> float | None:
    """A duration in seconds from a JSON number in units of 1/`per_second` s; None for
    anything that is not a finite, non-negative number of at most MAX_SERVER_SECONDS."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # Compared before any conversion: float() of a huge int raises OverflowError.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value < 0 or value > MAX_SERVER_SECONDS * per_second:
        return None
    return float(value) / per_second


def _timings(**durations: float | None) -> ServerTimings | None:
    timings = ServerTimings(**durations)
    return timings if timings.reported else None


def from_ollama(line: dict[str, Any]) -> ServerTimings | None:
    """The timings of Ollama's final `done: true` line (nanoseconds), or None."""
    return _timings(
        load=_duration(line.get("load_duration"), _NS),
        prefill=_duration(line.get("prompt_eval_duration"), _NS),
        decode=_duration(line.get("eval_duration"), _NS),
        total=_duration(line.get("total_duration"), _NS),
    )


def from_llamacpp(timings: Any) -> ServerTimings | None:
    """The timings of llama.cpp's `timings` object (milliseconds), or None. It has no
    load or total: llama-server loads its model before it serves."""
    if not isinstance(timings, dict):
        return None
    return _timings(
        prefill=_duration(timings.get("prompt_ms"), _MS),
        decode=_duration(timings.get("predicted_ms"), _MS),
    )
