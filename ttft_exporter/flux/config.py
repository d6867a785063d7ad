"""Configuration of the `flux:` section. Filled in by the Flux monitor work (issue 3)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["FluxInstanceConfig"]


class FluxInstanceConfig(BaseModel):
    """One Flux instance to watch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    url: str
