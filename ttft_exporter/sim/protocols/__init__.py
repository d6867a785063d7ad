"""Simulator modes of the non-OpenAI protocols: one module each, speaking that
protocol's real wire format on the same simulator app (same models, timing and fault
knobs, same request log). Each module has `add_routes(app)`; `ROUTES` lists them."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ttft_exporter.sim.protocols import (
    anthropic,
    azure_openai,
    gemini,
    ollama,
    openai_responses,
    tgi,
)

__all__ = ["ROUTES"]

# One entry per protocol module, e.g. `anthropic.add_routes`.
ROUTES: tuple[Callable[[web.Application], None], ...] = (
    # Gemini API and Vertex AI (#10)
    gemini.add_routes,
    # Azure OpenAI deployments (#10)
    azure_openai.add_routes,
    # Ollama's native API: /api/chat and /api/generate (NDJSON)
    ollama.add_routes,
    # Hugging Face TGI's native API: /generate_stream (SSE)
    tgi.add_routes,
    # anthropic (#10)
    anthropic.add_routes,
    # openai-responses (#10)
    openai_responses.add_routes,
)
