"""The results file of a load test: versioned JSON with every request's record and
each step's summary, and a CSV of the records. `SCHEMA_VERSION` changes whenever a
reader of an older file would misread a newer one; `results_schema()` is its JSON
Schema (`ttft-exporter bench schema`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ttft_exporter.bench.records import FIELDS, ITL_BOUNDS, RequestRecord
from ttft_exporter.bench.selfwatch import SelfWatchStats
from ttft_exporter.bench.stats import StepStats

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "BenchResults",
    "RunInfo",
    "StepResult",
    "SweepResult",
    "read_results",
    "records_csv",
    "results_schema",
    "write_results",
]

SCHEMA: Literal["ttft-exporter-bench"] = "ttft-exporter-bench"
SCHEMA_VERSION: Literal[1] = 1
# A results file is read whole (compare, merge): bound it.
MAX_RESULTS_BYTES = 512 << 20


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunInfo(_Model):
    """What was run, against what."""

    tool: str
    target: str
    protocol: str
    model: str
    url: str
    profile: Literal["concurrency", "rate", "sweep"]
    slo: dict[str, float]
    min_goodput: float
    seed: int | None
    workers: int = Field(ge=1, description="Bench workers whose records this file holds.")
    prompt_counting: str = Field(description="tokenizer, approximate (no tokenizer given)")
    fixed_output_tokens: int | None
    reuse_connections: bool
    # Added within version 1: files written before it ran on asyncio's loop.
    event_loop: Literal["asyncio", "uvloop"] = Field(
        "asyncio", description="The client's event loop: asyncio's own or uvloop."
    )
    started_at: float


class StepResult(_Model):
    """One step: its load, what it measured and how the client fared."""

    index: int
    kind: Literal["concurrency", "rate"]
    load: float
    stats: StepStats
    self_watch: SelfWatchStats
    slo_met: bool | None = Field(description="goodput >= min_goodput; None without SLOs.")


class SweepResult(_Model):
    """`--profile sweep`: the highest load at which the SLOs held."""

    max_load: float | None
    stopped_by: Literal["slo", "client", "end"]


class BenchResults(_Model):
    """A results file."""

    schema_name: Literal["ttft-exporter-bench"] = Field(SCHEMA, alias="schema")
    version: Literal[1] = SCHEMA_VERSION
    run: RunInfo
    itl_bounds: list[float] = Field(
        default_factory=lambda: list(ITL_BOUNDS),
        description="Upper bounds (seconds) of the ITL buckets the records count into.",
    )
    steps: list[StepResult]
    sweep: SweepResult | None
    records: list[RequestRecord]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def results_schema() -> dict[str, Any]:
    """The JSON Schema of a results file."""
    return BenchResults.model_json_schema(by_alias=True)


def write_results(results: BenchResults, path: Path) -> None:
    """Write the JSON file."""
    path.write_text(results.model_dump_json(by_alias=True, indent=1) + "\n")


def read_results(path: Path) -> BenchResults:
    """Read a results file; ValueError naming the file and what is wrong with it."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_RESULTS_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_RESULTS_BYTES:
        raise ValueError(f"{path}: above {MAX_RESULTS_BYTES >> 20} MiB")
    try:
        results = BenchResults.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(
            f"{path}: not a ttft-exporter bench results file (schema version "
            f"{SCHEMA_VERSION}): {where}: {first['msg']}"
        ) from None
    if results.itl_bounds != list(ITL_BOUNDS):
        raise ValueError(f"{path}: ITL buckets differ from this version's")
    return results


_CSV_FIELDS = [name for name in FIELDS if name not in ("itl", "suspect")] + [
    "itl_count",
    "suspect",
]


def records_csv(results: BenchResults) -> str:
    """One CSV row per request (durations in seconds; ITL as the gap count only)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for record in results.records:
        row: dict[str, Any] = record.model_dump(exclude={"itl", "suspect"})
        row["itl_count"] = sum(n for _, n in record.itl)
        row["suspect"] = ";".join(record.suspect)
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()
