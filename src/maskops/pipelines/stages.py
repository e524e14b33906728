"""The life cycle's stages as plain functions with small JSON-able results: validate, prepare, train,
export, evaluate, register, promotion gate, and the monitoring facts a retrain decision needs.

The Prefect flows (``maskops.pipelines.flows``) and the DVC stage commands (``maskops pipeline
validate``, ``export``, ``evaluate``, ``release``) both call these; each one calls the library function
of its stage and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maskops.config import Settings, TaskConfig, TrainConfig, resolve_source_path

if TYPE_CHECKING:
    from sqlalchemy import Engine

logger = logging.getLogger(__name__)

# the shipped file of an export folder, in order of preference (``release_checkpoint`` writes them)
SHIPPED_NAMES = ("model_int8.onnx", "model_fp16.onnx", "model.onnx")


class PipelineError(RuntimeError):
    """A stage refuses to go on (blocked validation, nothing to register); the message says why."""


def source_fingerprint(root: Path) -> str:
    """A cheap hash of a raw dataset folder: every file's relative path, size and mtime.

    It changes when a file is added, removed or rewritten (the test DVC's own state uses to skip
    rehashing); it is the cache key of the data stages.
    """
    digest = hashlib.sha256()
    if not root.exists():
        return "missing"
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            st = path.stat()
            digest.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def data_fingerprint(task: TaskConfig, settings: Settings) -> str:
    """``source_fingerprint`` of every source of the task, combined."""
    digest = hashlib.sha256()
    for src in task.sources:
        root = resolve_source_path(src, settings)
        digest.update(f"{src.name}\0{root}\0{source_fingerprint(root)}\n".encode())
    return digest.hexdigest()


def _source(task: TaskConfig, name: str) -> Any:
    for src in task.sources:
        if src.name == name:
            return src
    raise ValueError(f"task {task.name!r} has no source {name!r} (sources: {[s.name for s in task.sources]})")


def validate_source(
    task: TaskConfig, name: str, settings: Settings, report_path: Path | None = None
) -> dict[str, Any]:
    """Validate one raw source of the task (``maskops data validate``'s checks and blocking rules).

    Args:
        report_path: when set, the full report goes there as JSON.

    Returns:
        ``ok``, files, readable images, blocking rules found, issues per rule, the folder's fingerprint.
    """
    from maskops.data.validate import validate_dataset

    root = resolve_source_path(_source(task, name), settings)
    report = validate_dataset(root)
    if report_path is not None:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return {
        "source": name,
        "ok": report.ok,
        "files": report.n_files,
        "readable": report.n_ok,
        "blocking": list(report.blocking_found),
        "issues": dict(report.rule_counts),
        "fingerprint": source_fingerprint(root),
    }


def validate_sources(task: TaskConfig, settings: Settings, out_dir: Path | None = None) -> dict[str, Any]:
    """``validate_source`` of every source (full reports in ``out_dir/<source>.json`` when given).

    Raises:
        PipelineError: a source is blocked (the message names it and its blocking rules).
    """
    out = {
        src.name: validate_source(
            task, src.name, settings, Path(out_dir) / f"{src.name}.json" if out_dir else None
        )
        for src in task.sources
    }
    blocked = {name: s["blocking"] for name, s in out.items() if not s["ok"]}
    if blocked:
        raise PipelineError(f"task {task.name!r}: validation blocked: {blocked}")
    return out


def prepare_data(task: TaskConfig, settings: Settings, workers: int = 2) -> dict[str, Any]:
    """Write the task's manifest (``maskops data prepare``); its path, hash and counts."""
    from maskops.data.prepare import prepare_task
    from maskops.detect import create_detector

    report = prepare_task(task, settings, workers=workers, make_detector=create_detector)
    return {
        "manifest": str(report.manifest_path),
        "manifest_hash": report.manifest_hash,
        "rows": report.n_rows,
        "counts": report.counts,
    }


def compact_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a ``classification_metrics`` dict (no confusion matrix, no curves)."""
    out: dict[str, Any] = {
        k: metrics[k]
        for k in ("n", "accuracy", "macro_f1", "balanced_accuracy", "roc_auc_macro", "ece")
        if k in metrics
    }
    per_class = metrics.get("per_class") or {}
    out["recall"] = {name: pc["recall"] for name, pc in per_class.items()}
    out["precision"] = {name: pc["precision"] for name, pc in per_class.items()}
    return out


def train_model(
    task: TaskConfig,
    cfg: TrainConfig,
    settings: Settings,
    *,
    out_dir: Path,
    manifest: Path,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Train (``train_task``, no export); the run folder, checkpoint, MLflow run and val/test figures."""
    from maskops.train.api import train_task

    result = train_task(
        task, cfg, settings, out_dir=out_dir, manifest=manifest, tracking_uri=tracking_uri, progress=False
    )
    return {
        "run_dir": str(result.out_dir),
        "checkpoint": str(result.best_checkpoint),
        "run_id": result.run_id,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "val": compact_metrics(result.val_metrics),
        "test": compact_metrics(result.test_metrics),
    }


def export_model(
    checkpoint: Path,
    out_dir: Path,
    *,
    task: TaskConfig,
    manifest: Path | None = None,
    weights: str = "int8",
    reference: bool = True,
) -> dict[str, Any]:
    """Export a finished run's ``best.pt`` (``release_checkpoint``: ONNX, parity, int8/fp16, card,
    reference profile when ``reference``) into ``out_dir``; the shipped file and its figures."""
    from maskops.train.release import release_checkpoint

    thresholds = None
    if task.kind == "detection":
        from maskops.detect.pipeline import DEFAULT_THRESHOLDS

        thresholds = dict(DEFAULT_THRESHOLDS)
    res = release_checkpoint(
        Path(checkpoint),
        Path(out_dir),
        manifest=manifest,
        weights=weights,
        thresholds=thresholds,
        reference_task=task if reference else None,
    )
    change = (res.quantization.get("test") or {}).get("accuracy_change")
    return {
        "shipped": str(res.shipped_path),
        "fp32": str(res.fp32_path),
        "parity_max_abs_diff": res.parity.get("max_abs_diff"),
        f"{weights}_test_accuracy_change": change,
        "shipped_test": compact_metrics(res.shipped_metrics.get("test") or {}),
    }


def shipped_model(path: Path) -> Path:
    """The model file itself, or the shipped file of an export folder (int8, then fp16, then fp32).

    Raises:
        FileNotFoundError: a folder with none of them.
    """
    path = Path(path)
    if not path.is_dir():
        return path
    for name in SHIPPED_NAMES:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"{path}: no exported model ({', '.join(SHIPPED_NAMES)})")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def evaluate_model(
    model: Path, manifest: Path, *, task_name: str, split: str = "test", out_dir: Path | None = None
) -> dict[str, Any]:
    """Evaluate the ONNX model on a split (``evaluate_classifier``: report.md/json and plots in
    ``out_dir``); the headline figures."""
    from maskops.evaluate.run import evaluate_classifier

    run = evaluate_classifier(shipped_model(model), manifest, task=task_name, split=split, out_dir=out_dir)
    m = run.report.metrics
    return {
        "task": task_name,
        "model": str(shipped_model(model)),
        "split": split,
        **compact_metrics(m),
        "ece_after": run.report.ece_after,
        "temperature": run.temperature,
        "skipped": len(run.skipped),
    }


def register_model(
    model: Path, task_name: str, *, run_id: str | None = None, tracking_uri: str | None = None
) -> int:
    """Register the shipped model as the task's ``challenger`` (``registry.register_onnx_model``).

    The MLflow run is ``run_id``, else the one the card names (``extra.mlflow_run_id``).

    Raises:
        PipelineError: no run id given or recorded.
    """
    from maskops import registry
    from maskops.types import ModelSpec

    path = shipped_model(model)
    card = ModelSpec.load(ModelSpec.card_path(path))
    run_id = run_id or card.extra.get("mlflow_run_id")
    if not run_id:
        raise PipelineError(f"{path}: no MLflow run to register it under (card has no extra.mlflow_run_id)")
    return registry.register_onnx_model(run_id, path, task_name, card, tracking_uri=tracking_uri)


def promotion_gate(
    task_name: str, *, tolerance: float = 0.02, tracking_uri: str | None = None
) -> dict[str, Any]:
    """The registry's promotion gate (``registry.promote``) on the current challenger."""
    from maskops import registry

    d = registry.promote(task_name, tolerance=tolerance, tracking_uri=tracking_uri)
    return {
        "promoted": d.promoted,
        "reasons": list(d.reasons),
        "challenger": d.challenger_version,
        "champion": d.champion_version,
        "challenger_metrics": d.challenger_metrics,
        "champion_metrics": d.champion_metrics,
    }


def summary_markdown(
    task_name: str, evaluation: dict[str, Any], release: dict[str, Any] | None = None
) -> str:
    """The evaluation summary as markdown: headline figures, per-class recall/precision, the release."""
    lines = [
        f"# {task_name}: evaluation of `{Path(str(evaluation.get('model', ''))).name}` on {evaluation['split']}",
        "",
        "| metric | value |",
        "| --- | ---: |",
    ]
    for key in ("n", "accuracy", "macro_f1", "balanced_accuracy", "roc_auc_macro", "ece_after"):
        value = evaluation.get(key)
        if value is not None:
            lines.append(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
    lines += ["", "| class | recall | precision |", "| --- | ---: | ---: |"]
    for name, recall in evaluation.get("recall", {}).items():
        lines.append(f"| {name} | {recall:.4f} | {evaluation['precision'][name]:.4f} |")
    if release:
        lines += ["", f"**Release:** {release.get('status', '')}"]
        lines += [f"- {r}" for r in release.get("reasons", [])]
    return "\n".join(lines) + "\n"


def count_reviewed(engine: Engine, since: datetime | None = None) -> int:
    """Reviewed hard cases: stored crops answered by a person (origin ``review``, not ``not_a_face``),
    answered after ``since`` when given (naive UTC, as the store keeps times)."""
    from sqlalchemy import and_, func, select

    from maskops.monitor.feedback import NOT_A_FACE
    from maskops.monitor.schema import FaceCropRow, FeedbackRow

    query = (
        select(func.count())
        .select_from(FeedbackRow)
        .join(
            FaceCropRow,
            and_(
                FeedbackRow.request_id == FaceCropRow.request_id,
                FeedbackRow.face_index == FaceCropRow.face_index,
            ),
        )
        .where(FeedbackRow.origin == "review", FeedbackRow.true_label != NOT_A_FACE)
    )
    if since is not None:
        query = query.where(FeedbackRow.created_at > since)
    with engine.connect() as conn:
        return int(conn.scalar(query) or 0)
