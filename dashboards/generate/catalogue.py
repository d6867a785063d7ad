"""What the exporter's metric catalogue holds, so a panel for a family that is not
exported yet is left out instead of showing "No data"."""

from __future__ import annotations

from ttft_exporter.catalogue import EXPORTER_METRICS, FLUX_METRICS, PROBE_METRICS

NAMES = frozenset(spec.name for spec in (*PROBE_METRICS, *EXPORTER_METRICS, *FLUX_METRICS))


def has_metric(name: str) -> bool:
    return name in NAMES
