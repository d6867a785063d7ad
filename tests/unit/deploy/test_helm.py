"""The Helm chart (deploy/helm/ttft-exporter), rendered by Helm v4's own code through
helm-python-sdk, for every `ci/*-values.yaml` scenario: `helm lint --strict` clean,
built-in kinds valid for Kubernetes (kubernetes-validate --strict), Prometheus Operator
kinds valid against the operator's CRD schemas (@kubernetes-models/prometheus-operator,
via node), the PrometheusRule exactly `ttft-exporter rules` for the rendered config,
dashboards carried, the embedded config accepted by `--config.check`; the sidecar lands in
a host chart's pod; the shards partition the targets; the kustomize base renders offline.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from deploy import sync  # the generator the chart's derived files come from
from tests.helpers import require_tool
from ttft_exporter.cli import run
from ttft_exporter.config import parse_config
from ttft_exporter.rules import render_combined
from ttft_exporter.rules.helm import config_checksum, go_json
from ttft_exporter.shard import Shard

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "ttft-exporter"
EXAMPLE = ROOT / "deploy" / "helm" / "examples" / "vllm-with-ttft-exporter"
NODE_DIR = ROOT / ".ci" / "node"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.33.0"
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
RELEASE = "ttft"
NAMESPACE = "monitoring"


def scenario_values(name: str) -> dict[str, Any]:
    values = yaml.safe_load((CHART / "ci" / name).read_text(encoding="utf-8"))
    assert isinstance(values, dict)
    return values


def render(values: dict[str, Any] | None, chart: Path = CHART) -> list[dict[str, Any]]:
    return sync.render_chart(chart, values, name=RELEASE, namespace=NAMESPACE)


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pod_specs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "StatefulSet")
    ]


def exporter_container(spec: dict[str, Any], where: str = "containers") -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in spec.get(where, []) if c["name"] == "ttft-exporter"]
    assert len(found) == 1, spec
    return found[0]


def embedded_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    maps = [o for o in of_kind(objects, "ConfigMap") if "config.yml" in o.get("data", {})]
    assert len(maps) == 1
    config = yaml.safe_load(maps[0]["data"]["config.yml"])
    assert isinstance(config, dict)
    return config


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(scenario_values(name)) for name in SCENARIOS}


def test_every_documented_scenario_exists() -> None:
    assert SCENARIOS == [
        "deployment-values.yaml",
        "monitors-off-values.yaml",
        "native-sidecar-values.yaml",
        "otel-values.yaml",
        "sharded-values.yaml",
        "sidecar-values.yaml",
    ]


def test_generated_files_are_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "sync.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_chart_version_of_the_image_is_the_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    helpers = (CHART / "templates" / "_helpers.tpl").read_text(encoding="utf-8")
    from ttft_exporter import __version__

    assert chart["appVersion"] == __version__
    assert f'.Values.image.tag | default "{__version__}"' in helpers


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_strict_is_clean(scenario: str) -> None:
    report = helm_python.lint(str(CHART), scenario_values(scenario), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert (problems, report["errors"]) == ([], [])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_built_in_kinds_are_valid_kubernetes(
    scenario: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    built_in = [o for o in rendered[scenario] if o["kind"] not in OPERATOR_KINDS]
    assert built_in
    for obj in built_in:
        # Raises ValidationError (strict: unknown fields too); SchemaNotFoundError for a
        # kind it does not know, which must not happen for built-ins.
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_operator_kinds_are_valid_against_the_crds(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    node = require_tool("node", "nodejs")
    if not (NODE_DIR / "node_modules").is_dir():
        pytest.fail("run `npm ci` in .ci/node (as .ci/run does) for the CRD validators")
    files = []
    expected = 0
    for scenario, objects in rendered.items():
        path = tmp_path / scenario
        kinds = [o for o in objects if o["kind"] in OPERATOR_KINDS]
        expected += len(kinds)
        path.write_text(yaml.safe_dump_all(objects), encoding="utf-8")
        files.append(str(path))
    done = subprocess.run(
        [node, str(NODE_DIR / "validate-crds.mjs"), *files],
        capture_output=True,
        text=True,
        check=False,
        cwd=NODE_DIR,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("\nOK ") + done.stdout.startswith("OK ") == expected


def test_the_crd_validator_rejects_a_broken_monitor(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    node = require_tool("node", "nodejs")
    monitor = of_kind(rendered["deployment-values.yaml"], "ServiceMonitor")[0]
    monitor["spec"]["endpoints"][0]["interval"] = "fifteen"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(monitor), encoding="utf-8")
    done = subprocess.run(
        [node, str(NODE_DIR / "validate-crds.mjs"), str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=NODE_DIR,
    )
    assert done.returncode == 1
    assert "interval" in done.stdout


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_prometheus_rule_is_exactly_the_generated_rules(
    scenario: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    objects = rendered[scenario]
    rules = of_kind(objects, "PrometheusRule")
    if scenario_values(scenario).get("prometheusRule", {}).get("enabled", True) is False:
        assert rules == []
        return
    config = parse_config(embedded_config(objects), resolve_secrets=False)
    generated = yaml.safe_load(render_combined(config, source="rendered"))
    assert len(rules) == 1
    assert rules[0]["spec"]["groups"] == generated["groups"]


def test_rules_for_another_config_refuse_to_render() -> None:
    values = scenario_values("sidecar-values.yaml")
    values["config"]["targets"][0]["name"] = "renamed"  # a config edit, rules not regenerated
    with pytest.raises(helm_python.HelmRenderError, match="Regenerate them"):
        render(values)
    values["prometheusRule"]["enabled"] = False
    assert of_kind(render(values), "PrometheusRule") == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_embedded_config_passes_config_check(
    scenario: str,
    rendered: dict[str, list[dict[str, Any]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in scenario_values(scenario).get("secretEnv", {}):
        monkeypatch.setenv(name, "sentinel-not-a-real-key")
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(embedded_config(rendered[scenario])), encoding="utf-8")
    assert run(["--config.check", f"--config.file={path}"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_dashboards_ride_along_as_grafana_configmaps(
    scenario: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    carried = {
        key: value
        for o in of_kind(rendered[scenario], "ConfigMap")
        if o["metadata"]["labels"].get("grafana_dashboard") == "1"
        for key, value in o["data"].items()
    }
    if scenario_values(scenario).get("dashboards", {}).get("enabled", True) is False:
        assert carried == {}
        return
    shipped = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "dashboards").glob("*.json")}
    assert carried == {name: text.rstrip("\n") for name, text in shipped.items()}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pods_are_restricted_sized_and_probed(
    scenario: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    values = scenario_values(scenario)
    specs = pod_specs(rendered[scenario])
    if values.get("mode") == "sidecar":
        assert specs == []  # the host chart owns the pod
        return
    assert len(specs) == 1
    spec = specs[0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    container = exporter_container(spec)
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["runAsNonRoot"] is True
    requests = container["resources"]["requests"]
    assert set(requests) == {"cpu", "memory"}
    assert "cpu" not in container["resources"].get("limits", {})  # throttling inflates TTFT
    if values.get("webConfig", {}).get("existingSecret"):
        assert container["livenessProbe"]["tcpSocket"] == {"port": "ttft-metrics"}
        assert "--web.config.file=/etc/ttft-exporter/web/web-config.yml" in container["args"]
    else:
        assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
        assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/etc/ttft-exporter/config.yml" in mounts
    annotations = rendered[scenario][0:0] or [
        o for o in rendered[scenario] if o["kind"] in ("Deployment", "StatefulSet")
    ]
    template = annotations[0]["spec"]["template"]["metadata"]
    assert len(template["annotations"]["checksum/ttft-exporter-config"]) == 64


def test_config_change_rolls_the_pods() -> None:
    values = scenario_values("monitors-off-values.yaml")
    before = render(values)
    values["config"]["targets"][0]["prompt"] = "Say goodbye."
    after = render(values)

    def checksum(objects: list[dict[str, Any]]) -> str:
        pod = of_kind(objects, "Deployment")[0]["spec"]["template"]["metadata"]
        value: str = pod["annotations"]["checksum/ttft-exporter-config"]
        return value

    assert checksum(before) != checksum(after)


def test_secrets_come_from_existing_secrets_only(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["deployment-values.yaml"]
    assert of_kind(objects, "Secret") == []
    container = exporter_container(pod_specs(objects)[0])
    env = {e["name"]: e for e in container["env"]}
    assert env["OPENAI_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "openai", "key": "api-key"}
    }
    mounted = rendered["monitors-off-values.yaml"]
    spec = pod_specs(mounted)[0]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["ttft-secret-hf-token"]["secret"] == {"secretName": "hf-token"}
    assert volumes["ttft-exporter-web-config"]["secret"] == {
        "secretName": "ttft-exporter-web-config"
    }


def test_monitors_select_the_job_the_rules_select(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    monitor = of_kind(rendered["deployment-values.yaml"], "ServiceMonitor")[0]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == "ttft-metrics"
    assert {"action": "replace", "targetLabel": "job", "replacement": "ttft-exporter"} in endpoint[
        "relabelings"
    ]
    pod_monitor = of_kind(rendered["sidecar-values.yaml"], "PodMonitor")[0]
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "vllm"}


def test_sharded_renders_one_pod_per_shard_owning_disjoint_targets(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["sharded-values.yaml"]
    assert of_kind(objects, "Deployment") == []
    (statefulset,) = of_kind(objects, "StatefulSet")
    shards = scenario_values("sharded-values.yaml")["shards"]
    assert statefulset["spec"]["replicas"] == shards
    container = exporter_container(statefulset["spec"]["template"]["spec"])
    assert "--shard.index=$(TTFT_SHARD_INDEX)" in container["args"]
    assert f"--shard.count={shards}" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["TTFT_SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    # Pods 0..N-1 (StatefulSet ordinals) each run the exporter with their index: together
    # they probe every configured target exactly once.
    names = [t["name"] for t in embedded_config(objects)["targets"]]
    owned = [Shard(i, shards).select(names, str) for i in range(shards)]
    assert sorted(n for part in owned for n in part) == sorted(names)
    assert sum(1 for part in owned if part) > 1
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    assert services[statefulset["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"


@pytest.fixture(scope="module")
def host_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example host chart with its dependency built (charts/ttft-exporter-*.tgz)."""
    copy = tmp_path_factory.mktemp("helm") / "helm"
    shutil.copytree(ROOT / "deploy" / "helm", copy)
    chart = copy / "examples" / EXAMPLE.name
    helm_python.dependency_build(str(chart))
    return chart


@pytest.mark.parametrize("native", [False, True], ids=["sidecar", "native-sidecar"])
def test_sidecar_lands_in_the_host_pod_with_its_config(host_chart: Path, native: bool) -> None:
    values = yaml.safe_load((EXAMPLE / "values.yaml").read_text(encoding="utf-8"))
    values["ttftExporter"]["sidecar"]["native"] = native
    # The release name the example's PodMonitor selector names (README walkthrough).
    objects = sync.render_chart(host_chart, values, name=EXAMPLE.name, namespace="llm")
    (deployment,) = of_kind(objects, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    if native:
        container = exporter_container(spec, "initContainers")
        assert container["restartPolicy"] == "Always"
        assert [c["name"] for c in spec["containers"]] == ["vllm"]
    else:
        container = exporter_container(spec)
        assert "initContainers" not in spec
        assert [c["name"] for c in spec["containers"]] == ["vllm", "ttft-exporter"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "ttft-exporter-config")
    assert mount["mountPath"] == "/etc/ttft-exporter/config.yml"
    volume = next(v for v in spec["volumes"] if v["name"] == "ttft-exporter-config")
    (configmap,) = [o for o in of_kind(objects, "ConfigMap") if "config.yml" in o["data"]]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    target = yaml.safe_load(configmap["data"]["config.yml"])["targets"][0]
    assert target["url"] == "http://127.0.0.1:8000/v1"  # the vLLM container, same pod
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    (pod_monitor,) = of_kind(objects, "PodMonitor")
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/ttft-exporter-config" in annotations
    # Only the host's Service: the exporter chart renders none in sidecar mode.
    assert [o["metadata"]["name"] for o in of_kind(objects, "Service")] == [f"{EXAMPLE.name}-vllm"]
    for obj in objects:
        if obj["kind"] not in OPERATOR_KINDS:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    rules = of_kind(objects, "PrometheusRule")
    assert len(rules) == 1
    config = parse_config(yaml.safe_load(configmap["data"]["config.yml"]), resolve_secrets=False)
    expected = yaml.safe_load(render_combined(config, source="rendered"))["groups"]
    assert rules[0]["spec"]["groups"] == expected


def test_values_schema_rejects_a_config_typo_at_install() -> None:
    values = scenario_values("monitors-off-values.yaml")
    values["config"]["targets"][0]["intervall"] = "15s"
    with pytest.raises(helm_python.HelmValuesError, match="intervall"):
        render(values)
    with pytest.raises(helm_python.HelmValuesError, match="shards"):
        render({"shards": 0})


def test_values_schema_is_a_valid_schema_embedding_the_config_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "targets" in schema["properties"]["config"]["properties"]


# Values whose Go JSON differs from Python's default encoding in some way.
TRICKY = {
    "html": "<a href='x'>&</a>",
    "separators": "a\u2028b\u2029c",
    "control": "tab\there\nnew\x01\x1f\b\f",
    "unicode": "漢字 🙂 é",
    "quote": 'say "hi" \\ there',
    "ints": [0, 1, -1, 15, 1000000, 9007199254740991, 123456789012],
    "floats": [0.5, 1.5, 15.0, 0.1, 1e-5, 1e-7, 2.5e-7, 1e20, 1e21, 1.5e22, 123.456, -0.25],
    "bools": [True, False],
    "nested": {"b": {"z": 1, "a": [1, {"k": "v"}]}, "a": [], "n": None, "l": [None]},
    "empty": {},
}


def test_go_json_is_byte_identical_to_helms_to_json(tmp_path: Path) -> None:
    chart = tmp_path / "probe-chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: probe-chart\nversion: 0.1.0\n", encoding="utf-8"
    )
    template = "".join(
        f"{key}: {{{{ toJson .Values.{key} | b64enc }}}}\n"
        f"{key}_sum: {{{{ toJson .Values.{key} | sha256sum }}}}\n"
        for key in TRICKY
    )
    (chart / "templates" / "out.yaml").write_text(template, encoding="utf-8")
    # The values travel as a YAML values file, as a user's would.
    values = yaml.safe_load(yaml.safe_dump(TRICKY, allow_unicode=True))
    out = yaml.safe_load(
        helm_python.Chart.load(str(chart)).render(values)["probe-chart/templates/out.yaml"]
    )
    import base64

    for key, value in values.items():
        theirs = base64.b64decode(out[key]).decode("utf-8")
        assert go_json(value) == theirs, key
        assert config_checksum(value) == out[f"{key}_sum"], key
        assert hashlib.sha256(theirs.encode()).hexdigest() == out[f"{key}_sum"]


def test_rules_helm_values_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = tmp_path / "values.yaml"
    override = tmp_path / "override.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "config": {
                    "targets": [
                        {
                            "name": "a",
                            "protocol": "openai-chat",
                            "url": "http://x:8000/v1",
                            "model": "m",
                            "prompt": "hi",
                        }
                    ]
                }
            }
        ),
        encoding="utf-8",
    )
    override.write_text(yaml.safe_dump({"config": {"concurrency": 4}}), encoding="utf-8")
    assert run(
        ["rules", "--format=helm-values", f"--helm.values-file={values}",
         f"--helm.values-file={override}"]
    ) == 0  # fmt: skip
    out = yaml.safe_load(capsys.readouterr().out)["prometheusRule"]
    merged = {
        "targets": yaml.safe_load(values.read_text(encoding="utf-8"))["config"]["targets"],
        "concurrency": 4,
    }
    assert out["configChecksum"] == config_checksum(merged)
    expected = render_combined(parse_config(merged, resolve_secrets=False), source="x")
    assert out["groups"] == yaml.safe_load(expected)["groups"]

    assert run(["rules", "--format=helm-values"]) == 2
    assert "needs --helm.values-file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n", encoding="utf-8")
    assert run(["rules", "--format=helm-values", f"--helm.values-file={bad}"]) == 1
    assert f"{bad}" in capsys.readouterr().err


def test_kustomize_base_renders_offline() -> None:
    kubectl = require_tool("kubectl", "kubernetes-client")
    done = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy" / "kubernetes")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(done.stdout) if doc]
    assert {"Deployment", "Service", "ConfigMap", "ServiceMonitor", "PrometheusRule"} <= set(kinds)
