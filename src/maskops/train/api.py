"""``train_task``: the one library entry point behind ``maskops train``.

Named stages, in order: check the config (``_check_config``), read the splits (``_read_splits``),
write the model card and the resolved config, decode the datasets (``_build_datasets``), open the
MLflow run (``_start_run``), fit with checkpoints and early stopping (``maskops.train.loop.fit``),
calibrate and measure the best checkpoint on val and test (``_calibrate``), and record the figures,
files and plots (``_record``). Export and registration hook in through ``on_finish(result, model)``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from pydantic import ValidationError

from maskops.config import Settings, TaskConfig, TrainConfig
from maskops.data.augment import AugmentConfig
from maskops.data.dataset import ImageDataset, source_weights
from maskops.evaluate.calibration import fit_class_bias, fit_temperature, reliability_bins
from maskops.evaluate.metrics import classification_metrics, json_safe
from maskops.evaluate.plots import plot_confusion_matrix, plot_reliability
from maskops.models import create_model, model_options
from maskops.numeric import softmax
from maskops.provenance import git_commit
from maskops.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from maskops.train.data import default_manifest_path, read_rows, rows_hash, split_rows
from maskops.train.loop import (
    FitResult,
    TrainingInterrupted,
    fit,
    load_teachers,
    predict_logits,
    seed_everything,
)
from maskops.train.tracking import Tracker
from maskops.types import ModelSpec

logger = logging.getLogger(__name__)

RUN_ID_FILE = "mlflow_run_id"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.json"


@dataclass
class TrainResult:
    """The outcome of ``train_task``.

    Attributes:
        run_id: MLflow run id.
        best_checkpoint: ``best.pt`` (its spec carries the temperature and metrics).
        spec: the model card: task, classes, input size, mean/std, colour, architecture, manifest
            hash, git commit, fitted temperature, ``metrics = {"val": ..., "test": ...}``.
        val_logits, val_labels: validation logits (uncalibrated) and labels of the best model.
        test_logits, test_labels: the same on test.
        val_metrics, test_metrics: ``classification_metrics`` with the temperature applied.
        epochs: epochs completed; best_epoch: the selected one.
        seconds: wall time of this call.
        out_dir: the run folder.
        stopped_early: patience ran out.
        history: per-epoch metrics.
    """

    run_id: str
    best_checkpoint: Path
    spec: ModelSpec
    val_logits: np.ndarray
    val_labels: np.ndarray
    test_logits: np.ndarray
    test_labels: np.ndarray
    val_metrics: dict[str, Any]
    test_metrics: dict[str, Any]
    epochs: int
    best_epoch: int
    seconds: float
    out_dir: Path
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


def _plots(out_dir: Path, spec: ModelSpec, result: TrainResult) -> list[Path]:
    """Confusion matrix (test) and reliability diagram (val, before/after temperature)."""
    paths = [
        plot_confusion_matrix(
            np.asarray(result.test_metrics["confusion"]), spec.class_names, out_dir / "confusion_test.png"
        )
    ]
    if len(result.val_labels):
        bins = {
            "uncalibrated": reliability_bins(softmax(result.val_logits, 1.0), result.val_labels),
            f"T={spec.temperature:.2f}": reliability_bins(
                softmax(result.val_logits, spec.temperature), result.val_labels
            ),
        }
        paths.append(plot_reliability(bins, out_dir / "reliability_val.png"))
    return paths


def _bake_logit_bias(model: Any, delta: np.ndarray) -> None:
    """Add ``delta`` to the bias of the model's last ``nn.Linear`` (the classifier head)."""
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not heads or heads[-1].out_features != len(delta):
        raise ValueError(f"no final nn.Linear with {len(delta)} outputs to carry the decision bias")
    head = heads[-1]
    with torch.no_grad():
        if head.bias is None:
            head.bias = torch.nn.Parameter(torch.zeros(head.out_features))
        head.bias.add_(torch.as_tensor(delta, dtype=head.bias.dtype))


@dataclass
class _Splits:
    """The manifest's rows by split, with what identifies them."""

    manifest_path: Path
    splits: dict[str, list[Any]]
    manifest_hash: str
    draw_weights: np.ndarray | None


@dataclass
class _Datasets:
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset


def _check_config(cfg: TrainConfig) -> AugmentConfig:
    """Cheap checks before any decoding; an unknown model raises UnknownModelError naming the valid ones."""
    valid_options = [o for o in model_options(cfg.model) if o != "input_size"]
    unknown = sorted(set(cfg.model_options) - set(valid_options))
    if unknown:
        raise ValueError(
            f"train.model_options {unknown} are not options of model {cfg.model!r} "
            f"(valid: {', '.join(valid_options) or 'none'}; the input size is train.input_size)"
        )
    return AugmentConfig.from_dict(cfg.augment)


def _read_splits(task: TaskConfig, cfg: TrainConfig, settings: Settings, manifest: Path | None) -> _Splits:
    manifest_path = Path(manifest) if manifest else default_manifest_path(settings.prepared_dir(task.name))
    rows = read_rows(manifest_path)
    splits = split_rows(rows, task.classes, manifest_path)
    draw_weights = source_weights([r.source for r in splits["train"]], cfg.source_weights)
    return _Splits(manifest_path, splits, rows_hash(rows), draw_weights)


def training_sources(task: TaskConfig) -> list[dict[str, Any]]:
    """What the card says of the data a model learnt from: each source, its splits and licence."""
    out: list[dict[str, Any]] = []
    for src in task.sources:
        entry: dict[str, Any] = {"name": src.name, "kind": src.kind, "path": src.path}
        entry["splits"] = list(src.splits_for) if src.splits_for else ["train", "val", "test"]
        if src.splits_file:
            entry["splits_file"] = src.splits_file
        if src.licence:
            entry["licence"] = src.licence
        out.append(entry)
    if task.synthetic is not None:
        out.append({"name": "synthetic masks", "kind": "synthetic", "splits": ["train"]})
    return out


def _model_card(task: TaskConfig, cfg: TrainConfig, manifest_hash: str) -> ModelSpec:
    return ModelSpec(
        task=task.name,
        class_names=list(task.classes),
        input_size=(cfg.input_size, cfg.input_size),
        architecture=cfg.model,
        color="gray" if task.grayscale else "rgb",
        manifest_hash=manifest_hash,
        git_commit=git_commit(),
        extra={"training_sources": training_sources(task)},
    )


def resolve_teachers(teachers: Sequence[str], settings: Settings, task: str) -> list[Path]:
    """Checkpoint paths of distillation teachers.

    An absolute path is used as it is. Any other entry names a run, or a file in it, under
    ``<work_dir>/runs/<task>/`` (``pad224`` is ``<work_dir>/runs/<task>/pad224/best.pt``), so configs
    do not depend on where the runs of one machine live.

    Raises:
        CheckpointError: a named run or file does not exist (the message gives the path looked at).
    """
    runs = settings.work_dir / "runs" / task
    out = []
    for entry in teachers:
        path = Path(entry)
        if path.is_absolute():
            out.append(path)
            continue
        path = runs / path
        if path.is_dir():
            path = path / "best.pt"
        if not path.is_file():
            raise CheckpointError(
                f"distill teacher {entry!r}: no checkpoint at {path} (a teacher is a run name under "
                f"{runs}/ or an absolute path to a best.pt); train that run first"
            )
        out.append(path)
    return out


def _write_config(
    out_dir: Path, task: TaskConfig, cfg: TrainConfig, data: _Splits, augment_cfg: AugmentConfig
) -> dict[str, Any]:
    """The resolved settings of the run, written to ``config.yaml`` (and logged as MLflow params)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = {
        "task": task.name,
        "manifest": str(data.manifest_path.resolve()),
        "manifest_hash": data.manifest_hash,
        "schedule": cfg.schedule,
        "warmup_epochs": float(cfg.warmup_epochs),
        "train": cfg.model_dump(mode="json"),
        "augment_resolved": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(augment_cfg).items()},
    }
    (out_dir / CONFIG_FILE).write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    return resolved


def _build_datasets(
    task: TaskConfig,
    spec: ModelSpec,
    data: _Splits,
    cfg: TrainConfig,
    augment_cfg: AugmentConfig,
    progress: bool,
) -> _Datasets:
    """Decode the three splits (train with augmentation and its per-source draw weights)."""
    train_ds = ImageDataset.from_rows(
        data.splits["train"],
        task.classes,
        spec,
        augment_cfg=augment_cfg,
        seed=cfg.seed,
        progress=progress,
        description="decoding train",
    )
    train_ds.sample_weights = data.draw_weights
    val_ds = ImageDataset.from_rows(
        data.splits["val"], task.classes, spec, progress=progress, description="decoding val"
    )
    test_ds = ImageDataset.from_rows(
        data.splits["test"], task.classes, spec, progress=progress, description="decoding test"
    )
    return _Datasets(train_ds, val_ds, test_ds)


def _start_run(
    out_dir: Path,
    task: TaskConfig,
    spec: ModelSpec,
    data: _Splits,
    resolved: dict[str, Any],
    *,
    resume: bool,
    tracking_uri: str | None,
) -> Tracker:
    """Open (or, resuming, reopen) the MLflow run and log the run's parameters, tags and config."""
    run_id_path = out_dir / RUN_ID_FILE
    previous = run_id_path.read_text().strip() if resume and run_id_path.is_file() else None
    tracker = Tracker(tracking_uri, task.name, run_name=out_dir.name, run_id=previous)
    run_id_path.write_text(tracker.run_id + "\n", encoding="utf-8")
    counts = {f"n_{s}": len(data.splits[s]) for s in data.splits}
    tracker.log_params({**resolved, **counts})
    tracker.set_tags(
        {
            "task": task.name,
            "manifest_hash": data.manifest_hash,
            "git_commit": spec.git_commit,
            "model": spec.architecture,
            "stage": "train",
        }
    )
    tracker.log_artifact(out_dir / CONFIG_FILE)
    return tracker


def _calibrate(
    model: Any,
    fitted: FitResult,
    ds: _Datasets,
    cfg: TrainConfig,
    spec: ModelSpec,
    *,
    run_id: str,
    out_dir: Path,
) -> TrainResult:
    """Reload the best checkpoint, fit the temperature (and decision bias) on val, measure val and test.

    The card (temperature, metrics, epochs) is updated and saved into ``best.pt``; the result's
    logits include the decision bias.
    """
    classes = list(spec.class_names)
    state = load_checkpoint(fitted.best_path)
    # back to the default memory format: what load_model() and the ONNX export see
    model.to(memory_format=torch.contiguous_format)
    model.load_state_dict(state["model_state"])
    model.eval()
    bs = max(cfg.batch_size, 64)
    val_logits = predict_logits(model, ds.val, bs)
    test_logits = predict_logits(model, ds.test, bs)
    temperature = fit_temperature(val_logits, ds.val.labels)
    if cfg.decision_bias:
        bias = fit_class_bias(val_logits, ds.val.labels, temperature)
        delta = (bias * temperature).astype(np.float32)  # in raw-logit units
        _bake_logit_bias(model, delta)
        val_logits = val_logits + delta
        test_logits = test_logits + delta
        spec.extra["decision_bias"] = [round(float(b), 4) for b in bias]
        logger.info("decision bias fitted on val (after T): %s", np.round(bias, 3).tolist())
    uncal = classification_metrics(ds.val.labels, softmax(val_logits, 1.0), classes)
    val_metrics = json_safe(classification_metrics(ds.val.labels, softmax(val_logits, temperature), classes))
    val_metrics["ece_uncalibrated"] = json_safe(uncal["ece"])
    test_metrics = json_safe(
        classification_metrics(ds.test.labels, softmax(test_logits, temperature), classes)
    )
    spec.temperature = float(temperature)
    spec.metrics = {"val": val_metrics, "test": test_metrics}
    spec.extra = {**spec.extra, "best_epoch": fitted.best_epoch, "epochs": fitted.epochs_run}
    state["spec"] = spec.to_dict()
    if cfg.decision_bias:
        state["model_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_checkpoint(fitted.best_path, state)
    return TrainResult(
        run_id=run_id,
        best_checkpoint=fitted.best_path,
        spec=spec,
        val_logits=val_logits,
        val_labels=ds.val.labels.copy(),
        test_logits=test_logits,
        test_labels=ds.test.labels.copy(),
        val_metrics=val_metrics,
        test_metrics=test_metrics,
        epochs=fitted.epochs_run,
        best_epoch=fitted.best_epoch,
        seconds=0.0,
        out_dir=out_dir,
        stopped_early=fitted.stopped_early,
        history=fitted.history,
    )


def _epoch_end(
    tracker: Tracker,
    epoch: int,
    metrics: dict[str, float],
    hook: Callable[[int, dict[str, float]], None] | None,
) -> None:
    tracker.log_metrics(metrics, step=epoch)
    if hook is not None:
        hook(epoch, metrics)


def _record(result: TrainResult, tracker: Tracker, *, plots: bool) -> None:
    """Write ``metrics.json`` and log the final figures, the file and the plots to MLflow."""
    out_dir, spec = result.out_dir, result.spec
    summary = {
        "temperature": spec.temperature,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "val": result.val_metrics,
        "test": result.test_metrics,
    }
    (out_dir / METRICS_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    # per-epoch figures as a list of records (what ``dvc plots`` reads)
    (out_dir / HISTORY_FILE).write_text(json.dumps(result.history, indent=1) + "\n", encoding="utf-8")
    tracker.log_metrics(
        {
            "temperature": spec.temperature,
            "best_epoch": result.best_epoch,
            "val": result.val_metrics,
            "test": result.test_metrics,
        },
        step=result.epochs,
    )
    tracker.log_artifact(out_dir / METRICS_FILE)
    if plots:
        try:
            for p in _plots(out_dir, spec, result):
                tracker.log_artifact(p, "plots")
        except Exception:  # a plot must never lose a finished training
            logger.exception("could not write the plots")


def train_task(
    task: TaskConfig,
    cfg: TrainConfig,
    settings: Settings,
    *,
    out_dir: Path,
    manifest: Path | None,
    resume: bool = False,
    tracking_uri: str | None = None,
    on_finish: Callable[[TrainResult, Any], None] | None = None,
    progress: bool = True,
    plots: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train, evaluate and track a classifier for ``task``.

    Args:
        task: the task config (classes, grayscale, name).
        cfg: the resolved training config.
        settings: process settings (the default manifest lives in ``settings.prepared_dir(task)``).
        out_dir: run folder (``config.yaml``, ``last.pt``, ``best.pt``, ``metrics.json``, plots).
        manifest: the manifest CSV; default ``<prepared_dir>/manifest.csv``.
        resume: continue the run in ``out_dir`` (same MLflow run) from ``last.pt``.
        tracking_uri: MLflow store; default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``.
        on_finish: called as ``on_finish(result, model)`` with the best model in eval mode, before
            the MLflow run is closed (export and registration hook).
        progress: progress bars.
        plots: write and log the confusion-matrix and reliability plots.
        on_epoch_end: called as ``on_epoch_end(epoch, metrics)`` after each epoch is logged (e.g. a
            hyperparameter search's pruner); an exception it raises ends the run as FAILED.

    Returns:
        TrainResult.

    Raises:
        ValueError: unknown model, bad augment options, missing/empty manifest, a split without
            rows, a class without training samples (DataError names the manifest and the class).
        FileNotFoundError: ``resume`` but no ``last.pt`` in ``out_dir``.
        TrainingInterrupted: Ctrl-C; the MLflow run is marked KILLED and ``--resume`` continues it.
    """
    t_start = time.perf_counter()
    augment_cfg = _check_config(cfg)
    data = _read_splits(task, cfg, settings, manifest)
    out_dir = Path(out_dir)
    if resume and not (out_dir / "last.pt").is_file():
        raise FileNotFoundError(f"nothing to resume: {out_dir / 'last.pt'} does not exist")
    spec = _model_card(task, cfg, data.manifest_hash)
    # before the slow decoding: a bad teacher fails fast
    teachers = None
    if cfg.distill is not None:
        teachers = load_teachers(resolve_teachers(cfg.distill.teachers, settings, task.name), spec)
    resolved = _write_config(out_dir, task, cfg, data, augment_cfg)
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.num_threads)
    ds = _build_datasets(task, spec, data, cfg, augment_cfg, progress)
    model_kwargs = {"input_size": cfg.input_size, **cfg.model_options}
    model = create_model(cfg.model, num_classes=len(task.classes), pretrained=True, **model_kwargs)
    tracker = _start_run(out_dir, task, spec, data, resolved, resume=resume, tracking_uri=tracking_uri)
    try:
        fitted = fit(
            model,
            ds.train,
            ds.val,
            cfg,
            spec=spec,
            out_dir=out_dir,
            resume=resume,
            schedule=cfg.schedule,
            warmup_epochs=float(cfg.warmup_epochs),
            model_kwargs=model_kwargs,
            on_epoch_end=lambda epoch, m: _epoch_end(tracker, epoch, m, on_epoch_end),
            progress=progress,
            teachers=teachers,
        )
        result = _calibrate(model, fitted, ds, cfg, spec, run_id=tracker.run_id, out_dir=out_dir)
        _record(result, tracker, plots=plots)
        # a resumed run counts the epochs done before the resume too (MLflow keeps the last value)
        result.seconds = fitted.resumed_seconds + time.perf_counter() - t_start
        tracker.log_metrics({"train_seconds": result.seconds}, step=fitted.epochs_run)
        if on_finish is not None:
            on_finish(result, model)
    except TrainingInterrupted:
        tracker.end("KILLED")
        raise
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end("FINISHED")
    logger.info(
        "trained %s in %.0f s: test accuracy %.4f, macro-F1 %.4f (T=%.3f); run %s",
        task.name,
        result.seconds,
        result.test_metrics["accuracy"],
        result.test_metrics["macro_f1"],
        spec.temperature,
        tracker.run_id,
    )
    return result


def resolve_config(
    base: TrainConfig, config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Layer the training config like timm: task defaults < ``--config`` YAML < CLI flags.

    Args:
        base: the task's ``train`` section.
        config_file: YAML with TrainConfig fields, either at the top level or under ``train:``.
        overrides: CLI values; ``None`` values are ignored.

    Raises:
        ValueError: unreadable/invalid YAML or invalid values (the message names the file or flag).
    """
    data = base.model_dump()
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ValueError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of training options")
        if isinstance(loaded.get("train"), dict):
            loaded = loaded["train"]
        augment = {**data.get("augment", {}), **(loaded.pop("augment", None) or {})}
        data.update(loaded)
        data["augment"] = augment
        try:
            TrainConfig.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"{path}: invalid training config:\n{exc}") from exc
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"invalid training option:\n{exc}") from exc


def default_run_dir(settings: Settings, task: str, name: str | None = None) -> Path:
    """``<work_dir>/runs/<task>/<name or UTC timestamp>``."""
    return settings.work_dir / "runs" / task / (name or datetime.now(UTC).strftime("%Y%m%d-%H%M%S"))


def latest_run_dir(settings: Settings, task: str) -> Path | None:
    """The most recently modified run of ``task`` that has a ``last.pt`` (for ``--resume``)."""
    root = settings.work_dir / "runs" / task
    runs = [p for p in root.glob("*/last.pt")] if root.is_dir() else []
    return max(runs, key=lambda p: p.stat().st_mtime).parent if runs else None
