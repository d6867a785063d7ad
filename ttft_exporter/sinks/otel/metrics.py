"""Probe results and Flux events into OTel instruments, built from the catalogue: one
instrument per distinct `otel_name` of the families marked `otel`, with the family's
unit, kind and help; the attributes of a measurement are the target's semconv ones
(semconv.target_attributes) plus the family's labels under their OTel names and its
constants. The Prometheus family names below only say which figure of a result feeds
which family, as in sinks/prometheus/record.py: no instrument name is spelled here."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from ttft_exporter.catalogue import Kind, MetricSpec, spec_by_name
from ttft_exporter.errors import FailureReason
from ttft_exporter.flux.events import (
    CanaryChecked,
    CanaryPublished,
    ConnectionState,
    EventsProcessed,
    FluxEvent,
    FluxReport,
    FluxRestarted,
    FrameReceived,
    Malformed,
    ReadChecked,
    Reconnected,
)
from ttft_exporter.probes.base import GapHistogram, ProbeResult
from ttft_exporter.sinks.otel.providers import otel_specs
from ttft_exporter.sinks.otel.semconv import error_type

__all__ = ["OTelMetrics", "replay_gaps"]

Attributes = Mapping[str, str | int]


def replay_gaps(gaps: GapHistogram) -> list[float]:
    """Values that reproduce a probe's gap histogram exactly in any histogram whose
    boundaries are a subset of the probe's (every bucket of the probe lands whole in
    one of theirs): per bucket, its count of values summing to the bucket's sum, the
    probe's min and max among them. So count, sum, every bucket count, min and max
    equal what one record per gap would have given, while the probe keeps fixed
    memory; at most `count` values here (bounded by the stream's chunks)."""
    bounds = gaps.bounds
    low, high = bisect_left(bounds, gaps.min), bisect_left(bounds, gaps.max)
    values: list[float] = []
    for index, (count, total) in enumerate(zip(gaps.counts, gaps.sums, strict=True)):
        if count == 0:
            continue
        fixed = [gaps.min] if index == low else []
        if index == high and count > len(fixed):
            fixed.append(gaps.max)
        rest = count - len(fixed)
        if rest:
            # The other gaps of the bucket sum to this, so their mean is inside it;
            # clamped so float rounding cannot carry it over a boundary.
            mean = (total - sum(fixed)) / rest
            if index < len(bounds):
                mean = min(mean, bounds[index])
            if index > 0:
                mean = max(mean, math.nextafter(bounds[index - 1], math.inf))
            values.extend([mean] * rest)
        values.extend(fixed)
    return values


class OTelMetrics:
    """The instruments of one meter, fed from results and events. Recording is a
    dictionary lookup and an SDK call that aggregates in memory: no I/O."""

    def __init__(self, meter: Meter) -> None:
        self._instruments: dict[str, Any] = {}
        # Counters are plain sums kept here, by instrument and attribute set, that the
        # SDK reads at export (observable counters, in the reader's thread): adding 1 on
        # the Flux frame hot path is a dict update (about 1 us), not an SDK call (about
        # 10 us). Bounded: the attribute sets are closed enums per target or instance.
        self._sums: dict[str, dict[tuple[tuple[str, str | int], ...], float]] = {}
        for spec in otel_specs():
            if spec.otel_name in self._instruments or spec.otel_name in self._sums:
                continue
            if spec.otel_kind is Kind.COUNTER:
                sums = self._sums[spec.otel_name] = {}
                meter.create_observable_counter(
                    spec.otel_name,
                    callbacks=[_reader(sums)],
                    unit=spec.unit,
                    description=spec.otel_help or spec.help,
                )
            else:
                self._instruments[spec.otel_name] = _instrument(meter, spec)

    def _record(
        self, name: str, value: float, base: Attributes, child: tuple[str, ...] = ()
    ) -> None:
        spec = spec_by_name(name)
        if not spec.otel:
            return
        attributes: dict[str, str | int] = dict(base)
        for (_, attribute), label_value in zip(spec.otel_attributes, child, strict=True):
            attributes[attribute] = label_value
        attributes.update(spec.otel_constants)
        if spec.otel_kind is Kind.COUNTER:
            sums = self._sums[spec.otel_name]
            key = tuple(attributes.items())
            sums[key] = sums.get(key, 0) + value
            return
        instrument = self._instruments[spec.otel_name]
        if spec.otel_kind is Kind.HISTOGRAM:
            instrument.record(value, attributes)
        else:
            instrument.set(value, attributes)

    # --- probes --------------------------------------------------------------------

    def on_probe_result(
        self, result: ProbeResult, attributes: Attributes, *, drop_suspect: bool
    ) -> None:
        """One probe's figures, as the Prometheus sink records them (record.py), but
        for the semconv's operation duration: every operation, failures included
        with `error.type` and the time until they failed. `drop_suspect`: a suspect
        probe's timings stay out, as `on_suspect: drop` keeps them out of /metrics."""
        timings = not (drop_suspect and result.suspect)
        self._record(
            "ttft_probe_requests_total",
            1,
            attributes,
            ("success" if result.success else "failure",),
        )
        for cause in result.suspect:
            self._record("ttft_probe_suspect_total", 1, attributes, (cause,))
        if result.finish_reason is not None:
            self._record("ttft_probe_finish_reasons_total", 1, attributes, (result.finish_reason,))
        if result.idle_before is not None:  # a cold probe (scenario "cold")
            self._record("ttft_probe_idle_before_seconds", result.idle_before, attributes)
        if timings:
            for phase, seconds in result.phases.items():
                if math.isfinite(seconds):
                    self._record("ttft_probe_phase_duration_seconds", seconds, attributes, (phase,))
        if not result.success:
            reason = result.reason or FailureReason.INTERNAL
            self._record("ttft_probe_failures_total", 1, attributes, (reason.value,))
            if timings:
                failed = {**attributes, "error.type": error_type(reason, result.http_status)}
                self._record("ttft_probe_duration_seconds", result.elapsed, failed)
            return
        if result.burst:
            self._record("ttft_probe_burst_streams_total", 1, attributes)
        if result.usage_rejected is not None:
            self._record("ttft_probe_usage_rejected_total", 1, attributes)
        if result.usage_source is not None:
            tokens = result.output_tokens or 0
            self._record(
                "ttft_probe_output_tokens_total", tokens, attributes, (result.usage_source,)
            )
        if result.input_tokens is not None:
            self._record("ttft_probe_input_tokens_total", result.input_tokens, attributes)
        if timings:
            self._timings(result, attributes)

    def _timings(self, result: ProbeResult, attributes: Attributes) -> None:
        figures = (
            ("ttft_probe_time_to_first_byte_seconds", result.time_to_first_byte),
            ("ttft_probe_time_to_first_chunk_seconds", result.time_to_first_chunk),
            ("ttft_probe_time_to_first_token_seconds", result.time_to_first_token),
            (
                "ttft_probe_time_to_first_output_token_seconds",
                result.time_to_first_output_token,
            ),
            ("ttft_probe_duration_seconds", result.duration),
            ("ttft_probe_time_per_output_token_seconds", result.time_per_output_token),
        )
        for name, value in figures:
            if value is not None:
                self._record(name, value, attributes)
        gaps = result.inter_chunk_gaps
        if gaps is not None and gaps.count:
            for gap in replay_gaps(gaps):
                self._record("ttft_probe_inter_chunk_latency_seconds", gap, attributes)
        decode = result.decode_seconds
        if (result.decode_tokens or 0) >= 1 and decode is not None:
            self._record("ttft_probe_decode_tokens_total", result.decode_tokens or 0, attributes)
            self._record("ttft_probe_generation_seconds_total", decode, attributes)

    # --- Flux ----------------------------------------------------------------------

    def on_flux_event(self, event: FluxEvent) -> None:
        """One Flux event into the Flux instruments (attribute `ttft.flux`)."""
        base = {"ttft.flux": event.instance}
        match event:
            case ConnectionState(connected=connected, stale=stale):
                self._record("ttft_flux_up", float(connected and not stale), base)
                self._record("ttft_flux_connected", float(connected), base)
                self._record("ttft_flux_stale", float(stale), base)
            case Reconnected(reason=reason):
                self._record("ttft_flux_reconnects_total", 1, base, (reason.value,))
            case FrameReceived(kind=kind, group=group, lag=lag):
                if kind == "malformed":
                    self._record("ttft_flux_malformed_messages_total", 1, base)
                    return
                self._record("ttft_flux_messages_total", 1, base, (kind,))
                if kind == "entity_deleted":
                    self._record("ttft_flux_entities_deleted_total", 1, base)
                if group is not None:
                    self._record("ttft_flux_state_updates_total", 1, base, (group,))
                if lag is not None:
                    self._record("ttft_flux_state_update_lag_seconds", lag, base)
            case Malformed():
                self._record("ttft_flux_malformed_messages_total", 1, base)
            case EventsProcessed(count=count):
                self._record("ttft_flux_events_processed_total", count, base)
            case FluxRestarted():
                self._record("ttft_flux_restarts_total", 1, base)
            case FluxReport():
                self._report(event, base)
            case CanaryChecked(propagation=propagation, reason=reason):
                outcome = "success" if reason is None else "failure"
                self._record("ttft_flux_canary_checks_total", 1, base, (outcome,))
                if reason is not None:
                    self._record("ttft_flux_canary_failures_total", 1, base, (reason.value,))
                if propagation is not None:
                    self._record("ttft_flux_canary_propagation_seconds", propagation, base)
            case CanaryPublished(seconds=seconds):
                self._record("ttft_flux_canary_publish_seconds", seconds, base)
            case ReadChecked(seconds=seconds):
                if seconds is None:
                    self._record("ttft_flux_query_failures_total", 1, base)
                else:
                    self._record("ttft_flux_query_seconds", seconds, base)
            case _:
                # FluxStarted/FluxStopped: OTel points need no series laid out.
                return

    def _report(self, event: FluxReport, base: Attributes) -> None:
        figures = (
            ("ttft_flux_reported_events_per_second", event.rate_per_second),
            ("ttft_flux_entities", event.entities),
            ("ttft_flux_websocket_connections", event.websocket_connections),
            ("ttft_flux_publishers_active", event.publishers_active),
        )
        for name, value in figures:
            if value is not None:
                self._record(name, float(value), base)


def _reader(
    sums: dict[tuple[tuple[str, str | int], ...], float],
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """The callback of an observable counter: its sums as they are now."""

    def read(_options: CallbackOptions) -> Iterable[Observation]:
        # A copy in one C call (the GIL held): the loop may add a key meanwhile.
        return [Observation(value, dict(key)) for key, value in sums.copy().items()]

    return read


def _instrument(meter: Meter, spec: MetricSpec) -> Any:
    """The synchronous instrument of a histogram or gauge family."""
    description = spec.otel_help or spec.help
    if spec.otel_kind is Kind.HISTOGRAM:
        return meter.create_histogram(spec.otel_name, unit=spec.unit, description=description)
    return meter.create_gauge(spec.otel_name, unit=spec.unit, description=description)
