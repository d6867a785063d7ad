"""Simulator modes of the non-OpenAI protocols: one module each, speaking that
protocol's real wire format on the same simulator app (same models, timing and fault
knobs, same request log). Each module has `add_routes(app)`; `ROUTES` lists them."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ttft_exporter.sim.protocols import anthropic, openai_responses

__all__ = ["ROUTES"]

# One entry per protocol module, e.g. `anthropic.add_routes`.
ROUTES: tuple[Callable[[web.Application], None], ...] = (
    # anthropic (#10)
    anthropic.add_routes,
    # openai-responses (#10)
    openai_responses.add_routes,
)
