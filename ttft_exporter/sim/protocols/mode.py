"""What the protocol modes share on top of the OpenAI mode's plan (sim/llm.py) and the
stream writer (sim/stream_writer.py): the Bearer check, the error answered before a
stream in the mode's own body, and how a planned stream ends when a fault cuts it."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping

from aiohttp import web

from ttft_exporter.sim.llm import GenerationPlan, _dumps
from ttft_exporter.sim.llm_state import LLMSimState, SimEvent

__all__ = ["ModeError", "bearer_matches", "fault_ending"]


class ModeError(Exception):
    """An error answered before streaming, with the mode's JSON body."""

    def __init__(self, status: int, message: str, body: Mapping[str, object]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self._body = dict(body)

    def response(self) -> web.Response:
        return web.json_response(self._body, status=self.status, dumps=_dumps)


def bearer_matches(headers: Mapping[str, str], state: LLMSimState) -> bool:
    """Whether the request carries `Authorization: Bearer <the simulator's key>` (true
    when no key is configured); compared in constant time."""
    key = state.config.api_key
    if key is None:
        return True
    given = headers.get("Authorization", "")
    return secrets.compare_digest(given.encode(), f"Bearer {key}".encode())


def fault_ending(
    plan: GenerationPlan,
    emitted: int,
    *,
    malformed: Callable[[float], SimEvent],
    error: Callable[[float, int], SimEvent],
) -> Iterator[SimEvent]:
    """The events due after the last token chunk (`emitted` tokens) when the plan says:
    the malformed event, then the fault's (a stall or drop event, nothing for a
    truncation, which is a clean end mid-generation, or the mode's in-stream error
    from `error(at, emitted)`). A mode sends nothing more once `plan.fault` is set."""
    if plan.malformed_after == emitted:
        yield malformed(plan.end_at)
    if plan.fault in ("stall", "drop"):
        yield SimEvent(plan.end_at, plan.fault)
    elif plan.fault == "error":
        yield error(plan.end_at, emitted)
