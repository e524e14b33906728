"""Evaluate an exported classifier on a manifest split: decode, predict, slice, report.

This is the library side of ``maskops evaluate``; the command only parses options and prints the
summary. Manifest rows follow the data stage's contract: ``.path`` (absolute image file; for facemask the
face crop, already with its margin), ``.label`` (task class name), ``.split`` and ``.box``
(``"x1,y1,x2,y2"`` of the face in its source image, or ``""``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskops.data.manifest import row_source
from maskops.data.progress import progress_bar, progress_enabled
from maskops.evaluate.calibration import fit_temperature, softmax
from maskops.evaluate.report import (
    ClassificationReport,
    brightness_bucket,
    build_classification_report,
    size_bucket,
)

logger = logging.getLogger(__name__)

__all__ = ["EvaluationError", "EvaluationRun", "box_wh", "evaluate_classifier", "predict_rows", "row_source"]


class EvaluationError(ValueError):
    """The inputs of an evaluation do not fit together (task, split, labels, manifest)."""


@dataclass
class EvaluationRun:
    """What ``evaluate_classifier`` produced.

    Attributes:
        report: the classification report.
        paths: written files by name (empty when nothing was written).
        skipped: ``(path, reason)`` of rows whose image could not be decoded.
        temperature: the temperature applied to the calibrated probabilities.
        temperature_source: ``"card"`` or ``"fitted on <split>"``.
        y_true: (k,) true class ids of the evaluated (decoded) rows.
        y_prob: (k, C) their calibrated probabilities.
        face_side: (k,) shorter side of each row's ``box`` in pixels (``nan`` where the row has none).
        source: (k,) data source of each row (the manifest's ``source`` up to its first ``:``; ``""``
            where the manifest has no such column).
    """

    report: ClassificationReport
    paths: dict[str, Path] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    temperature: float = 1.0
    temperature_source: str = "card"
    y_true: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    y_prob: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float64))
    face_side: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))


def _chunks(n: int, size: int, description: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` chunks of ``range(n)`` with a rich progress bar in images on stderr.

    The bar is off when ``MASKOPS_NO_PROGRESS`` is set.
    """
    spans = [(s, min(s + size, n)) for s in range(0, n, size)]
    if not (spans and progress_enabled()):
        yield from spans
        return
    with progress_bar() as bar:
        task = bar.add_task(description, total=n)
        for start, end in spans:
            yield start, end
            bar.advance(task, end - start)


def _read_manifest(path: Path) -> list[Any]:
    from maskops.data.manifest import read_manifest

    return list(read_manifest(path))


def box_wh(box: str, *, where: str = "") -> tuple[float, float] | None:
    """Width and height of a manifest ``box`` field ``"x1,y1,x2,y2"``; ``None`` for ``""``.

    Raises:
        EvaluationError: the field is not four numbers with ``x1 <= x2`` and ``y1 <= y2``.
    """
    text = (box or "").strip()
    if not text:
        return None
    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise EvaluationError(f"{where}field 'box' must be 'x1,y1,x2,y2', got {box!r}") from exc
    if x2 < x1 or y2 < y1:
        raise EvaluationError(f"{where}field 'box' must have x1 <= x2 and y1 <= y2, got {box!r}")
    return x2 - x1, y2 - y1


def predict_rows(
    clf: Any,
    rows: Sequence[Any],
    *,
    batch_size: int = 64,
    chunk: int = 128,
    description: str = "evaluating",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Decode each row's image and compute raw logits, chunk by chunk (bounded memory).

    Args:
        clf: an ``OnnxClassifier`` (``predict_logits(images, batch_size)``).
        rows: manifest rows.
        batch_size: images per ONNX Runtime call.
        chunk: images decoded at a time.
        description: progress bar label.

    Returns:
        ``(logits, kept, brightness, skipped)``: (k, C) float32 logits, the (k,) indices of the decoded rows,
        their (k,) brightness buckets, and ``(path, reason)`` for the rows that were skipped.
    """
    import cv2

    logits: list[np.ndarray] = []
    kept: list[int] = []
    bright: list[np.ndarray] = []
    skipped: list[tuple[str, str]] = []
    for start, end in _chunks(len(rows), chunk, description):
        images, idx = [], []
        for i in range(start, end):
            path = str(rows[i].path)
            img = cv2.imread(path, cv2.IMREAD_COLOR)
            if img is None or img.size == 0:
                reason = "file not found" if not Path(path).is_file() else "not a decodable image"
                logger.warning("skipping %s: %s", path, reason)
                skipped.append((path, reason))
                continue
            images.append(img)
            idx.append(i)
        if images:
            logits.append(np.asarray(clf.predict_logits(images, batch_size=batch_size), np.float32))
            bright.append(brightness_bucket(images))
            kept.extend(idx)
    num_classes = len(clf.spec.class_names)
    return (
        np.concatenate(logits) if logits else np.zeros((0, num_classes), np.float32),
        np.asarray(kept, np.int64),
        np.concatenate(bright) if bright else np.zeros(0, dtype=object),
        skipped,
    )


def _split_rows(rows: Sequence[Any], split: str, manifest: Path) -> list[Any]:
    selected = [r for r in rows if r.split == split]
    if not selected:
        present = sorted({str(r.split) for r in rows})
        raise EvaluationError(
            f"{manifest}: no rows in split {split!r}; splits present: {', '.join(present) or 'none'}"
        )
    return selected


def _label_ids(rows: Sequence[Any], class_names: Sequence[str], manifest: Path) -> np.ndarray:
    index = {c: i for i, c in enumerate(class_names)}
    bad = sorted({str(r.label) for r in rows} - set(index))
    if bad:
        raise EvaluationError(
            f"{manifest}: field 'label' holds {bad}, which the model does not know; model classes: "
            f"{list(class_names)}"
        )
    return np.asarray([index[r.label] for r in rows], np.int64)


def evaluate_classifier(
    model_path: str | Path,
    manifest_path: str | Path,
    *,
    task: str,
    split: str = "test",
    out_dir: str | Path | None = None,
    fit_temperature_on: str | None = None,
    batch_size: int = 64,
    classifier_factory: Callable[[Path], Any] | None = None,
) -> EvaluationRun:
    """Evaluate an ONNX classifier (with its card) on one split of a manifest and write the report.

    Args:
        model_path: the ``.onnx`` file; its ``ModelSpec`` card is beside it.
        manifest_path: the prepared manifest (CSV) of ``task``.
        task: the task name; must match the card's task.
        split: the split to evaluate.
        out_dir: where to write the report (nothing is written when ``None``).
        fit_temperature_on: fit the temperature on this split (e.g. ``"val"``) instead of using the card's.
        batch_size: images per ONNX Runtime call.
        classifier_factory: builds the classifier from the path (default ``OnnxClassifier``).

    Returns:
        An ``EvaluationRun``. Calibrated probabilities use the card's (or the fitted) temperature; the
        uncalibrated ones use T = 1.

    Raises:
        EvaluationError: task mismatch, empty split, unknown labels, bad box fields, or no decodable image.
        FileNotFoundError: the manifest does not exist.
    """
    model_path = Path(model_path)
    manifest_path = Path(manifest_path)
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"manifest not found: {manifest_path} (run `maskops data prepare --task {task}` first)"
        )
    if classifier_factory is None:
        from maskops.inference.classifier import OnnxClassifier

        classifier_factory = OnnxClassifier
    clf = classifier_factory(model_path)
    spec = clf.spec
    if spec.task != task:
        raise EvaluationError(f"{model_path}: the model card is for task {spec.task!r}, not {task!r}")
    names = list(spec.class_names)
    all_rows = _read_manifest(manifest_path)
    rows = _split_rows(all_rows, split, manifest_path)
    labels = _label_ids(rows, names, manifest_path)
    wh = [box_wh(getattr(r, "box", ""), where=f"{manifest_path}: row {r.path}: ") for r in rows]

    temperature, source = float(spec.temperature), "card"
    if fit_temperature_on:
        cal_rows = _split_rows(all_rows, fit_temperature_on, manifest_path)
        cal_labels = _label_ids(cal_rows, names, manifest_path)
        cal_logits, cal_kept, _, _ = predict_rows(
            clf, cal_rows, batch_size=batch_size, description=f"calibrating on {fit_temperature_on}"
        )
        temperature = fit_temperature(cal_logits, cal_labels[cal_kept])
        source = f"fitted on {fit_temperature_on}"
        logger.info("temperature %.3f fitted on %d %s images", temperature, len(cal_kept), fit_temperature_on)

    logits, kept, brightness, skipped = predict_rows(
        clf, rows, batch_size=batch_size, description=f"evaluating {split}"
    )
    if kept.size == 0:
        raise EvaluationError(f"{manifest_path}: none of the {len(rows)} {split!r} images could be decoded")
    y = labels[kept]
    slices: dict[str, np.ndarray] = {"brightness": brightness}
    kept_wh = [wh[i] for i in kept]
    if any(v is not None for v in kept_wh):
        sizes = np.asarray(["unknown"] * len(kept_wh), dtype=object)
        known = [i for i, v in enumerate(kept_wh) if v is not None]
        sizes[known] = size_bucket(np.asarray([kept_wh[i] for i in known], np.float64))
        slices = {"size": sizes, **slices}
    sources = np.asarray([row_source(rows[i]) for i in kept], dtype=object)
    if len(set(sources.tolist())) > 1:
        slices = {"source": sources, **slices}
    info = {
        "task": task,
        "model": str(model_path),
        "manifest": str(manifest_path),
        "split": split,
        "temperature": round(temperature, 4),
        "temperature_source": source,
        "skipped_images": len(skipped),
    }
    probs = softmax(logits, temperature)
    report = build_classification_report(
        y,
        probs,
        names,
        slices=slices,
        probs_uncalibrated=softmax(logits),
        info=info,
        sample_names=[str(rows[i].path) for i in kept],
    )
    side = np.asarray([np.nan if v is None else min(v) for v in kept_wh], np.float64)
    run = EvaluationRun(
        report=report,
        skipped=skipped,
        temperature=temperature,
        temperature_source=source,
        y_true=y,
        y_prob=np.asarray(probs, np.float64),
        face_side=side,
        source=sources,
    )
    if out_dir is not None:
        from maskops.evaluate.report import write_report

        run.paths = write_report(report, out_dir)
        if skipped:
            skipped_path = Path(out_dir) / "skipped.txt"
            skipped_path.write_text("".join(f"{p}\t{r}\n" for p, r in skipped), encoding="utf-8")
            run.paths["skipped"] = skipped_path
    return run
