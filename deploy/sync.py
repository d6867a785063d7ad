"""Regenerate the files of deploy/ that are derived from the rest of the repository:

- deploy/helm/ttft-exporter/values.schema.json: the chart's values schema, its `config`
  being the exporter's own config JSON Schema (`ttft-exporter config-schema`);
- deploy/helm/ttft-exporter/files/default-rules.yaml: `ttft-exporter rules
  --format=helm-values` for the chart's default values;
- deploy/helm/ttft-exporter/dashboards/*.json: copies of dashboards/*.json (Helm can
  only read files inside the chart);
- deploy/kubernetes/: a kustomize base rendered from the chart's defaults, for users
  without Helm.

    python deploy/sync.py          # write them
    python deploy/sync.py --check  # exit 1 listing what is out of date (tests run this)

Needs the dev dependencies (helm-python-sdk renders the chart with Helm's own code).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "ttft-exporter"
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
RELEASE = "ttft-exporter"
KUSTOMIZE_NAMESPACE = "monitoring"

__all__ = ["generated_files", "main", "render_chart", "values_schema"]


def _chart_values_schema(config_schema: dict[str, Any]) -> dict[str, Any]:
    """The values schema: the chart's own keys, typed; `config` is the exporter's
    config schema (its `$defs` hoisted to the root so its `$ref`s resolve)."""
    defs = config_schema.pop("$defs", {})
    string: dict[str, Any] = {"type": "string"}
    boolean: dict[str, Any] = {"type": "boolean"}
    obj: dict[str, Any] = {"type": "object"}
    array: dict[str, Any] = {"type": "array"}
    labels: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
    duration: dict[str, Any] = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"}

    def monitor() -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": boolean,
                "additionalLabels": labels,
                "selector": labels,
                "interval": duration,
                "scrapeTimeout": duration,
                "endpointConfig": obj,
                "metricRelabelings": array,
            },
        }

    service_monitor = monitor()
    del service_monitor["properties"]["selector"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ttft-exporter chart values",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "global": obj,
            "mode": {"enum": ["deployment", "sidecar"]},
            "nameOverride": string,
            "fullnameOverride": string,
            "image": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "registry": string,
                    "repository": {"type": "string", "minLength": 1},
                    "tag": string,
                    "digest": {"type": "string", "pattern": "^(|sha256:[0-9a-f]{64})$"},
                    "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                },
            },
            "imagePullSecrets": array,
            "config": config_schema,
            "existingConfigMap": string,
            "secretEnv": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["secretName", "key"],
                    "properties": {
                        "secretName": {"type": "string", "minLength": 1},
                        "key": {"type": "string", "minLength": 1},
                    },
                },
            },
            "secretMounts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "secretName", "mountPath"],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                        "secretName": {"type": "string", "minLength": 1},
                        "mountPath": {"type": "string", "pattern": "^/"},
                    },
                },
            },
            "webConfig": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"existingSecret": string},
            },
            "extraArgs": {"type": "array", "items": string},
            "extraEnv": array,
            "extraVolumes": array,
            "extraVolumeMounts": array,
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "shards": {"type": "integer", "minimum": 1, "maximum": 10000},
            "replicas": {"type": "integer", "minimum": 0},
            "resources": obj,
            "podSecurityContext": obj,
            "securityContext": obj,
            "livenessProbe": obj,
            "readinessProbe": obj,
            "podAnnotations": labels,
            "podLabels": labels,
            "nodeSelector": labels,
            "tolerations": array,
            "affinity": obj,
            "priorityClassName": string,
            "terminationGracePeriodSeconds": {"type": "integer", "minimum": 0},
            "serviceAccount": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"create": boolean, "name": string, "annotations": labels},
            },
            "automountServiceAccountToken": boolean,
            "service": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                    "annotations": labels,
                    "labels": labels,
                },
            },
            "serviceMonitor": service_monitor,
            "podMonitor": monitor(),
            "prometheusRule": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "enabled": boolean,
                    "additionalLabels": labels,
                    "groups": array,
                    "configChecksum": {"type": "string", "pattern": "^(|[0-9a-f]{64})$"},
                },
            },
            "dashboards": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "enabled": boolean,
                    "label": {"type": "string", "minLength": 1},
                    "labelValue": string,
                    "annotations": labels,
                    "namespace": string,
                },
            },
            "sidecar": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"native": boolean},
            },
        },
        "$defs": defs,
    }


def values_schema() -> str:
    from ttft_exporter.config import Config

    schema = Config.model_json_schema(mode="validation")
    return json.dumps(_chart_values_schema(schema), indent=2, sort_keys=True) + "\n"


def default_rules() -> str:
    from ttft_exporter.config import parse_config
    from ttft_exporter.rules import render_combined
    from ttft_exporter.rules.helm import render_helm_values

    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    config_data = values.get("config") or {}
    config = parse_config(config_data, source="values.yaml", resolve_secrets=False)
    command = "python deploy/sync.py (the chart's default config)"
    text = render_combined(config, source="values.yaml", command=command)
    return render_helm_values(text, config_data)


RULES_MARKER = (
    "# --- generated by `python deploy/sync.py`: the rules for the config above "
    "(ttft-exporter rules --format=helm-values); do not edit below ---"
)


def _rules_values_files() -> list[tuple[Path, tuple[str, ...], int]]:
    """Values files carrying generated rules: (path, key path of the chart's values
    inside the file, indentation). Their chart values must end the file."""
    files: list[tuple[Path, tuple[str, ...], int]] = [
        (path, (), 0) for path in sorted((CHART / "ci").glob("*-values.yaml"))
    ]
    examples = ROOT / "deploy" / "helm" / "examples"
    files += [(path, ("ttftExporter",), 2) for path in sorted(examples.glob("*/values.yaml"))]
    return files


def with_generated_rules(text: str, key_path: tuple[str, ...], indent: int) -> str:
    """`text` with its generated rules block replaced by the rules for its config (or
    removed, when the file disables the PrometheusRule)."""
    from ttft_exporter.config import parse_config
    from ttft_exporter.rules import render_combined
    from ttft_exporter.rules.helm import render_helm_values

    head = text.split(" " * indent + RULES_MARKER, 1)[0].rstrip("\n") + "\n"
    values = yaml.safe_load(head) or {}
    for key in key_path:
        values = values.get(key) or {}
    rule = values.get("prometheusRule") or {}
    if rule.get("enabled", True) is False:
        return head
    if "groups" in rule or "configChecksum" in rule:
        raise ValueError("set prometheusRule groups only through the generated block")
    config_data = values.get("config") or {}
    config = parse_config(config_data, source="values", resolve_secrets=False)
    rules = render_combined(config, source="values", command="python deploy/sync.py")
    block = render_helm_values(rules, config_data).split("prometheusRule:", 1)[1]
    lines = [RULES_MARKER, "prometheusRule:" + block.rstrip("\n")]
    body = "\n".join(" " * indent + line if line else "" for line in "\n".join(lines).split("\n"))
    return head + body + "\n"


def render_chart(
    chart: Path = CHART,
    values: dict[str, Any] | None = None,
    *,
    name: str = RELEASE,
    namespace: str = KUSTOMIZE_NAMESPACE,
) -> list[dict[str, Any]]:
    """Every object the chart renders (Helm's own code, via helm-python-sdk), in
    template order; empty documents dropped."""
    import helm_python

    rendered = helm_python.Chart.load(str(chart)).render(values, name=name, namespace=namespace)
    objects: list[dict[str, Any]] = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(rendered[path]) if doc]
    return objects


def _kustomize_files() -> dict[str, str]:
    """deploy/kubernetes/: one file per object of the chart's default render, plus the
    kustomization listing them. No namespace in the objects: the user's kustomization
    sets it (`namespace:`)."""
    files: dict[str, str] = {}
    names: list[str] = []
    for obj in render_chart():
        metadata = obj["metadata"]
        metadata.pop("namespace", None)
        labels = metadata.get("labels", {})
        if labels.get("app.kubernetes.io/managed-by") == "Helm":
            labels["app.kubernetes.io/managed-by"] = "kustomize"
        for template in (obj.get("spec", {}).get("template", {}).get("metadata", {}),):
            tlabels = template.get("labels", {})
            if tlabels.get("app.kubernetes.io/managed-by") == "Helm":
                tlabels["app.kubernetes.io/managed-by"] = "kustomize"
        file = f"{obj['kind'].lower()}-{metadata['name']}.yaml"
        names.append(file)
        files[file] = _HEADER + yaml.safe_dump(obj, sort_keys=False, width=120)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": names,
    }
    files["kustomization.yaml"] = _HEADER + yaml.safe_dump(kustomization, sort_keys=False)
    return files


_HEADER = (
    "# Generated by `python deploy/sync.py` from deploy/helm/ttft-exporter (default\n"
    "# values): do not edit. Overlay it with kustomize (namespace, config, images).\n"
)


def generated_files() -> dict[Path, str]:
    """Path -> wanted content of every generated file."""
    out: dict[Path, str] = {
        CHART / "values.schema.json": values_schema(),
        CHART / "files" / "default-rules.yaml": default_rules(),
    }
    for path, key_path, indent in _rules_values_files():
        out[path] = with_generated_rules(path.read_text(encoding="utf-8"), key_path, indent)
    for dashboard in sorted((ROOT / "dashboards").glob("*.json")):
        out[CHART / "dashboards" / dashboard.name] = dashboard.read_text(encoding="utf-8")
    # The kustomize base carries the dashboards too: render after they are in place.
    return out


def _stale(wanted: dict[Path, str], directory: Path, pattern: str, header: str = "") -> list[Path]:
    """Files in `directory` matching `pattern` (and starting with `header`: hand-written
    neighbours stay) that are no longer generated."""
    return sorted(
        p
        for p in directory.glob(pattern)
        if p not in wanted and p.read_text(encoding="utf-8").startswith(header)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if anything is stale")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    problems: list[str] = []
    wanted = generated_files()
    extra = _stale(wanted, CHART / "dashboards", "*.json")
    if args.check:
        problems += [f"{p.relative_to(ROOT)} is out of date" for p, text in wanted.items()
                     if not p.exists() or p.read_text(encoding="utf-8") != text]  # fmt: skip
        problems += [f"{p.relative_to(ROOT)} is not generated: remove it" for p in extra]
    else:
        for path, text in wanted.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        for path in extra:
            path.unlink()
    kustomize = {KUSTOMIZE / name: text for name, text in _kustomize_files().items()}
    extra_k = _stale(kustomize, KUSTOMIZE, "*.yaml", _HEADER) if KUSTOMIZE.exists() else []
    if args.check:
        problems += [f"{p.relative_to(ROOT)} is out of date" for p, text in kustomize.items()
                     if not p.exists() or p.read_text(encoding="utf-8") != text]  # fmt: skip
        problems += [f"{p.relative_to(ROOT)} is not generated: remove it" for p in extra_k]
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: python deploy/sync.py", file=sys.stderr)
        return 1 if problems else 0
    KUSTOMIZE.mkdir(parents=True, exist_ok=True)
    for path in extra_k:
        path.unlink()
    for path, text in kustomize.items():
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
