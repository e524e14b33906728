"""The deployment files (deploy/, .github/workflows/ci.yml) checked offline: what `make deploy-check` runs,
plus the references between them and the code (settings names, metric names)."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _load_check():
    spec = importlib.util.spec_from_file_location("deploy_check", ROOT / "deploy" / "check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load_check()


def _stages(dockerfile: str) -> dict[str, str]:
    """Stage name -> its instruction lines (comments left out), from FROM ... AS name."""
    stages: dict[str, str] = {}
    current = None
    for line in dockerfile.splitlines():
        if line.lstrip().startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line)
        if m:
            current = m.group(1)
            stages[current] = ""
        elif current:
            stages[current] += line + "\n"
    return stages


# --------------------------------------------------------------------------- Dockerfile
def test_hadolint_passes_on_the_dockerfile():
    check.hadolint()


def test_hadolint_reports_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install -y curl\n")
    with pytest.raises(check.CheckError, match="DL3006"):
        check.hadolint(bad)


def test_dockerfile_targets_and_serving_stage():
    text = check.DOCKERFILE.read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in text
    stages = _stages(text)
    assert {"build", "serve", "train", "mlflow"} <= set(stages)
    serve = stages["serve"]
    assert re.search(r"^USER \$\{UID\}", serve, re.M)
    assert "ARG UID=10001" in serve
    assert "/ready" in serve.split("HEALTHCHECK", 1)[1]
    assert "MASKOPS_HOST=0.0.0.0" in serve
    assert "COPY models " in serve
    # the serving install is `pip install .`: no extras, no torch
    assert re.search(r"pip install --no-cache-dir \.( |$)", stages["build"], re.M)
    assert "torch" not in stages["build"] + serve
    assert "torch==2.13.0" in stages["train"]


def test_dockerignore_keeps_local_state_out_and_the_models_in():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "work", "mlruns", "mlartifacts", "mlflow.db"} <= ignored
    assert not ignored & {"models", "src", "configs", "deploy/yunet", "*.onnx"}


# --------------------------------------------------------------------------- Kubernetes
@pytest.mark.parametrize("folder", check.KUSTOMIZATIONS, ids=lambda p: p.name)
def test_rendered_manifests_validate(folder):
    names = check.validate_manifests(check.render_kustomization(folder), folder.name)
    assert "Deployment/maskops-api" in names


def test_production_overlay_sets_replicas_resources_image():
    docs = {d["kind"]: d for d in check.render_kustomization(check.K8S / "overlays" / "production")}
    deployment = docs["Deployment"]
    assert deployment["metadata"]["namespace"] == "maskops"
    assert deployment["spec"]["replicas"] == 3
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(":0.1.0")
    assert container["resources"]["limits"]["cpu"] == "4"
    assert {"name": "MASKOPS_WORKERS", "value": "4"} in container["env"]
    # the patch merged into the base container: its probes and mounts are still there
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert {m["name"] for m in container["volumeMounts"]} == {"work", "tmp", "yunet"}
    assert docs["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 3


def test_strict_validation_rejects_an_unknown_field():
    docs = check.render_kustomization(check.K8S / "base")
    bad = copy.deepcopy(docs)
    deployment = next(d for d in bad if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(check.CheckError, match="Deployment/maskops-api"):
        check.validate_manifests(bad, "base")


def test_strategic_merge_by_name():
    base = {"c": [{"name": "a", "x": 1, "y": {"k": 1}}], "keep": 1}
    patch = {"c": [{"name": "a", "y": {"j": 2}}, {"name": "b"}]}
    assert check.strategic_merge(base, patch) == {
        "c": [{"name": "a", "x": 1, "y": {"k": 1, "j": 2}}, {"name": "b"}],
        "keep": 1,
    }


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl not installed: no kustomize to compare with"
)
@pytest.mark.parametrize("folder", check.KUSTOMIZATIONS, ids=lambda p: p.name)
def test_renderer_matches_kubectl_kustomize(folder):
    out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, check=True)
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    reference = sorted((d for d in yaml.safe_load_all(out.stdout) if d), key=key)
    assert sorted(check.render_kustomization(folder), key=key) == reference


def test_configmap_and_compose_name_real_settings():
    from maskops.serve.settings import ServeSettings

    fields = {f"MASKOPS_{name.upper()}" for name in ServeSettings.model_fields}
    configmap = yaml.safe_load((check.K8S / "base" / "configmap.yaml").read_text())
    env = {k for k in configmap["data"] if k.startswith("MASKOPS_")}
    compose = yaml.safe_load(check.COMPOSE.read_text())
    env |= {k for k in compose["services"]["api"]["environment"] if k.startswith("MASKOPS_")}
    env |= set(re.findall(r"(MASKOPS_[A-Z_]+)=", check.DOCKERFILE.read_text()))
    secret = yaml.safe_load((check.K8S / "base" / "secret.yaml").read_text())
    env.add("MASKOPS_DATABASE_URL")
    assert "MASKOPS_DATABASE_URL" in secret["stringData"]
    assert env - fields == set()


# --------------------------------------------------------------------------- compose, workflow
def test_compose_file():
    spec = check.check_compose()
    assert spec["services"]["api"]["environment"]["MASKOPS_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "--backend-store-uri=postgresql+psycopg://" in " ".join(spec["services"]["mlflow"]["command"])


def test_compose_check_catches_an_undeclared_volume(tmp_path):
    spec = yaml.safe_load(check.COMPOSE.read_text())
    del spec["volumes"]["grafana-data"]
    bad = tmp_path / "compose.yaml"
    bad.write_text(yaml.safe_dump(spec))
    with pytest.raises(check.CheckError, match="grafana-data"):
        check.check_compose(bad, base=check.DEPLOY)


def test_workflow():
    spec = check.check_workflow()
    assert set(spec["jobs"]) == {"test", "image"}


# --------------------------------------------------------------------------- Prometheus, Grafana
def _exported_names() -> set[str]:
    from maskops.serve.metrics import ServiceMetrics
    from maskops.serve.recording import store_counters

    metrics = ServiceMetrics()
    store_counters(metrics.registry)
    names = set()
    for family in metrics.registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        names |= {family.name + s for s in suffixes}
    return names


def test_dashboard_queries_name_exported_metrics():
    dashboard = json.loads((check.DEPLOY / "grafana" / "dashboards" / "maskops.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bmaskops_[a-z_]+", e)}
    assert used - _exported_names() == set()
    for wanted in (
        "maskops_http_requests_total",
        "maskops_http_request_duration_seconds_bucket",
        "maskops_faces_total",
        "maskops_store_records_logged_total",
        "maskops_store_records_spooled_total",
        "maskops_store_records_dropped_total",
    ):
        assert wanted in used


def test_prometheus_scrapes_the_api_and_grafana_is_provisioned():
    prom = yaml.safe_load((check.DEPLOY / "prometheus" / "prometheus.yml").read_text())
    api = next(j for j in prom["scrape_configs"] if j["job_name"] == "maskops-api")
    assert api["metrics_path"] == "/metrics"
    assert api["static_configs"][0]["targets"] == ["api:8000"]
    provisioning = check.DEPLOY / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "maskops.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
