"""A span per probe and per Flux canary check, made after the fact from what was
measured: explicit start and end times, events at the moments the probe stamped.

A probe's stamps are monotonic offsets from its start; `ProbeResult.started_at` is the
wall-clock time of that same start, so the span's epoch times are that anchor plus the
offsets: one conversion per probe, and no clock step between two stamps can reorder
them. The span takes the probe's own trace and span ids (`ProbeResult.trace_id`,
`span_id`) where the executor assigned them, so the Prometheus exemplars point at it.
"""

from __future__ import annotations

import contextvars
import random
from collections.abc import Callable, Mapping

from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from ttft_exporter.catalogue import PHASES
from ttft_exporter.flux.events import CanaryChecked, CanaryPublished, FluxEvent
from ttft_exporter.probes.base import ProbeResult
from ttft_exporter.sinks.otel.semconv import error_type

__all__ = ["ProbeIds", "ProbeTraces"]

Attributes = Mapping[str, str | int]
_NS = 1_000_000_000

# The ids the next span takes (trace id, span id), set around start_span.
_NEXT_IDS: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "ttft_exporter_otel_next_ids", default=None
)


class ProbeIds(IdGenerator):
    """Gives a span the ids of the probe it describes (set in a context variable
    around `start_span`), random ones otherwise (W3C: never 0)."""

    def generate_trace_id(self) -> int:
        ids = _NEXT_IDS.get()
        return ids[0] if ids is not None else random.getrandbits(128) or 1

    def generate_span_id(self) -> int:
        ids = _NEXT_IDS.get()
        return ids[1] if ids is not None else random.getrandbits(64) or 1


def _ns(seconds: float) -> int:
    return round(seconds * _NS)


class ProbeTraces:
    """Makes the spans of probes and canary checks on one tracer. `wall` is the
    clock of the canary's spans (Flux events carry durations, not times)."""

    def __init__(self, tracer: Tracer, wall: Callable[[], float]) -> None:
        self._tracer = tracer
        self._wall = wall
        # Per Flux instance: wall time at which its pending canary's publish began
        # and was acknowledged (the check's span starts there). Bounded by the
        # configured instances; a check's end pops it.
        self._published: dict[str, tuple[float, float]] = {}

    def on_probe_result(self, result: ProbeResult, attributes: Attributes) -> None:
        """The probe's span: `{operation} {model}`, kind CLIENT, from its start to its
        end, events at its stamps; status ERROR and `error.type` on failure."""
        start = _ns(result.started_at)
        name = f"{attributes['gen_ai.operation.name']} {attributes['gen_ai.request.model']}"
        span_attributes: dict[str, str | int | float] = dict(attributes)
        if result.http_status:
            span_attributes["http.response.status_code"] = result.http_status
        if result.success:
            if result.input_tokens is not None:
                span_attributes["gen_ai.usage.input_tokens"] = result.input_tokens
            if result.output_tokens is not None:
                span_attributes["gen_ai.usage.output_tokens"] = result.output_tokens
            if result.finish_reason is not None:
                span_attributes["gen_ai.response.finish_reasons"] = result.finish_reason
        if result.suspect:
            span_attributes["ttft.suspect"] = ",".join(result.suspect)
        ids = None
        if result.trace_id and result.span_id:
            ids = (result.trace_id, result.span_id)
        token = _NEXT_IDS.set(ids)
        try:
            span = self._tracer.start_span(
                name, kind=SpanKind.CLIENT, attributes=span_attributes, start_time=start
            )
        finally:
            _NEXT_IDS.reset(token)
        offset = 0.0
        for phase in PHASES:
            seconds = result.phases.get(phase)
            if seconds is None or not seconds > 0:
                continue
            # Phases follow one another: each event at the end of its phase.
            offset += seconds
            span.add_event(phase, {"ttft.phase.duration": seconds}, timestamp=start + _ns(offset))
        stamps = (
            ("first_byte", result.time_to_first_byte),
            ("first_chunk", result.time_to_first_chunk),
            ("first_token", result.time_to_first_token),
            ("first_output_token", result.time_to_first_output_token),
        )
        for event, seconds in stamps:
            if seconds is not None:
                span.add_event(event, timestamp=start + _ns(seconds))
        if not result.success:
            error = error_type(result.reason, result.http_status)
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=start + _ns(result.elapsed))

    def on_flux_event(self, event: FluxEvent) -> None:
        """A canary check's span: from its publish to the end of the check."""
        if isinstance(event, CanaryPublished):
            now = self._wall()
            self._published[event.instance] = (now - event.seconds, now)
        elif isinstance(event, CanaryChecked):
            self._canary_span(event)

    def _canary_span(self, event: CanaryChecked) -> None:
        end = self._wall()
        published = self._published.pop(event.instance, None)
        if published is not None:
            start = published[0]
        elif event.propagation is not None:
            start = end - event.propagation
        else:
            # Failed before its publish was acknowledged: the span marks the moment.
            start = end
        attributes: dict[str, str | float] = {"ttft.flux": event.instance}
        if event.propagation is not None:
            attributes["ttft.flux.canary.propagation"] = event.propagation
        span = self._tracer.start_span(
            "flux.canary", kind=SpanKind.CLIENT, attributes=attributes, start_time=_ns(start)
        )
        if published is not None:
            span.add_event("published", timestamp=_ns(published[1]))
        if event.propagation is not None:
            span.add_event("propagated", timestamp=_ns(start + event.propagation))
        if event.reason is not None:
            span.set_attribute("error.type", event.reason.value)
            span.set_status(Status(StatusCode.ERROR, event.reason.value))
        span.end(end_time=_ns(max(end, start)))
