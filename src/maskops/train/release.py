"""From a finished training to a served model: export, parity, int8, card, registry, promotion.

``release`` is the ``on_finish`` step of ``train_task``: it runs while the MLflow run is still
open, so every file it writes is logged to that run.

1. export the best model to ONNX (fp32) with its card;
2. check it against torch on real validation images (``check_parity``; a failure stops here);
3. optionally quantize to int8 (calibrated on validation images) and measure the accuracy change
   on every validation and test image;
4. recompute the shipped model's val/test metrics with ONNX Runtime (what serving will see) and
   write them into its card;
5. register the shipped file in the MLflow Model Registry (alias ``challenger``) and ask the
   promotion gate to make it ``champion``;
6. optionally copy the shipped model and card to ``models/<task>.onnx``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
    """

    fp32_path: Path
    shipped_path: Path
    parity: dict[str, Any]
    quantization: dict[str, Any] = field(default_factory=dict)
    shipped_metrics: dict[str, Any] = field(default_factory=dict)
    version: int | None = None
    promotion: dict[str, Any] | None = None
    copied_to: Path | None = None


def _metrics(path: Path, images: list[np.ndarray], labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    from maskops.evaluate.metrics import classification_metrics, json_safe
    from maskops.inference.classifier import OnnxClassifier

    proba = OnnxClassifier(path).predict_proba(images)
    return json_safe(classification_metrics(labels, proba, classes))


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
        ship_dir: when set, copy the shipped model and card to ``<ship_dir>/<task>.onnx``.
        thresholds: decision thresholds written into the card (e.g. the face pipeline's
            ``min_confidence``, ``min_face_px``); the card's own values win.
        tracking_uri: MLflow store (default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``).
        int8_float_nodes: node-name patterns kept in float by ``weights="int8"``
            (``quantize_int8(float_nodes=...)``).

    Raises:
        ParityError: the ONNX export disagrees with torch beyond 1e-4 or on any argmax.
    """
    import mlflow

    from maskops.data.manifest import read_manifest, row_source
    from maskops.data.samples import split_sample
    from maskops.export.onnx import check_parity, export_onnx
    from maskops.export.quantize import (
        calibration_sample,
        compare_accuracy,
        compress_fp16,
        quantize_int8,
    )

    if weights not in WEIGHT_FORMS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_FORMS)}, got {weights!r}")

    spec: ModelSpec = result.spec
    classes = list(spec.class_names)
    out_dir = Path(result.out_dir)
    client = mlflow.MlflowClient(tracking_uri=_uri(tracking_uri))

    fp32 = export_onnx(model, spec, out_dir / "model.onnx")
    val_images, val_labels = split_sample(manifest, classes, "val")
    test_images, test_labels = split_sample(manifest, classes, "test")
    parity = check_parity(model, fp32, val_images[:PARITY_IMAGES], spec).to_dict()
    logger.info("parity on %d val images: max |diff| %.2e", parity["n"], parity["max_abs_diff"])

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
        "mlflow_run_id": result.run_id,
        "train_seconds": round(float(result.seconds), 1),
    }
    card.save(ModelSpec.card_path(shipped))

    for path in {fp32, shipped}:
        client.log_artifact(result.run_id, str(path), "onnx")
        client.log_artifact(result.run_id, str(ModelSpec.card_path(path)), "onnx")
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

    out = ReleaseResult(fp32, shipped, parity, quant, shipped_metrics)
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
        out.copied_to = target
    return out


def _uri(tracking_uri: str | None) -> str:
    from maskops.train.tracking import resolve_tracking_uri

    return resolve_tracking_uri(tracking_uri)
