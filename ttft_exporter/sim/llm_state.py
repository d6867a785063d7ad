"""The LLM simulator's data, shared by every mode and by the stream writer: the
simulated models' knobs, the simulator config, the request log, the runtime state and
the stream event type. Kept apart from the OpenAI mode (sim/llm.py) so that the writer
(sim/stream_writer.py) and the protocol modes depend on it, not on one another."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "DEFAULT_MODEL",
    "LLM_SIM_STATE",
    "EventKind",
    "LLMSimConfig",
    "LLMSimState",
    "ModelBehaviour",
    "RecordedRequest",
    "SimEvent",
]

DEFAULT_MODEL = "sim-model"

EventKind = Literal["data", "comment", "stall", "hold", "drop"]

_REDACTED = "REDACTED"
# The headers the protocol modes take a key in, redacted in the request log.
_KEY_HEADERS = frozenset({"authorization", "x-goog-api-key", "api-key", "x-api-key"})
_MAX_TIMESTAMPS = 100_000


class ModelBehaviour(BaseModel):
    """Timing and fault knobs of one simulated model; durations are float seconds.

    Fault knobs ``*_after`` count generated tokens (reasoning + answer); a fault whose
    count exceeds the tokens the request will generate never fires.

    How a stream ends: ``finish_reason`` is ``"auto"`` (``stop``, or ``length`` when
    ``max_tokens`` cuts the answer), any other string (sent as is), or None: no finish
    chunk at all, then ``[DONE]``, as llama-cpp-python ends a generation another
    request interrupted. ``omit_done`` leaves out ``[DONE]`` and closes the stream
    cleanly instead; ``truncate_after`` closes it cleanly after that many tokens,
    with no finish chunk, usage or ``[DONE]``. ``burst`` holds back every event from
    the first token on and writes them in one write when the last is due, as a
    buffering proxy delivers a stream (or a starved client reads it). These knobs
    shape streams only.

    ``max_concurrency`` is the model's capacity: at most that many streams generate
    at once, the others wait in line, their TTFT growing by the wait, as a server at
    capacity answers (`ttft-exporter bench --profile sweep` finds that knee). A
    request with ``ignore_eos: true`` (vLLM's, to fix the output length) generates
    ``max_tokens`` answer tokens whatever ``tokens`` says; ``min_tokens`` raises the
    answer to at least that many (capped by ``max_tokens``).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    ttft: float = Field(default=0.05, ge=0)
    itl: float = Field(default=0.01, ge=0)
    jitter: float = Field(default=0.0, ge=0)
    seed: int | None = None
    tokens: int = Field(default=16, ge=0)
    tokens_per_chunk: int = Field(default=1, ge=1)
    role_chunk: bool = True
    keepalive_interval: float | None = Field(default=None, gt=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    reasoning_field: Literal["reasoning", "reasoning_content"] = "reasoning"
    usage: Literal["auto", "always", "never"] = "auto"
    continuous_usage: bool = False
    status: int = 200
    headers_delay: float = Field(default=0.0, ge=0)
    error_after: int | None = Field(default=None, ge=0)
    stall_after: int | None = Field(default=None, ge=0)
    drop_after: int | None = Field(default=None, ge=0)
    malformed_after: int | None = Field(default=None, ge=0)
    keep_open_after_done: bool = False
    finish_reason: str | None = "auto"
    omit_done: bool = False
    truncate_after: int | None = Field(default=None, ge=0)
    burst: bool = False
    data_space: bool = True
    crlf: bool = False
    split_writes: bool = False
    token_text: str = "tok"  # noqa: S105 (not a credential)
    prompt_tokens: int | None = Field(default=None, ge=0)
    # llama.cpp's `timings` object on the last chunk (finish or usage chunk) of the
    # OpenAI-compatible modes: prompt_ms from the first token's due time less
    # headers_delay (llama-server does not count time queued for a slot), predicted_ms
    # from the first to the last token.
    llamacpp_timings: bool = False
    max_concurrency: int | None = Field(default=None, ge=1)

    @field_validator("status")
    @classmethod
    def _check_status(cls, value: int) -> int:
        if value != 200 and not 400 <= value <= 599:
            msg = "status must be 200 (stream) or an error status from 400 to 599"
            raise ValueError(msg)
        return value


def _default_models() -> dict[str, ModelBehaviour]:
    return {DEFAULT_MODEL: ModelBehaviour()}


class LLMSimConfig(BaseModel):
    """The simulated models, the optional API key and the request-log size."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelBehaviour] = Field(default_factory=_default_models)
    api_key: str | None = None
    record_requests: int = Field(default=100, ge=0)


@dataclass(slots=True)
class RecordedRequest:
    """One request as the simulator received it (``arrival`` is a perf_counter)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    arrival: float
    first_text_written: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready view with the key headers' values redacted."""
        headers = {
            name: _REDACTED if name.lower() in _KEY_HEADERS else value
            for name, value in self.headers.items()
        }
        return {
            "method": self.method,
            "path": self.path,
            "headers": headers,
            "body": self.body,
            "arrival": self.arrival,
            "first_text_written": self.first_text_written,
        }


class LLMSimState:
    """Mutable runtime state of one simulator app, stored under ``LLM_SIM_STATE``."""

    def __init__(self, config: LLMSimConfig) -> None:
        self.config = config
        self.requests: collections.deque[RecordedRequest] = collections.deque(
            maxlen=config.record_requests
        )
        # perf_counter() right after each stream's first text write, for benchmarks.
        self.first_token_written: collections.deque[float] = collections.deque(
            maxlen=_MAX_TIMESTAMPS
        )
        self.closing = asyncio.Event()
        # Per model and capacity (a PATCH may change it): the streams generating now.
        self._capacity: dict[tuple[str, int], asyncio.Semaphore] = {}

    def capacity(
        self, model: str, behaviour: ModelBehaviour
    ) -> contextlib.AbstractAsyncContextManager[object]:
        """The slot a stream of `model` generates in: its capacity queue, if any."""
        if behaviour.max_concurrency is None:
            return contextlib.nullcontext()
        key = (model, behaviour.max_concurrency)
        if key not in self._capacity:
            self._capacity[key] = asyncio.Semaphore(behaviour.max_concurrency)
        return self._capacity[key]

    def set_model(self, name: str, behaviour: ModelBehaviour) -> None:
        """Add or replace a model; requests already streaming keep their knobs."""
        models = {**self.config.models, name: behaviour}
        self.config = self.config.model_copy(update={"models": models})


LLM_SIM_STATE: web.AppKey[LLMSimState] = web.AppKey("llm_sim_state", LLMSimState)


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One step of a stream, due ``at`` seconds after the request arrived.

    ``data`` events carry an SSE data payload, ``comment`` events an SSE comment;
    ``stall`` and ``hold`` keep the connection open without writing until the client
    leaves; ``drop`` aborts the TCP connection.
    """

    at: float
    kind: EventKind
    data: str = ""
    text: bool = False
