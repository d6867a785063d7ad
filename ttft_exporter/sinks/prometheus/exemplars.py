"""Exemplars of the latency histograms: the trace of the latest probe observed into a
bucket, shown only in the OpenMetrics exposition (the classic text format has no
exemplars), so a dashboard can jump from a slow bucket to that probe's trace."""

from __future__ import annotations

import math

from ttft_exporter.sinks.prometheus.render import format_float
from ttft_exporter.traceids import format_span_id, format_trace_id

__all__ = ["EXEMPLAR_FAMILIES", "MAX_LABEL_CHARS", "Exemplar"]

# The histograms that carry exemplars: one observation per probe, so a bucket's
# exemplar is one probe. Gap histograms (many observations per probe, merged) and the
# phase gauges do not.
EXEMPLAR_FAMILIES = frozenset(
    {
        "ttft_probe_time_to_first_chunk_seconds",
        "ttft_probe_time_to_first_token_seconds",
        "ttft_probe_time_to_first_output_token_seconds",
        "ttft_probe_duration_seconds",
    }
)

# OpenMetrics 1.0: the label names and values of an exemplar together hold at most
# 128 UTF-8 code points. Ours: 8 + 32 + 7 + 16 = 63.
MAX_LABEL_CHARS = 128


class Exemplar:
    """One exemplar: W3C ids as lowercase hex, the observed value, the wall-clock
    time in seconds (None: not known, left out), and its OpenMetrics suffix, spelled
    once when observed, not on every scrape."""

    __slots__ = ("span_id", "text", "timestamp", "trace_id", "value")

    def __init__(self, trace_id: int, span_id: int, value: float, timestamp: float | None) -> None:
        self.trace_id = format_trace_id(trace_id)
        self.span_id = format_span_id(span_id)
        self.value = value
        # Milliseconds: what Prometheus keeps of an exemplar's timestamp.
        self.timestamp = round(timestamp, 3) if timestamp and math.isfinite(timestamp) else None
        stamp = "" if self.timestamp is None else f" {self.timestamp:.3f}"
        self.text = (
            f' # {{trace_id="{self.trace_id}",span_id="{self.span_id}"}} '
            f"{format_float(value)}{stamp}"
        )

    @property
    def labels(self) -> dict[str, str]:
        """The exemplar's label set."""
        return {"trace_id": self.trace_id, "span_id": self.span_id}
