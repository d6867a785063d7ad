"""Exemplars of the latency histograms: the trace of the latest probe observed into a
bucket, shown only in the OpenMetrics exposition (the classic text format has no
exemplars), so a dashboard can jump from a slow bucket to that probe's trace."""

from __future__ import annotations

import math

from ttft_exporter.sinks.prometheus.render import format_float
from ttft_exporter.traceids import format_span_id, format_trace_id

__all__ = ["EXEMPLAR_FAMILIES", "MAX_LABEL_CHARS", "Exemplar", "ProbeTrace"]

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


class ProbeTrace:
    """The trace of one probe as exemplars spell it: W3C ids as lowercase hex, the
    wall-clock time in seconds (None: not known, left out), and the fixed parts of the
    OpenMetrics suffix, spelled once per probe, not per histogram or scrape."""

    __slots__ = ("_prefix", "_stamp", "span_id", "timestamp", "trace_id")

    def __init__(self, trace_id: int, span_id: int, timestamp: float | None) -> None:
        self.trace_id = format_trace_id(trace_id)
        self.span_id = format_span_id(span_id)
        # Milliseconds: what Prometheus keeps of an exemplar's timestamp.
        self.timestamp = round(timestamp, 3) if timestamp and math.isfinite(timestamp) else None
        self._prefix = f' # {{trace_id="{self.trace_id}",span_id="{self.span_id}"}} '
        self._stamp = "" if self.timestamp is None else f" {self.timestamp:.3f}"

    @property
    def labels(self) -> dict[str, str]:
        """The exemplar label set."""
        return {"trace_id": self.trace_id, "span_id": self.span_id}

    def exemplar(self, value: float) -> Exemplar:
        """The exemplar of one observation of this probe."""
        return Exemplar(self, value, f"{self._prefix}{format_float(value)}{self._stamp}")


class Exemplar:
    """One bucket's exemplar: the probe's trace, the observed value and the
    OpenMetrics suffix of the bucket line (` # {...} value timestamp`)."""

    __slots__ = ("text", "trace", "value")

    def __init__(self, trace: ProbeTrace, value: float, text: str) -> None:
        self.trace = trace
        self.value = value
        self.text = text

    @property
    def labels(self) -> dict[str, str]:
        """The exemplar label set."""
        return self.trace.labels

    @property
    def timestamp(self) -> float | None:
        """Wall-clock seconds, to the millisecond; None if not known."""
        return self.trace.timestamp
