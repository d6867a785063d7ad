"""Owns one monitor per configured Flux instance. Filled in by the Flux monitor work."""

from __future__ import annotations

from collections.abc import Sequence

import aiojobs
from prometheus_client import CollectorRegistry

from ttft_exporter.clock import Clock
from ttft_exporter.flux.config import FluxInstanceConfig

__all__ = ["FluxSupervisor"]


class FluxSupervisor:
    """Starts, restarts (on config change) and stops the Flux monitors."""

    def __init__(
        self, *, registry: CollectorRegistry, jobs: aiojobs.Scheduler, clock: Clock
    ) -> None:
        self._registry = registry
        self._jobs = jobs
        self._clock = clock

    async def apply(self, instances: Sequence[FluxInstanceConfig]) -> None:
        """Make the running monitors match the config."""

    async def close(self) -> None:
        """Stop every monitor."""
