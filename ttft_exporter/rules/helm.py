"""The rules as Helm values for the chart's PrometheusRule (deploy/helm/ttft-exporter).

Rules name the configured targets and SLOs, so a PrometheusRule is only right for the
config it was generated from. `ttft-exporter rules --format=helm-values` reads the
`config:` of the user's Helm values files (merged the way Helm merges them) and prints

    prometheusRule:
      configChecksum: <sha256 of the config as Helm's `toJson` prints it>
      groups: [...]

and the chart refuses to render when `sha256sum (toJson .Values.config)` differs, so a
config edit without regenerated rules fails at `helm install`, not at 3 a.m. For that
the checksum must be computed over exactly the bytes Helm's `toJson` (Go's
`encoding/json`) produces for the same values: `go_json` reproduces that encoding for
the JSON subset YAML values hold. tests/unit/deploy/test_helm.py checks it against the
real Helm code.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from ttft_exporter.errors import ConfigError, ConfigProblem
from ttft_exporter.validation import read_bounded
from ttft_exporter.yamlsafe import YAMLLimitError, load_yaml

__all__ = [
    "config_checksum",
    "go_json",
    "helm_merge",
    "load_values_file",
    "render_helm_values",
]

VALUES_FILE_LIMIT = 4 * 1024 * 1024

# Go's encoding/json escapes these in strings (HTML safety, JavaScript line separators);
# Python's json module does not.
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _go_string(value: str) -> str:
    text = json.dumps(value, ensure_ascii=False)
    for raw, escaped in _GO_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


def _go_float(value: float) -> str:
    """strconv.AppendFloat(f, 'f' or 'e', -1, 64) as encoding/json picks it."""
    if not math.isfinite(value):
        raise ValueError(f"{value} has no JSON form")
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude < 1e-6 or magnitude >= 1e21:
        text = repr(value)  # shortest round-trip digits, as Go's -1 precision
        mantissa, _, exponent = text.partition("e")
        sign = exponent[0] if exponent[0] in "+-" else "+"
        digits = exponent.lstrip("+-").lstrip("0") or "0"
        # Go writes at least two exponent digits, then json trims `e-07` to `e-7`.
        if sign == "+" and len(digits) < 2:
            digits = digits.rjust(2, "0")
        return f"{mantissa}e{sign}{digits}"
    return format(Decimal(repr(value)).normalize(), "f")


def go_json(value: Any) -> str:
    """`value` encoded as Go's json.Marshal encodes the same Helm values: map keys
    sorted, no spaces, every number a float64."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return _go_float(float(value)) if abs(value) >= 1 << 53 else str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, Mapping):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(f"{_go_string(k)}:{go_json(v)}" for k, v in items) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(go_json(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} is not a Helm value")


def config_checksum(config: Any) -> str:
    """What the chart computes as `toJson .Values.config | sha256sum`."""
    return hashlib.sha256(go_json(config).encode("utf-8")).hexdigest()


def load_values_file(path: Path) -> dict[str, Any]:
    """A Helm values file: a YAML mapping (an empty file is `{}`). Raises ConfigError."""
    try:
        data = load_yaml(read_bounded(path, VALUES_FILE_LIMIT))
    except (OSError, ValueError, YAMLLimitError, yaml.YAMLError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigError(str(path), [ConfigProblem("", f"cannot read values: {detail}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), [ConfigProblem("", "a Helm values file is a mapping")])
    return data


def helm_merge(base: Any, override: Any) -> Any:
    """How `helm -f a.yaml -f b.yaml` merges values files (Helm's mergeMaps): maps merge
    key by key, anything else (a null too) replaces. The chart's default `config` is
    `{}`, so coalescing with the chart's defaults changes nothing inside `config` (a
    null only deletes a key the defaults have)."""
    if not isinstance(base, Mapping) or not isinstance(override, Mapping):
        return override
    merged = dict(base)
    for key, value in override.items():
        merged[key] = helm_merge(merged.get(key), value)
    return merged


def render_helm_values(rules_text: str, config: Any) -> str:
    """The rule file `rules_text` (render_combined's output: comment lines, then
    `groups:`) as chart values, with the checksum of the `config` values it was made
    from."""
    lines = rules_text.splitlines()
    start = lines.index("groups:")
    out = [*lines[:start], "prometheusRule:", f"  configChecksum: {config_checksum(config)}"]
    out.append("  groups:")
    out += [f"  {line}" if line else "" for line in lines[start + 1 :]]
    return "\n".join(out) + "\n"
