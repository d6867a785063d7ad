"""The shape of the package (issue 11 §1), read from the import statements of every
module: the catalogue is a leaf, only sinks speak prometheus_client or OpenTelemetry,
and probes and Flux know no sink."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ttft_exporter"

# Modules (dotted, or a package prefix ending in ".") allowed to import a metrics
# library, with why. Add the OTel sink here when it lands, nothing else.
METRIC_LIBRARIES: dict[str, dict[str, str]] = {
    "prometheus_client": {
        "ttft_exporter.sinks.prometheus.": "the Prometheus sink",
        # The exporter's own metrics (loop lag, HTTP server, reloads, process) are
        # prometheus_client objects that the modules measuring them update.
        "ttft_exporter.selfmetrics": "the exporter's self-metrics",
    },
    "opentelemetry": {
        "ttft_exporter.sinks.otel": "the OpenTelemetry sink (issue 11 §2-5)",
        "ttft_exporter.sinks.otel.": "the OpenTelemetry sink (issue 11 §2-5)",
    },
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (functions and TYPE_CHECKING
    blocks included), relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            found.add(base)
            # `from ttft_exporter import catalogue` imports a module too.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _allowed(module: str, allowed: dict[str, str]) -> bool:
    return any(
        module.startswith(prefix) if prefix.endswith(".") else module == prefix
        for prefix in allowed
    )


def test_the_walk_sees_the_package() -> None:
    # Guards the tests below against passing on an empty or misplaced tree.
    assert "ttft_exporter.catalogue" in MODULES
    assert "ttft_exporter.sinks.prometheus.series" in MODULES
    assert "prometheus_client" in _imports(MODULES["ttft_exporter.sinks.prometheus.flux"])
    assert len(MODULES) > 50


@pytest.mark.parametrize("library", sorted(METRIC_LIBRARIES))
def test_only_sinks_import_metric_libraries(library: str) -> None:
    offenders = sorted(
        module
        for module, path in MODULES.items()
        if any(name == library or name.startswith(f"{library}.") for name in _imports(path))
        and not _allowed(module, METRIC_LIBRARIES[library])
    )
    assert offenders == [], f"{library} imported outside the sinks: {offenders}"


def test_catalogue_is_a_leaf() -> None:
    """The catalogue imports the standard library and the reason enums, nothing else:
    no probe, Flux or sink type, so every sink (and the rules generator) can read it."""
    ours = {
        name
        for name in _imports(MODULES["ttft_exporter.catalogue"])
        if name.split(".")[0] not in sys.stdlib_module_names and name != "__future__"
    }
    assert ours <= {"ttft_exporter.errors"} | {
        f"ttft_exporter.errors.{n}"
        for n in (
            "AdhocRejectReason",
            "FailureReason",
            "FluxCanaryReason",
            "FluxReconnectReason",
            "HTTPDropReason",
        )
    }, ours


@pytest.mark.parametrize("package", ["ttft_exporter.probes", "ttft_exporter.flux"])
def test_probes_and_flux_know_no_sink(package: str) -> None:
    offenders = {
        module: sorted(n for n in _imports(path) if n.startswith("ttft_exporter.sinks"))
        for module, path in MODULES.items()
        if module == package or module.startswith(f"{package}.")
    }
    assert {m: names for m, names in offenders.items() if names} == {}


def test_flux_events_module_is_plain_data() -> None:
    """The events Flux emits depend on the reason enums only."""
    ours = {
        name
        for name in _imports(MODULES["ttft_exporter.flux.events"])
        if name.startswith("ttft_exporter")
    }
    assert {n.rpartition(".")[0] if n.count(".") > 1 else n for n in ours} == {
        "ttft_exporter.errors"
    }
