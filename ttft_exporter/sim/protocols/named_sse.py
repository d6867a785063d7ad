"""The shared half of the simulator modes whose streams are SSE with named events
(Anthropic Messages, OpenAI Responses): the event type and its writer, written through
the simulator's one stream loop (sim/stream_writer.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ttft_exporter.sim.llm_state import ModelBehaviour, SimEvent
from ttft_exporter.sim.stream_writer import SSEFramer

__all__ = ["NamedEvent", "NamedSSEFramer", "new_framer"]


@dataclass(frozen=True, slots=True)
class NamedEvent(SimEvent):
    """A data event with its SSE event name (the `type` its data repeats)."""

    name: str = ""


class NamedSSEFramer(SSEFramer):
    """The OpenAI mode's writer (spacing, CRLF and split-write knobs) with an `event:`
    line before every data line. A keep-alive is a `ping` event where the protocol has
    one (Anthropic), an SSE comment otherwise."""

    def __init__(
        self,
        *,
        ping: str | None = None,
        data_space: bool = True,
        crlf: bool = False,
        split_writes: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(data_space=data_space, crlf=crlf, split_writes=split_writes, rng=rng)
        self._ping = ping

    def frame(self, event: SimEvent) -> list[bytes]:
        if event.kind == "comment" and self._ping is None:
            return super().frame(event)
        eol = self._end[: len(self._end) // 2]
        if event.kind == "comment":
            name, data = "ping", self._ping
        else:
            name = event.name if isinstance(event, NamedEvent) else "message"
            data = event.data
        raw = f"event: {name}{eol}{self._prefix}{data}{self._end}".encode()
        return self._pieces(raw) if self._split else [raw]


def new_framer(behaviour: ModelBehaviour, ping: str | None) -> NamedSSEFramer:
    """The writer with the model's framing knobs."""
    return NamedSSEFramer(
        ping=ping,
        data_space=behaviour.data_space,
        crlf=behaviour.crlf,
        split_writes=behaviour.split_writes,
        rng=random.Random(behaviour.seed),
    )
