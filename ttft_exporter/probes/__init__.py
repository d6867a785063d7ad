"""The protocol registry: one module per protocol, one entry per protocol name.

A prober takes a target, the target's HTTP session, a clock and (keyword) the
inter-token bucket boundaries of the store it will be recorded into, and returns a
prepared probe whose `run()` measures and whose `failure()` turns an exception into data.
Adding a protocol means: a config model in `config.py`, a module here, an entry in
PROBERS, a test module and a section in the configuration reference.
"""

from __future__ import annotations

from ttft_exporter.probes.base import PreparedProbe, Prober
from ttft_exporter.probes.openai import probe_openai_chat, probe_openai_completions
from ttft_exporter.probes.session import create_session

__all__ = ["PROBERS", "PreparedProbe", "Prober", "create_session", "get_prober"]

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
