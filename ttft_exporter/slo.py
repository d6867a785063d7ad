"""SLO configuration (the `slos:` section). Filled in by the SLO work (issue 4)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["SLOsConfig"]


class SLOsConfig(BaseModel):
    """Service level objectives; empty until the SLO section is implemented."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def thresholds(self) -> dict[str, list[float]]:
        """Latency thresholds (seconds) by bucket set, to become bucket boundaries."""
        return {}
