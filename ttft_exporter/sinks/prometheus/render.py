"""The hand-written Prometheus text and OpenMetrics formatting of the series store:
family headers, label strings, float and `le` spellings, as prometheus_client writes
them (a test compares the two), at a fraction of its cost."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

from ttft_exporter.catalogue import Kind, MetricSpec

__all__ = ["escape", "family_header", "format_float", "label_string", "le_strings"]


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@functools.cache
def family_header(spec: MetricSpec, openmetrics: bool) -> str:
    """`# HELP` and `# TYPE` of a family. HELP is escaped per format, as
    prometheus_client does: backslash and line feed in the classic text format, double
    quotes too in OpenMetrics (where HELP is an escaped string)."""
    family = spec.name
    help_text = spec.help.replace("\\", "\\\\").replace("\n", "\\n")
    if openmetrics:
        help_text = help_text.replace('"', '\\"')
        if spec.kind is Kind.COUNTER:
            family = family.removesuffix("_total")
    return f"# HELP {family} {help_text}\n# TYPE {family} {spec.kind.value}\n"


def format_float(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


@functools.cache
def le_strings(bounds: tuple[float, ...]) -> tuple[str, ...]:
    return (*(format_float(b) for b in bounds), "+Inf")


def label_string(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{escape(v)}"' for k, v in pairs)
