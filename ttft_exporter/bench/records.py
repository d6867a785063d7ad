"""The per-request record of a load test: what one probe measured, flattened for the
results file. Inter-token gaps are kept as sparse counts over fixed log-spaced
buckets (about 10 % wide), so pooled ITL percentiles can be merged exactly across
workers without keeping every gap."""

from __future__ import annotations

import dataclasses
import marshal
import math
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Self, overload

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from ttft_exporter.probes import ProbeResult

__all__ = ["FIELDS", "ITL_BOUNDS", "RecordStore", "RequestRecord", "record_from_result"]

# 100 us to about 62 s, each bound 1.1 x the previous one: a pooled ITL percentile is
# placed within 10 % (interpolated inside its bucket).
ITL_BOUNDS: tuple[float, ...] = tuple(round(1e-4 * 1.1**k, 9) for k in range(141))


# A slotted (pydantic) dataclass, not a BaseModel: a run holds one per request, and a
# model's per-instance __dict__ and fields-set cost about 4x the memory (issue #14:
# 3.0 kB against 0.7 kB a record). Validation, the JSON Schema and the JSON file are
# the same.
@dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class RequestRecord:
    """One request. Durations in seconds (monotonic clock); None where not measured.
    `start` is the wall-clock time (Unix seconds) the request started: it orders
    records across workers (`bench merge`), never measures a duration."""

    step: Annotated[int, Field(ge=0)]
    worker: Annotated[int, Field(ge=0, description="Which worker (bench job index) ran it.")]
    warmup: bool
    start: float
    success: bool
    reason: Annotated[
        str | None, Field(description="Failure reason (the exporter's bounded enum).")
    ]
    ttft: float | None
    ttfot: Annotated[
        float | None, Field(description="Time to the first answer (non-reasoning) token.")
    ]
    ttfb: float | None
    tpot: float | None
    e2e: Annotated[float | None, Field(description="Request start to the last token.")]
    elapsed: float
    connect: Annotated[
        float | None,
        Field(description="DNS + connect + TLS of a new connection; None on a reused one."),
    ]
    schedule_lag: Annotated[
        float | None,
        Field(description="Rate steps: how late the request started after its Poisson arrival."),
    ]
    output_tokens: int | None
    input_tokens: Annotated[int | None, Field(description="Prompt tokens the server reported.")]
    prompt_tokens: Annotated[int, Field(description="Prompt tokens the generator counted.")]
    usage_source: str | None
    itl: list[tuple[int, int]] = Field(
        default_factory=list, description="Inter-token gaps: [bucket index, count] pairs."
    )
    suspect: list[str] = Field(
        default_factory=list, description="Why the client itself may have delayed the figures."
    )

    def model_copy(self, *, update: dict[str, Any]) -> Self:
        """A copy with some fields changed (the BaseModel spelling, not validated)."""
        return dataclasses.replace(self, **update)

    def model_dump(self, *, exclude: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
        """The fields as a dict (the BaseModel spelling)."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in exclude
        }


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RequestRecord))
"""The record's field names, in file order."""


class RecordStore(Sequence[RequestRecord]):
    """The records of a run, held packed: one `marshal` string of the field values per
    request (about 170 bytes against about 700 for a record object with its floats,
    ITL list and tuples; issue #14, the one thing of a load test that grows with its
    length). Reading one back gives an equal record: marshal keeps floats bit for bit,
    ints, None, strings and the ITL pairs as they were. Process-local only: never
    written anywhere (marshal's format is the running Python's)."""

    __slots__ = ("_packed",)

    def __init__(self) -> None:
        self._packed: list[bytes] = []

    def append(self, record: RequestRecord) -> None:
        """Keep one record (already validated when it was made)."""
        self._packed.append(marshal.dumps(tuple(getattr(record, name) for name in FIELDS)))

    def __len__(self) -> int:
        return len(self._packed)

    @overload
    def __getitem__(self, index: int) -> RequestRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[RequestRecord]: ...

    def __getitem__(self, index: int | slice) -> RequestRecord | list[RequestRecord]:
        if isinstance(index, slice):
            return [_unpack(packed) for packed in self._packed[index]]
        return _unpack(self._packed[index])

    def __iter__(self) -> Iterator[RequestRecord]:
        for packed in self._packed:
            yield _unpack(packed)


def _unpack(packed: bytes) -> RequestRecord:
    # The values were validated when the record was made: set them back without
    # validating again (a run's end reads every record several times).
    record = object.__new__(RequestRecord)

    for name, value in zip(FIELDS, marshal.loads(packed), strict=True):  # noqa: S302
        object.__setattr__(record, name, value)
    return record


def _connect(result: ProbeResult) -> float | None:
    """The opening of a new connection; None on a reused one (every phase 0) or
    when it was not measured (NaN: the connect failed)."""
    spans = [result.phases.get(name, math.nan) for name in ("dns", "connect", "tls")]
    if any(math.isnan(span) for span in spans):
        return None
    total = sum(spans)
    return total if total > 0 else None


def record_from_result(
    result: ProbeResult,
    *,
    step: int,
    worker: int,
    warmup: bool,
    prompt_tokens: int,
    schedule_lag: float | None = None,
) -> RequestRecord:
    """The record of one probe result (its gaps counted over ITL_BOUNDS)."""
    gaps = result.inter_chunk_gaps
    itl = [(i, n) for i, n in enumerate(gaps.counts) if n] if gaps is not None else []
    return RequestRecord(
        step=step,
        worker=worker,
        warmup=warmup,
        start=result.started_at,
        success=result.success,
        reason=result.reason.value if result.reason is not None else None,
        ttft=result.time_to_first_token,
        ttfot=result.time_to_first_output_token,
        ttfb=result.time_to_first_byte,
        tpot=result.time_per_output_token,
        e2e=result.duration,
        elapsed=result.elapsed,
        connect=_connect(result),
        schedule_lag=schedule_lag,
        output_tokens=result.output_tokens,
        input_tokens=result.input_tokens,
        prompt_tokens=prompt_tokens,
        usage_source=result.usage_source,
        itl=itl,
        suspect=list(result.suspect),
    )
