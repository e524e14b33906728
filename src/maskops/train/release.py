"""From a finished training to a served model: export, parity, int8, card, registry, promotion.

``release`` is the ``on_finish`` step of ``train_task``: it runs while the MLflow run is still
open, so every file it writes is logged to that run.

1. export the best model to ONNX (fp32) with its card (outputs ``logits`` and ``features``);
2. check it against torch on real validation images (``check_parity``; a failure stops here);
3. fit the embedding projection (PCA, ``EMBEDDING_DIMS`` components) on the pooled features of
   every validation crop and record it in the cards;
4. optionally quantize to int8 (calibrated on validation images) and measure the accuracy change
   on every validation and test image;
5. recompute the shipped model's val/test metrics with ONNX Runtime (what serving will see) and
   write them into its card;
6. write the reference profile beside the shipped file (``<model>.reference.json``: the served
   pipeline over the task's val and test images, ``maskops.monitor.profile``) when a task is given;
7. register the shipped file in the MLflow Model Registry (alias ``challenger``) and ask the
   promotion gate to make it ``champion``;
8. optionally copy the shipped model, card and reference profile to ``models/<task>.*``.

Steps 1-6 are ``export_release``, which needs no MLflow: ``release_checkpoint`` runs them again on
a finished run's ``best.pt`` (e.g. to add the embedding to a model exported before it existed)
without retraining and without touching the run folder.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskops.inference.projection import EMBEDDING_DIMS
from maskops.types import ModelSpec

logger = logging.getLogger(__name__)

PARITY_IMAGES = 256
CALIBRATION_IMAGES = 256
WEIGHT_FORMS = ("int8", "fp16", "fp32")


@dataclass
class ReleaseResult:
    """What ``release`` produced and measured.

    Attributes:
        fp32_path: the exported fp32 ONNX file.
        shipped_path: the file registered (the int8 one when quantized).
        parity: ``ParityResult.to_dict()`` of the fp32 export against torch.
        quantization: fp32 vs int8 accuracy on val and test (empty without int8).
        shipped_metrics: ``{"val": ..., "test": ...}`` of the shipped file under ONNX Runtime.
        version: registered model version (None when not registered).
        promotion: the promotion decision as a dict (None when not asked).
        copied_to: ``models/<task>.onnx`` when shipped.
        card: the shipped file's card.
        reference_path: the reference profile beside the shipped file (None when not made).
    """

    fp32_path: Path
    shipped_path: Path
    parity: dict[str, Any]
    quantization: dict[str, Any] = field(default_factory=dict)
    shipped_metrics: dict[str, Any] = field(default_factory=dict)
    version: int | None = None
    promotion: dict[str, Any] | None = None
    copied_to: Path | None = None
    card: ModelSpec | None = None
    reference_path: Path | None = None


def _metrics(path: Path, images: list[np.ndarray], labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    from maskops.evaluate.metrics import classification_metrics, json_safe
    from maskops.inference.classifier import OnnxClassifier

    proba = OnnxClassifier(path).predict_proba(images)
    return json_safe(classification_metrics(labels, proba, classes))


def _embedding(fp32: Path, val_images: list[np.ndarray], spec: ModelSpec, dims: int) -> Any | None:
    """The projection fitted on the val crops' pooled features (None when there are too few)."""
    from maskops.export.embedding import fit_embedding

    manifest = f"manifest {spec.manifest_hash[:12]}" if spec.manifest_hash else "the training manifest"
    try:
        return fit_embedding(
            fp32, val_images, dims=dims, fitted_on=f"val split of {manifest} ({len(val_images)} crops)"
        )
    except ValueError as exc:
        logger.warning("no embedding projection: %s", exc)
        return None


def export_release(
    model: Any,
    spec: ModelSpec,
    out_dir: Path,
    *,
    manifest: Path,
    weights: str = "int8",
    thresholds: dict[str, float] | None = None,
    int8_float_nodes: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
    embedding_dims: int = EMBEDDING_DIMS,
    reference_task: Any | None = None,
) -> ReleaseResult:
    """Steps 1-6 of the module docstring, without MLflow: the files of a release in ``out_dir``.

    Args:
        model: the torch model, in eval mode.
        spec: its card (temperature, metrics, thresholds).
        out_dir: where ``model.onnx`` (and ``model_int8.onnx`` / ``model_fp16.onnx``) are written.
        manifest: the data manifest (val images: parity, projection, calibration; val/test: metrics).
        weights, thresholds, int8_float_nodes: as in ``release``.
        extra: more fields for the shipped card's ``extra``.
        embedding_dims: components of the embedding projection.
        reference_task: the ``TaskConfig`` whose val/test images make the reference profile
            (None: no profile).

    Raises:
        ParityError: the ONNX export disagrees with torch beyond 1e-4 or on any argmax.
        ValueError: an unknown ``weights`` form.
    """
    from maskops.data.manifest import read_manifest, row_source
    from maskops.data.samples import split_sample
    from maskops.export.embedding import record_projection
    from maskops.export.onnx import check_parity, export_onnx
    from maskops.export.quantize import (
        calibration_sample,
        compare_accuracy,
        compress_fp16,
        quantize_int8,
    )

    if weights not in WEIGHT_FORMS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_FORMS)}, got {weights!r}")
    classes = list(spec.class_names)
    out_dir = Path(out_dir)

    fp32 = export_onnx(model, spec, out_dir / "model.onnx")
    val_images, val_labels = split_sample(manifest, classes, "val")
    test_images, test_labels = split_sample(manifest, classes, "test")
    parity = check_parity(model, fp32, val_images[:PARITY_IMAGES], spec).to_dict()
    logger.info("parity on %d val images: max |diff| %.2e", parity["n"], parity["max_abs_diff"])
    projection = _embedding(fp32, val_images, spec, embedding_dims)
    if projection is not None:
        record_projection(projection, fp32)

    shipped = fp32
    quant: dict[str, Any] = {}
    if weights != "fp32":
        if weights == "int8":
            shipped = quantize_int8(
                fp32,
                out_dir / "model_int8.onnx",
                calibration_sample(val_images, CALIBRATION_IMAGES),
                spec,
                float_nodes=int8_float_nodes,
            )
        else:
            shipped = compress_fp16(fp32, out_dir / "model_fp16.onnx", spec)
        if projection is not None:
            record_projection(projection, shipped)
        quant = {
            "val": compare_accuracy(fp32, shipped, val_images, val_labels, label=weights),
            "test": compare_accuracy(fp32, shipped, test_images, test_labels, label=weights),
        }
    shipped_metrics = {
        "val": _metrics(shipped, val_images, val_labels, classes),
        "test": _metrics(shipped, test_images, test_labels, classes),
    }
    # a task with several evaluation sources (facemask-voc, facemask-ilc2021) is reported on each alone too
    sources = sorted({row_source(r) for r in read_manifest(manifest) if r.split == "test"})
    if len(sources) > 1:
        for name in sources:
            images, labels = split_sample(manifest, classes, "test", source=name)
            shipped_metrics[f"test/{name}"] = _metrics(shipped, images, labels, classes)
    card = ModelSpec.load(ModelSpec.card_path(shipped))
    card.metrics = shipped_metrics
    card.thresholds = {**(thresholds or {}), **card.thresholds}
    card.extra = {
        **card.extra,
        "parity": parity,
        "torch_metrics": spec.metrics,
        **({f"{weights}_accuracy_change": quant} if quant else {}),
        **(extra or {}),
    }
    card.save(ModelSpec.card_path(shipped))
    out = ReleaseResult(fp32, shipped, parity, quant, shipped_metrics, card=card)
    if reference_task is not None:
        from maskops.monitor.profile import write_model_reference

        out.reference_path, _ = write_model_reference(reference_task, shipped, manifest=manifest)
    return out


def release(
    result: Any,
    model: Any,
    *,
    manifest: Path,
    weights: str = "int8",
    register: bool = True,
    promote: bool = True,
    tolerance: float = 0.02,
    ship_dir: Path | None = None,
    thresholds: dict[str, float] | None = None,
    tracking_uri: str | None = None,
    int8_float_nodes: Sequence[str] = (),
    reference_task: Any | None = None,
) -> ReleaseResult:
    """Export, check, quantize, register and promote the best model of a training run.

    Args:
        result: the ``TrainResult`` (its ``spec`` carries temperature and metrics).
        model: the best torch model, in eval mode.
        manifest: the data manifest the model was trained on (val/test images).
        weights: the form shipped: ``int8`` (static quantization calibrated on val), ``fp16`` (weights
            stored in half precision, computed in float32) or ``fp32``; the fp32 file is kept.
        register: register the shipped file in the MLflow Model Registry as ``challenger``.
        promote: run the promotion gate right after registering.
        tolerance: largest allowed drop of a class recall for promotion.
        ship_dir: when set, copy the shipped model and card (and reference profile) to
            ``<ship_dir>/<task>.onnx``.
        thresholds: decision thresholds written into the card (e.g. the face pipeline's
            ``min_confidence``, ``min_face_px``); the card's own values win.
        tracking_uri: MLflow store (default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``).
        int8_float_nodes: node-name patterns kept in float by ``weights="int8"``
            (``quantize_int8(float_nodes=...)``).
        reference_task: the ``TaskConfig`` whose val and test images make the reference profile
            written beside the shipped file (None: none, e.g. for tiny test runs).

    Raises:
        ParityError: the ONNX export disagrees with torch beyond 1e-4 or on any argmax.
    """
    import mlflow

    spec: ModelSpec = result.spec
    client = mlflow.MlflowClient(tracking_uri=_uri(tracking_uri))
    out = export_release(
        model,
        spec,
        Path(result.out_dir),
        manifest=manifest,
        weights=weights,
        thresholds=thresholds,
        int8_float_nodes=int8_float_nodes,
        extra={"mlflow_run_id": result.run_id, "train_seconds": round(float(result.seconds), 1)},
        reference_task=reference_task,
    )
    fp32, shipped, parity, quant, shipped_metrics = (
        out.fp32_path,
        out.shipped_path,
        out.parity,
        out.quantization,
        out.shipped_metrics,
    )
    card = out.card
    assert card is not None

    for path in {fp32, shipped}:
        client.log_artifact(result.run_id, str(path), "onnx")
        client.log_artifact(result.run_id, str(ModelSpec.card_path(path)), "onnx")
    if out.reference_path is not None:
        client.log_artifact(result.run_id, str(out.reference_path), "onnx")
    flat = {
        "parity_max_abs_diff": parity["max_abs_diff"],
        "shipped_test_accuracy": shipped_metrics["test"]["accuracy"],
        "shipped_test_macro_f1": shipped_metrics["test"]["macro_f1"],
    }
    if quant:
        flat[f"{weights}_test_accuracy_change"] = quant["test"]["accuracy_change"]
        flat[f"{weights}_val_accuracy_change"] = quant["val"]["accuracy_change"]
    for key, value in flat.items():
        client.log_metric(result.run_id, key, float(value))

    if register:
        from maskops import registry

        out.version = registry.register_onnx_model(
            result.run_id, shipped, spec.task, card, tracking_uri=tracking_uri
        )
        if promote:
            decision = registry.promote(spec.task, tolerance=tolerance, tracking_uri=tracking_uri)
            out.promotion = {
                "promoted": decision.promoted,
                "reasons": list(decision.reasons),
                "challenger": decision.challenger_version,
                "champion": decision.champion_version,
            }
    if ship_dir is not None:
        ship_dir = Path(ship_dir)
        ship_dir.mkdir(parents=True, exist_ok=True)
        target = ship_dir / f"{spec.task}.onnx"
        shutil.copyfile(shipped, target)
        card.save(ModelSpec.card_path(target))
        if out.reference_path is not None:
            from maskops.monitor.profile import reference_path

            shutil.copyfile(out.reference_path, reference_path(target))
        out.copied_to = target
    return out


def release_checkpoint(
    checkpoint: Path,
    out_dir: Path,
    *,
    manifest: Path | None = None,
    weights: str = "int8",
    int8_float_nodes: Sequence[str] | None = None,
    thresholds: dict[str, float] | None = None,
    reference_task: Any | None = None,
) -> ReleaseResult:
    """``export_release`` of a finished run's checkpoint into ``out_dir`` (no training, no MLflow).

    The run's ``config.yaml`` beside the checkpoint gives the manifest and the int8 float nodes
    unless they are passed; its ``mlflow_run_id`` goes into the card. Nothing is written beside the
    checkpoint.

    Args:
        checkpoint: the run's ``best.pt`` (calibrated: its card carries the temperature and metrics).
        out_dir: a new folder for the files (must not be the run folder).
        manifest / weights / int8_float_nodes / thresholds / reference_task: as in ``export_release``.

    Raises:
        ValueError: ``out_dir`` is the run folder, or no manifest is given or recorded.
        CheckpointError: the checkpoint cannot be read.
    """
    import yaml

    from maskops.train.checkpoint import load_model

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    run_dir = checkpoint.parent
    if out_dir.resolve() == run_dir.resolve():
        raise ValueError(
            f"out_dir must not be the run folder {run_dir}: the run's own files stay as they are"
        )
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    manifest = manifest or (Path(config["manifest"]) if config.get("manifest") else None)
    if manifest is None:
        raise ValueError(f"no manifest given and none recorded in {config_path}")
    if int8_float_nodes is None:
        int8_float_nodes = list((config.get("train") or {}).get("int8_float_nodes") or [])
    model, spec = load_model(checkpoint)
    run_id_file = run_dir / "mlflow_run_id"
    extra: dict[str, Any] = {"released_from": str(checkpoint)}
    if run_id_file.is_file():
        extra["mlflow_run_id"] = run_id_file.read_text().strip()
    return export_release(
        model,
        spec,
        out_dir,
        manifest=manifest,
        weights=weights,
        thresholds=thresholds,
        int8_float_nodes=int8_float_nodes,
        extra=extra,
        reference_task=reference_task,
    )


def _uri(tracking_uri: str | None) -> str:
    from maskops.train.tracking import resolve_tracking_uri

    return resolve_tracking_uri(tracking_uri)
