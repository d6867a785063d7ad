"""The import diet of `ttft-exporter bench` (issue #14: the load tester's RSS): a real
run, in a process of its own, through the exporter's CLI dispatch, against the
simulator; afterwards the process must not hold the exporter's server, sinks, rules or
simulator, nor the heavy libraries only they (or the plots) need. Semantic: which
modules are loaded, not how many bytes they take."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Run `ttft-exporter bench ARGS...` as the console script would (ttft_exporter.cli), then
# print what the process imported on the last line.
_SCRIPT = """
import json, sys
from ttft_exporter.cli import run
code = run(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

# Never on the bench path: the exporter's own serving side and the libraries that only
# it, the rules generator, the simulator or the plots need. (`ttft_exporter.config` is
# on it: --config.file and the ad hoc flags are validated by the exporter's own loader.)
_FORBIDDEN = (
    "prometheus_client",
    "opentelemetry",
    "matplotlib",
    "re2",
    "jsonschema",
    "tokenizers",
    "aiohttp.web",
    "ttft_exporter.server",
    "ttft_exporter.executor",
    "ttft_exporter.selfmetrics",
    "ttft_exporter.sinks.prometheus",
    "ttft_exporter.rules",
    "ttft_exporter.sim",
    "ttft_exporter.demo",
    "ttft_exporter.bench.plots",
)

# A subprocess on a loaded 2-core machine: start-up plus a few requests take seconds;
# the bound only stops a hung run from hanging the suite.
_TIMEOUT = 120.0


def _bench(args: list[str]) -> tuple[int, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "bench", *args],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        check=False,
    )
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert last.startswith("{"), done.stderr[-2000:]
    report = json.loads(last)
    return report["code"], set(report["modules"])


def _loaded(modules: set[str], name: str) -> bool:
    return name in modules or any(m.startswith(f"{name}.") for m in modules)


def test_a_bench_run_imports_nothing_of_the_exporters_serving_side(
    sim_url: str, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    args = ["--url", sim_url, "--model", "m", "--concurrency", "2", "--requests", "3"]
    code, modules = _bench([*args, "--output-dir", str(out_dir), "--no-plots"])
    assert code == 0
    # It did run: the engine, the runner and the results writer were all used.
    doc = json.loads((out_dir / "results.json").read_text())
    assert len(doc["records"]) >= 3 and all(r["success"] for r in doc["records"])
    assert {"aiohttp", "ttft_exporter.probes.engine", "ttft_exporter.bench.runner"} <= modules
    assert sorted(n for n in _FORBIDDEN if _loaded(modules, n)) == []


def test_plots_are_imported_only_when_written(sim_url: str, tmp_path: Path) -> None:
    # The positive control of the check above: the one lazily imported module it names
    # that a run does need (for its plots) shows up once it is used.
    args = ["--url", sim_url, "--model", "m", "--concurrency", "1", "--requests", "1"]
    code, modules = _bench([*args, "--output-dir", str(tmp_path / "out")])
    assert code == 0
    assert _loaded(modules, "matplotlib") and "ttft_exporter.bench.plots" in modules
    assert not _loaded(modules, "prometheus_client")
