"""The protocol registry: one module per protocol, one entry per protocol name.

A prober takes a target, the target's HTTP session and a clock, and returns a prepared
probe whose `run()` measures and whose `failure()` turns an exception into data.
Adding a protocol means: a config model in `config.py`, a module here, an entry in
PROBERS, a test module and a section in the configuration reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import aiohttp

from ttft_exporter.clock import Clock
from ttft_exporter.config import OpenAIChatTarget, OpenAICompletionsTarget, TargetConfig
from ttft_exporter.probes.base import ProbeResult
from ttft_exporter.probes.http_stream import StreamProbe
from ttft_exporter.probes.openai import (
    ChatDecoder,
    CompletionsDecoder,
    build_chat_request,
    build_completions_request,
    make_nonce,
)

__all__ = ["PROBERS", "PreparedProbe", "Prober", "get_prober"]


class PreparedProbe(Protocol):
    """A probe ready to run once."""

    log: list[str]

    async def run(self) -> ProbeResult: ...

    def failure(self, exc: BaseException, timeout: float) -> ProbeResult: ...


Prober = Callable[[TargetConfig, aiohttp.ClientSession, Clock], PreparedProbe]


def probe_openai_chat(
    target: TargetConfig, session: aiohttp.ClientSession, clock: Clock
) -> PreparedProbe:
    """Streaming Chat Completions."""
    if not isinstance(target, OpenAIChatTarget):
        raise TypeError(f"openai-chat prober got a {type(target).__name__}")
    return StreamProbe(
        session=session,
        clock=clock,
        request=build_chat_request(target, make_nonce() if target.cache_bust else None),
        decoder=ChatDecoder(),
        expect=target.expect,
        server_name=target.tls.server_name,
        secrets=target.secrets(),
    )


def probe_openai_completions(
    target: TargetConfig, session: aiohttp.ClientSession, clock: Clock
) -> PreparedProbe:
    """Streaming legacy Completions."""
    if not isinstance(target, OpenAICompletionsTarget):
        raise TypeError(f"openai-completions prober got a {type(target).__name__}")
    return StreamProbe(
        session=session,
        clock=clock,
        request=build_completions_request(target, make_nonce() if target.cache_bust else None),
        decoder=CompletionsDecoder(),
        expect=target.expect,
        server_name=target.tls.server_name,
        secrets=target.secrets(),
    )


PROBERS: dict[str, Prober] = {
    "openai-chat": probe_openai_chat,
    "openai-completions": probe_openai_completions,
}


def get_prober(protocol: str) -> Prober:
    """The prober of a protocol; a clear error naming the known ones otherwise."""
    try:
        return PROBERS[protocol]
    except KeyError:
        raise KeyError(
            f"unknown protocol {protocol!r}; known: {', '.join(sorted(PROBERS))}"
        ) from None
