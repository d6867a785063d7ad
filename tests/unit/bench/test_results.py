"""The results file: versioned JSON that validates against its own JSON Schema, reads
back equal, refuses other files with a message naming them; and the CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import jsonschema
import pytest

from tests.unit.bench.factory import make_record, results_of, spread_records
from ttft_exporter.bench.results import (
    SCHEMA_VERSION,
    read_results,
    records_csv,
    results_schema,
    write_results,
)


def test_written_results_validate_against_the_schema_and_read_back(tmp_path: Path) -> None:
    records = [*spread_records(0, 5), make_record(success=False, reason="connect", elapsed=0.01)]
    results = results_of(records, [2], slo={"ttft": 0.5})
    path = tmp_path / "results.json"
    write_results(results, path)
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, results_schema())
    assert doc["schema"] == "ttft-exporter-bench" and doc["version"] == SCHEMA_VERSION
    assert len(doc["records"]) == 6
    assert read_results(path) == results


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "version"),
        ({"schema": "guidellm"}, "schema"),
        ({"surprise": 1}, "surprise"),
    ],
    ids=["newer-version", "other-tool", "unknown-key"],
)
def test_other_files_are_refused_by_schema_and_reader(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    results = results_of(spread_records(0, 2), [1])
    doc = json.loads(results.model_dump_json(by_alias=True))
    doc.update(change)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, results_schema())
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="not a ttft-exporter bench results file") as info:
        read_results(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_csv_has_one_row_per_request() -> None:
    records = [make_record(itl=[(3, 4), (5, 6)], suspect=["loop_lag"]), make_record(ttft=0.25)]
    rows = list(csv.DictReader(io.StringIO(records_csv(results_of(records, [1])))))
    assert len(rows) == 2
    assert rows[0]["itl_count"] == "10" and rows[0]["suspect"] == "loop_lag"
    assert rows[1]["ttft"] == "0.25" and rows[1]["connect"] == ""
