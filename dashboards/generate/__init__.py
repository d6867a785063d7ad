"""Grafana dashboards as code (grafana-foundation-sdk): `make dashboards` writes
`dashboards/*.json` and the alert-to-panel map; not part of the ttft_exporter package."""

from __future__ import annotations

from collections.abc import Callable

from dashboards.generate import exporter, fleet, flux, slos
from dashboards.generate.common import Board

# File name (in dashboards/) -> builder.
DASHBOARDS: dict[str, Callable[[], Board]] = {
    "ttft-fleet.json": fleet.build,
    "ttft-slos.json": slos.build,
    "ttft-flux.json": flux.build,
    "ttft-exporter.json": exporter.build,
}
