"""Every committed dashboard validates against the JSON Schema generated from
Grafana's own @grafana/schema types (.ci/grafana-schema, run by .ci/run). Outside CI
the test skips when the schema was not generated; in CI (CI=true) it fails instead."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dashboards.generate import DASHBOARDS
from dashboards.generate.__main__ import OUT

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(
    os.environ.get("TTFT_DASHBOARD_SCHEMA", ROOT / "build" / "grafana" / "dashboard.schema.json")
)

pytestmark = pytest.mark.tools


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    if not SCHEMA.exists():
        message = f"{SCHEMA} is missing: run .ci/grafana-schema (needs npm), as .ci/run does"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    schema: dict[str, Any] = json.loads(SCHEMA.read_text(encoding="utf-8"))
    # Grafana's type, not an empty or truncated file.
    assert "Panel" in schema["definitions"] and "gridPos" in json.dumps(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(validator: jsonschema.Draft7Validator, data: Any) -> list[str]:
    return sorted(
        f"$.{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)
    )


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_the_dashboard_matches_grafanas_schema(
    validator: jsonschema.Draft7Validator, name: str
) -> None:
    data = json.loads((OUT / name).read_text(encoding="utf-8"))
    assert _errors(validator, data) == []


def test_the_schema_rejects_what_grafana_would(validator: jsonschema.Draft7Validator) -> None:
    # The check is not vacuous: the faults tooling.md lists, and an export's __inputs.
    data = json.loads((OUT / "ttft-fleet.json").read_text(encoding="utf-8"))
    data["graphTooltip"] = 7
    data["panels"][1]["gridPos"]["h"] = "big"
    data["__inputs"] = []
    errors = "\n".join(_errors(validator, data))
    assert "$.graphTooltip: 7 is not one of" in errors
    # A panel is a Panel or a RowPanel: the error names the panel, "any of" them.
    assert "$.panels.1: " in errors
    assert "'__inputs' was unexpected" in errors
