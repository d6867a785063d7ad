"""The bench Job (deploy/bench/) validates offline against the Kubernetes API schemas
(kubernetes-validate, strict: unknown fields are errors) and runs indexed workers with
disjoint seeds. (The chart and the kustomize base: test_helm.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = sorted((ROOT / "deploy" / "bench").glob("*.yaml"))
# A version kubernetes-validate ships schemas for; Indexed Jobs are GA since 1.24.
K8S_VERSION = "1.30.0"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifests_validate_strictly(path: Path) -> None:
    for doc in _documents(path):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_wrong_field_is_caught() -> None:
    # The check itself: a misspelt field fails.
    job = next(d for d in _documents(ROOT / "deploy/bench/job.yaml") if d["kind"] == "Job")
    job["spec"]["completionMod"] = job["spec"].pop("completionMode")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_bench_job_is_indexed_and_seeds_workers_apart() -> None:
    job = next(d for d in _documents(ROOT / "deploy/bench/job.yaml") if d["kind"] == "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"]
    (container,) = spec["template"]["spec"]["containers"]
    command = " ".join(container["args"])
    assert "ttft-exporter bench" in command and "--seed" in command
    # Each worker writes its own folder; the index reaches bench through the env.
    assert "worker-$JOB_COMPLETION_INDEX" in command
