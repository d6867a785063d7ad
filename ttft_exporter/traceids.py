"""W3C Trace Context ids for probes: a 128-bit trace id and a 64-bit span id, both
nonzero (an all-zero id is invalid). They link a probe's exemplars to its span, they
guard nothing, so a fast PRNG is enough; its own instance, seeded from os.urandom at
import, so nothing that seeds the module-level `random` (tests, benchmarks) can make
two exporters hand out the same ids."""

from __future__ import annotations

import random

__all__ = ["format_span_id", "format_trace_id", "new_span_id", "new_trace_id"]

_rng = random.Random()  # ids for correlation, not secrets


def new_trace_id() -> int:
    """A random nonzero 128-bit trace id."""
    while True:
        value = _rng.getrandbits(128)
        if value:
            return value


def new_span_id() -> int:
    """A random nonzero 64-bit span id."""
    while True:
        value = _rng.getrandbits(64)
        if value:
            return value


def format_trace_id(trace_id: int) -> str:
    """32 lowercase hex digits, as in a `traceparent` header and in Tempo/Jaeger."""
    return f"{trace_id:032x}"


def format_span_id(span_id: int) -> str:
    """16 lowercase hex digits."""
    return f"{span_id:016x}"
