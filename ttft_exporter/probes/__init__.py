"""THE protocol registry: one table, `PROTOCOLS`, from which the config's discriminated
union of target models and the prober lookup are both derived.

A prober takes a target, the target's HTTP session, a clock and (keyword) the
inter-token bucket boundaries of the store it will be recorded into, and returns a
prepared probe whose `run()` measures and whose `failure()` turns an exception into data.
Adding a protocol means one module here declaring its ProtocolSpec (config model,
request builder, framer, decoder), one line in PROTOCOLS, a simulator mode and their
tests (docs/adding-a-protocol.md).
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, get_args

from pydantic import Field

from ttft_exporter.probes import (
    anthropic,
    azure_openai,
    gemini,
    ollama,
    openai,
    openai_responses,
    tgi,
)
from ttft_exporter.probes.base import PreparedProbe, Prober, ProbeResult, ProtocolSpec
from ttft_exporter.probes.engine import stream_prober
from ttft_exporter.probes.session import create_session
from ttft_exporter.targets import TargetBase

if TYPE_CHECKING:
    import aiohttp

    from ttft_exporter.clock import Clock

__all__ = [
    "PROBERS",
    "PROTOCOLS",
    "PROTOCOL_NAMES",
    "PreparedProbe",
    "ProbeResult",
    "Prober",
    "ProtocolSpec",
    "TargetConfig",
    "create_session",
    "get_prober",
    "get_protocol",
    "measure",
]

PROTOCOLS: tuple[ProtocolSpec[Any], ...] = (
    openai.CHAT,
    openai.COMPLETIONS,
    # Gemini API and Vertex AI (#10)
    gemini.GEMINI,
    # Azure OpenAI: openai-chat at a deployment URL with the api-key header (#10)
    azure_openai.AZURE_OPENAI,
    # Ollama's native API (NDJSON)
    ollama.CHAT,
    ollama.GENERATE,
    # Hugging Face TGI's native API (SSE)
    tgi.TGI,
    # anthropic (#10)
    anthropic.ANTHROPIC,
    # openai-responses (#10)
    openai_responses.RESPONSES,
)


def _checked(spec: ProtocolSpec[Any]) -> ProtocolSpec[Any]:
    """A spec whose model answers to its name: the union picks models by the literal
    of their `protocol` field, the prober lookup by the spec's name."""
    literal = get_args(spec.model.model_fields["protocol"].annotation)
    if literal != (spec.name,):
        raise TypeError(
            f"protocol {spec.name!r}: {spec.model.__name__}.protocol must be "
            f'Literal["{spec.name}"], not {literal!r}'
        )
    return spec


_BY_NAME: dict[str, ProtocolSpec[Any]] = {spec.name: _checked(spec) for spec in PROTOCOLS}
if len(_BY_NAME) != len(PROTOCOLS):
    raise TypeError("PROTOCOLS lists a protocol name twice")

PROTOCOL_NAMES: tuple[str, ...] = tuple(_BY_NAME)
PROBERS: dict[str, Prober] = {spec.name: stream_prober(spec) for spec in PROTOCOLS}

if TYPE_CHECKING:
    # A type checker cannot evaluate a union built from a table: it sees the base,
    # which has every shared field; code needing a protocol's own fields narrows with
    # isinstance().
    TargetConfig = TargetBase
else:
    # `Union[tuple]` builds the union of every protocol model at runtime.
    TargetConfig = Annotated[
        typing.Union[tuple(spec.model for spec in PROTOCOLS)],  # noqa: UP007
        Field(discriminator="protocol"),
    ]


def get_protocol(protocol: str) -> ProtocolSpec[Any]:
    """The spec of a protocol; a clear error naming the known ones otherwise."""
    try:
        return _BY_NAME[protocol]
    except KeyError:
        raise KeyError(
            f"unknown protocol {protocol!r}; known: {', '.join(sorted(_BY_NAME))}"
        ) from None


def get_prober(protocol: str) -> Prober:
    """The prober of a protocol; a clear error naming the known ones otherwise."""
    try:
        return PROBERS[protocol]
    except KeyError:
        raise KeyError(
            f"unknown protocol {protocol!r}; known: {', '.join(sorted(PROBERS))}"
        ) from None


async def measure(
    target: TargetBase,
    session: aiohttp.ClientSession,
    clock: Clock,
    *,
    timeout: float,
    gap_bounds: Sequence[float] | None = None,
) -> ProbeResult:
    """One probe of `target` under a deadline, every failure turned into data (the
    probe boundary of the executor, for callers that record results their own way:
    `ttft-exporter bench`). Raises only CancelledError and the errors of preparing
    the probe (a target of the wrong model: a bug of the caller)."""
    prepared = get_prober(target.protocol)(target, session, clock, gap_bounds=gap_bounds)
    try:
        async with asyncio.timeout(timeout):
            return await prepared.run()
    except Exception as exc:  # noqa: BLE001 - the probe boundary turns every error into data
        return prepared.failure(exc, timeout)
