"""Detection evaluation on a Pascal VOC split: detect -> classify -> VOC AP per class, mAP, face recall.

This is the library side of ``maskops evaluate --detection``. Ground truth comes from each image's xml;
the image list of a split from the dataset's ``splits.json`` (``{"train": [stem, ...], ...}``).

Scoring (documented once, used by every caller):
    A prediction is a face box with a face score ``f`` (from the detector) and class probabilities
    ``p`` (from the classifier). For AP every face is scored, including faces the product would call
    ``uncertain`` (their argmax class is used), because AP ranks predictions and a threshold before
    ranking can only lose recall. The ranking score is chosen by ``scoring``:

    * ``face_x_class`` (default): ``f * p[c]``, the joint "is a face and is of class c" confidence;
    * ``class``: ``p[c]`` only; ``face``: ``f`` only; ``sqrt``: ``sqrt(f * p[c])`` (same order as
      ``face_x_class`` within one class, kept for reporting calibrated-looking scores).

    With ``multi_label=False`` (default) each face is one prediction of its argmax class. With
    ``multi_label=True`` each face is a prediction of *every* class with that class's score (what
    YOLO-style validators do); it can only add lower-ranked predictions, so it never lowers recall.
    The choice is measured on ``val`` (bench/detection_map.py) and reported there.

Face-detector recall is class-agnostic (any predicted box, IoU >= 0.5, greedy by face score) and broken
down by the shorter side of the ground-truth box.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from maskops.detect.base import DEFAULT_DETECTOR
from maskops.evaluate.detection import DetectionEvaluation, box_iou, evaluate_detections, match_detections
from maskops.types import Detections

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_DETECTOR",
    "EVAL_FACE_SCORE",
    "SCORINGS",
    "SIZE_EDGES",
    "DetectionDataError",
    "DetectionRun",
    "FacePrediction",
    "Scored",
    "VocImage",
    "build_face_detector",
    "evaluate_detection",
    "evaluate_task_detection",
    "face_recall_by_size",
    "load_voc_split",
    "oracle_labels",
    "relabel_oracle",
    "score_faces",
    "score_run",
    "select_voc_sources",
    "write_detection_run",
]

SCORINGS: tuple[str, ...] = ("face_x_class", "class", "face", "sqrt")
SIZE_EDGES: tuple[float, ...] = (16.0, 32.0, 64.0)


class DetectionDataError(ValueError):
    """A VOC split that cannot be evaluated: missing splits file, split, image or xml, unknown label."""


class FacePrediction(Protocol):
    """What a predictor returns for one image (``FaceMaskPipeline``'s ``FaceResult`` fits).

    Attributes:
        detections: the face boxes; ``face_score`` (or, when absent, ``confidence``) is the face score.
        probs: (n, C) class probabilities of each face.
    """

    @property
    def detections(self) -> Detections: ...

    @property
    def probs(self) -> np.ndarray: ...


@dataclass
class Scored:
    """A plain ``FacePrediction``: boxes and class probabilities."""

    detections: Detections
    probs: np.ndarray


Predictor = Callable[[np.ndarray], FacePrediction]


@dataclass(frozen=True)
class VocImage:
    """One evaluation image: its files and its ground truth (``confidence`` 1, ``class_id`` per box)."""

    stem: str
    image_path: Path
    xml_path: Path
    gt: Detections
    width: int
    height: int


def _read_splits(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        raise DetectionDataError(f"splits file not found: {path} (expected a JSON object of split -> stems)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DetectionDataError(f"{path}: not a readable JSON splits file: {exc}") from exc
    if not isinstance(data, dict):
        raise DetectionDataError(f"{path}: expected a JSON object of split -> list of image stems")
    return {k: v for k, v in data.items() if isinstance(v, list)}


def load_voc_split(
    root: str | Path,
    split: str,
    class_names: Sequence[str],
    *,
    splits_file: str | Path = "splits.json",
    label_map: Mapping[str, str] | None = None,
    limit: int | None = None,
) -> list[VocImage]:
    """The images of one split of a VOC dataset with their ground-truth boxes.

    Args:
        root: the dataset folder (``images/`` and ``annotations/``, or ``JPEGImages``/``Annotations``).
        split: ``train``, ``val`` or ``test`` (any list in the splits file).
        class_names: task classes; an object's name (after ``label_map``) must be one of them.
        splits_file: the splits JSON, relative to ``root`` unless absolute.
        label_map: raw VOC name -> task class.
        limit: keep only the first ``limit`` images (in the file's order), for quick runs.

    Returns:
        One ``VocImage`` per stem of the split, in the file's order.

    Raises:
        DetectionDataError: missing splits file or split, a stem without image or xml, a malformed xml,
            or an object whose name is not a task class (each message names the file and field).
    """
    from maskops.data.sources import VocParseError, parse_voc, voc_items

    root = Path(root)
    if not root.is_dir():
        raise DetectionDataError(f"VOC dataset folder not found: {root}")
    spath = Path(splits_file)
    spath = spath if spath.is_absolute() else root / spath
    splits = _read_splits(spath)
    if split not in splits:
        raise DetectionDataError(
            f"{spath}: no split {split!r}; splits present: {', '.join(sorted(splits)) or 'none'}"
        )
    stems = [str(s) for s in splits[split]][: limit if limit else None]
    items = {it.stem: it for it in voc_items(root)}
    index = {c: i for i, c in enumerate(class_names)}
    mapping = dict(label_map or {})
    out: list[VocImage] = []
    for stem in stems:
        item = items.get(stem)
        if item is None or item.xml is None:
            raise DetectionDataError(f"{spath}: split {split!r} names {stem!r} but {root} has no xml for it")
        if item.image is None:
            raise DetectionDataError(
                f"{item.xml}: split {split!r} image {stem!r} has no image file in {root}"
            )
        try:
            ann = parse_voc(item.xml)
        except VocParseError as exc:
            raise DetectionDataError(str(exc)) from exc
        boxes, ids = [], []
        for k, obj in enumerate(ann.objects):
            name = mapping.get(obj.name, obj.name)
            if name not in index:
                raise DetectionDataError(
                    f"{item.xml}: <object> #{k} <name> is {obj.name!r}; expected one of {list(class_names)}"
                    + (" (after label_map)" if mapping else "")
                )
            boxes.append([obj.xmin, obj.ymin, max(obj.xmax, obj.xmin), max(obj.ymax, obj.ymin)])
            ids.append(index[name])
        gt = Detections.from_lists(boxes, ids) if boxes else Detections.empty()
        out.append(VocImage(stem, item.image, item.xml, gt, ann.width, ann.height))
    if not out:
        raise DetectionDataError(f"{spath}: split {split!r} is empty")
    return out


def _face_scores(det: Detections) -> np.ndarray:
    return (det.face_score if det.face_score is not None else det.confidence).astype(np.float64)


def score_faces(
    pred: FacePrediction, *, scoring: str = "face_x_class", multi_label: bool = False
) -> Detections:
    """Turn faces with class probabilities into ranked class predictions for AP (see module docs).

    Args:
        pred: faces (with face scores) and their (n, C) class probabilities.
        scoring: one of ``SCORINGS``.
        multi_label: one prediction per face and class instead of per face.

    Returns:
        ``Detections`` with ``class_id`` >= 0 and ``confidence`` = the ranking score.

    Raises:
        ValueError: unknown ``scoring`` or ``probs`` of the wrong shape.
    """
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; valid: {', '.join(SCORINGS)}")
    det = pred.detections
    n = len(det)
    probs = np.asarray(pred.probs, np.float64)
    if probs.ndim != 2 or probs.shape[0] != n:
        raise ValueError(f"probs must have shape ({n}, C), got {probs.shape}")
    if n == 0:
        return Detections.empty(with_face_score=True)
    f = _face_scores(det)
    if multi_label:
        k = probs.shape[1]
        rows = np.repeat(np.arange(n), k)
        cls = np.tile(np.arange(k), n)
    else:
        rows = np.arange(n)
        cls = probs.argmax(1)
    p = probs[rows, cls]
    fr = f[rows]
    score = {"face_x_class": fr * p, "class": p, "face": fr, "sqrt": np.sqrt(np.clip(fr * p, 0, None))}[
        scoring
    ]
    return Detections(
        xyxy=det.xyxy[rows],
        confidence=score.astype(np.float32),
        class_id=cls,
        face_score=fr.astype(np.float32),
    )


def oracle_labels(faces: Detections, gt: Detections, num_classes: int) -> Scored:
    """Detector-only evaluation: give each face the one-hot class of its best-overlapping true box.

    Faces overlapping no true box get class 0 (they are false positives whatever their class).
    """
    probs = np.zeros((len(faces), num_classes), np.float32)
    if len(faces):
        if len(gt):
            iou = box_iou(faces, gt)
            best = iou.argmax(1)
            cls = np.where(iou.max(1) > 0, gt.class_id[best], 0)
        else:
            cls = np.zeros(len(faces), np.int64)
        probs[np.arange(len(faces)), cls] = 1.0
    return Scored(faces, probs)


def face_recall_by_size(
    faces: Sequence[Detections],
    gts: Sequence[Detections],
    *,
    iou_threshold: float = 0.5,
    edges: Sequence[float] = SIZE_EDGES,
) -> dict[str, dict[str, float | int]]:
    """Class-agnostic recall of true faces by size (shorter side of the true box, in pixels).

    Returns:
        ``{bucket: {"n", "found", "recall"}}`` for buckets ``<e0px``, ``e0-e1px``, …, ``>=ekpx``, plus
        ``"all"``; recall is ``nan`` for an empty bucket.
    """
    lo = [f"<{edges[0]:g}px"]
    mid = [f"{a:g}-{b:g}px" for a, b in itertools.pairwise(edges)]
    labels = [*lo, *mid, f">={edges[-1]:g}px"]
    n = np.zeros(len(labels), np.int64)
    found = np.zeros(len(labels), np.int64)
    for f, g in zip(faces, gts, strict=True):
        if not len(g):
            continue
        side = np.minimum(g.xyxy[:, 2] - g.xyxy[:, 0], g.xyxy[:, 3] - g.xyxy[:, 1])
        bucket = np.digitize(side, list(edges))
        hit = match_detections(
            f.replace(class_id=np.zeros(len(f), np.int64)) if len(f) else f,
            g,
            iou_threshold,
            class_aware=False,
        ).gt_matched
        n += np.bincount(bucket, minlength=len(labels))
        found += np.bincount(bucket, weights=hit.astype(np.float64), minlength=len(labels)).astype(np.int64)
    out: dict[str, dict[str, float | int]] = {}
    for i, lab in enumerate(labels):
        out[lab] = {
            "n": int(n[i]),
            "found": int(found[i]),
            "recall": float(found[i] / n[i]) if n[i] else float("nan"),
        }
    total = int(n.sum())
    out["all"] = {
        "n": total,
        "found": int(found.sum()),
        "recall": float(found.sum() / total) if total else float("nan"),
    }
    return out


@dataclass
class DetectionRun:
    """What ``evaluate_detection`` produced.

    Attributes:
        evaluation: AP per class and threshold, mAP@0.5, mAP@0.5:0.95, PR curves at IoU 0.5.
        face_recall: class-agnostic face recall by size bucket (IoU 0.5).
        ms_per_image: mean wall time of ``predict`` per image (decode excluded).
        ms_median: median of the same.
        stage_ms: mean wall time per stage when the predictions report ``timings_ms`` (detect, classify).
        predictions: the raw predictions per image (for rescoring without re-running).
        gts: ground truth per image.
        info: context (dataset, split, detector, model, scoring …).
        paths: written files by name.
    """

    evaluation: DetectionEvaluation
    face_recall: dict[str, dict[str, float | int]]
    ms_per_image: float
    ms_median: float
    stage_ms: dict[str, float] = field(default_factory=dict)
    predictions: list[FacePrediction] = field(default_factory=list)
    gts: list[Detections] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def map50(self) -> float:
        return self.evaluation.map50

    @property
    def map50_95(self) -> float:
        return self.evaluation.map50_95

    def to_dict(self) -> dict[str, Any]:
        return {
            "info": self.info,
            **self.evaluation.to_dict(),
            "face_recall": self.face_recall,
            "ms_per_image": self.ms_per_image,
            "ms_median": self.ms_median,
            "stage_ms": self.stage_ms,
        }


def _progress(n: int, description: str) -> Iterator[int]:
    if os.environ.get("MASKOPS_NO_PROGRESS") or n == 0:
        yield from range(n)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=n)
        for i in range(n):
            yield i
            bar.advance(task)


def evaluate_detection(
    predict: Predictor,
    items: Sequence[VocImage],
    class_names: Sequence[str],
    *,
    scoring: str = "face_x_class",
    multi_label: bool = False,
    out_dir: str | Path | None = None,
    info: Mapping[str, Any] | None = None,
    progress: bool = True,
    read_image: Callable[[Path], np.ndarray] | None = None,
) -> DetectionRun:
    """Run ``predict`` on every image and compute VOC AP per class, mAP and face recall by size.

    Args:
        predict: image (BGR uint8) -> ``FacePrediction`` (boxes with face scores, class probabilities).
        items: the images with ground truth (``load_voc_split``).
        class_names: C classes, in the order of ``probs`` columns and ground-truth ids.
        scoring: ranking score (see the module docs and ``SCORINGS``).
        multi_label: one prediction per face and class.
        out_dir: when given, write ``report.md``, ``report.json`` and PNG curves there.
        info: context copied into the report.
        progress: show a progress bar on stderr (also off with ``MASKOPS_NO_PROGRESS``).
        read_image: path -> BGR image (default ``maskops.data.images.read_bgr``).

    Returns:
        A ``DetectionRun``.

    Raises:
        DetectionDataError: an image cannot be decoded (the message names it).
        ValueError: ``predict`` returned probabilities of the wrong shape, or a bad ``scoring``.
    """
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; valid: {', '.join(SCORINGS)}")
    if read_image is None:
        from maskops.data.images import read_bgr

        read_image = read_bgr
    preds: list[FacePrediction] = []
    times: list[float] = []
    stages: dict[str, list[float]] = {}
    steps = _progress(len(items), "detecting") if progress else iter(range(len(items)))
    for i in steps:
        item = items[i]
        try:
            image = read_image(item.image_path)
        except ValueError as exc:
            raise DetectionDataError(f"{item.image_path}: cannot decode image: {exc}") from exc
        t0 = time.perf_counter()
        pred = predict(image)
        times.append((time.perf_counter() - t0) * 1000.0)
        for stage, ms in (getattr(pred, "timings_ms", None) or {}).items():
            stages.setdefault(stage, []).append(float(ms))
        probs = np.asarray(pred.probs)
        if probs.ndim != 2 or probs.shape != (len(pred.detections), len(class_names)):
            raise ValueError(
                f"predict returned probs of shape {probs.shape} for {len(pred.detections)} faces and "
                f"{len(class_names)} classes on {item.image_path}"
            )
        preds.append(pred)
    run = score_run(preds, [it.gt for it in items], class_names, scoring=scoring, multi_label=multi_label)
    run.ms_per_image = float(np.mean(times)) if times else 0.0
    run.ms_median = float(np.median(times)) if times else 0.0
    run.stage_ms = {k: float(np.mean(v)) for k, v in stages.items()}
    run.info = {**dict(info or {}), "scoring": scoring, "multi_label": multi_label}
    if out_dir is not None:
        run.paths = write_detection_run(run, out_dir)
    return run


def score_run(
    preds: Sequence[FacePrediction],
    gts: Sequence[Detections],
    class_names: Sequence[str],
    *,
    scoring: str = "face_x_class",
    multi_label: bool = False,
) -> DetectionRun:
    """Metrics of already computed predictions (used to compare scorings without re-running)."""
    scored = [score_faces(p, scoring=scoring, multi_label=multi_label) for p in preds]
    evaluation = evaluate_detections(scored, gts, len(class_names), class_names=class_names)
    recall = face_recall_by_size([p.detections for p in preds], gts)
    return DetectionRun(
        evaluation=evaluation,
        face_recall=recall,
        ms_per_image=0.0,
        ms_median=0.0,
        predictions=list(preds),
        gts=list(gts),
        info={"scoring": scoring, "multi_label": multi_label},
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if not np.isfinite(v) else f"{v:.4f}"
    return str(v)


def write_detection_run(run: DetectionRun, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.json``, ``pr_<class>.png`` and ``pr.png`` (all classes).

    The AP table comes from ``evaluate.report.write_detection_report``; this adds face recall by size,
    speed and a combined PR plot.
    """
    from maskops.evaluate import plots
    from maskops.evaluate.metrics import json_safe
    from maskops.evaluate.report import write_detection_report

    out = Path(out_dir)
    info = {
        **run.info,
        "ms_per_image": round(run.ms_per_image, 2),
        "ms_median": round(run.ms_median, 2),
        **{f"ms_{k}": round(v, 2) for k, v in run.stage_ms.items()},
    }
    paths = write_detection_report(run.evaluation, out, info=info)
    ev = run.evaluation
    curves = {
        name: {
            "recall": ev.pr_curves[name].recall,
            "precision": ev.pr_curves[name].precision,
            "ap": float(ev.ap50[c]),
        }
        for c, name in enumerate(ev.class_names)
    }
    paths["pr"] = plots.plot_pr_curves(curves, out / "pr.png", title="Detection precision-recall (IoU 0.5)")
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    data["face_recall"] = run.face_recall
    data["ms_per_image"] = run.ms_per_image
    data["ms_median"] = run.ms_median
    data["stage_ms"] = run.stage_ms
    paths["json"].write_text(json.dumps(json_safe(data), indent=2) + "\n", encoding="utf-8")
    lines = [
        "",
        "## Face detector recall by face size",
        "",
        "Class-agnostic: a true face is found when any predicted face box overlaps it with IoU >= 0.5. "
        "Size is the shorter side of the true box.",
        "",
        "| face size | faces | found | recall |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {k} | {v['n']} | {v['found']} | {_fmt(v['recall'])} |" for k, v in run.face_recall.items()]
    lines += ["", "![all classes](pr.png)", ""]
    with paths["markdown"].open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    logger.info("wrote detection report to %s", out)
    return paths


# AP ranks every prediction, so the evaluation keeps low-scored faces: a threshold can only cut recall
EVAL_FACE_SCORE = 0.05


def build_face_detector(name: str, face_score: float | None = EVAL_FACE_SCORE) -> Any:
    """Create detector ``name`` with ``score_threshold=face_score`` when it takes one.

    Raises:
        DetectorError: unknown name or missing weights.
    """
    from maskops.detect.detectors import create_detector

    if face_score is None:
        return create_detector(name)
    try:
        return create_detector(name, score_threshold=face_score)
    except TypeError:
        logger.warning("detector %r takes no score_threshold; using its own default", name)
        return create_detector(name)


def relabel_oracle(run: DetectionRun, class_names: Sequence[str], **score_kw: Any) -> DetectionRun:
    """The same faces with oracle labels (each face the class of its best-overlapping true box).

    Measures the detector alone: what mAP a perfect classifier would reach on these boxes.
    """
    preds = [
        oracle_labels(p.detections, g, len(class_names))
        for p, g in zip(run.predictions, run.gts, strict=True)
    ]
    out = score_run(preds, run.gts, class_names, **score_kw)
    out.ms_per_image, out.ms_median, out.stage_ms = run.ms_per_image, run.ms_median, dict(run.stage_ms)
    out.info = {**run.info, "labels": "oracle (best-overlapping true box)", **out.info}
    return out


def select_voc_sources(cfg: Any, dataset: str | None) -> list[Any]:
    """The VOC sources (with a splits file) of task config ``cfg`` that ``dataset`` names.

    ``None`` gives the first one, ``all`` every one, otherwise the one whose name (or folder) is
    ``dataset``.

    Raises:
        DetectionDataError: the task has no such source (the message lists the valid names).
    """
    sources = [s for s in cfg.sources if s.kind == "voc" and s.splits_file]
    if not sources:
        raise DetectionDataError(
            f"task {cfg.name!r} has no VOC source with a splits_file to evaluate detection on"
        )
    if dataset is None:
        return sources[:1]
    if dataset == "all":
        return sources
    chosen = [s for s in sources if dataset in (s.name, s.path)]
    if not chosen:
        valid = ", ".join([*(s.name for s in sources), "all"])
        raise DetectionDataError(f"task {cfg.name!r} has no VOC source {dataset!r}; valid: {valid}")
    return chosen


def evaluate_task_detection(
    task: str,
    *,
    model_path: str | Path | None = None,
    detector: str = DEFAULT_DETECTOR,
    split: str = "test",
    dataset: str | None = None,
    out_dir: str | Path | None = None,
    scoring: str = "face_x_class",
    multi_label: bool = False,
    face_score: float | None = EVAL_FACE_SCORE,
    oracle: bool = False,
    limit: int | None = None,
    num_threads: int | None = None,
) -> DetectionRun:
    """Evaluate detect -> classify on a task's VOC split (the library side of ``maskops evaluate --detection``).

    Args:
        task: a detection task (``configs/tasks/<task>.yaml``) with a VOC source that has a splits file.
        model_path: the face classifier ``.onnx`` (card beside it); default ``<models_dir>/<task>.onnx``.
            Not needed with ``oracle``.
        detector: registered face detector name.
        split: the split to evaluate (report on ``test``, tune on ``val``).
        dataset: the task's VOC source to evaluate on, by name (``facemask-voc``, ``facemask-ilc2021``),
            or ``all`` for every VOC source with a splits file together; default: the first one.
        out_dir: where to write the report (nothing written when ``None``).
        scoring, multi_label: see the module docs.
        face_score: the detector's score threshold (``None``: its default).
        oracle: label each face with its best-overlapping true box instead of running the classifier.
        limit: first N images only (quick runs).
        num_threads: ONNX Runtime threads of the classifier.

    Raises:
        DetectionDataError: the task has no VOC source with a splits file, or the split cannot be read.
        ModelLoadError / FileNotFoundError: the classifier cannot be loaded.
        DetectorError: unknown detector or missing weights.
    """
    from maskops.config import Settings, load_task, resolve_source_path

    settings = Settings()
    cfg = load_task(task, settings)
    if cfg.kind != "detection":
        raise DetectionDataError(f"task {task!r} is a {cfg.kind} task; --detection needs a detection task")
    sources = select_voc_sources(cfg, dataset)
    items: list[VocImage] = []
    roots = []
    for src in sources:
        root = resolve_source_path(src, settings)
        roots.append(str(root))
        items += load_voc_split(
            root, split, cfg.classes, splits_file=src.splits_file or "", label_map=src.label_map, limit=limit
        )
    det = build_face_detector(detector, face_score)
    info: dict[str, Any] = {
        "task": task,
        "dataset": ", ".join(roots),
        "sources": [src.name for src in sources],
        "split": split,
        "detector": detector,
        "face_score_threshold": face_score,
    }
    if oracle:

        def predict(image: np.ndarray) -> FacePrediction:
            faces = det.detect(image)
            return Scored(faces, np.zeros((len(faces), len(cfg.classes)), np.float32))

        raw = evaluate_detection(predict, items, cfg.classes, info=info)
        run = relabel_oracle(raw, cfg.classes, scoring=scoring, multi_label=multi_label)
        run.info["model"] = "none (oracle labels)"
    else:
        from maskops.detect.pipeline import FaceMaskPipeline, PipelineConfig
        from maskops.inference.classifier import OnnxClassifier

        model = Path(model_path) if model_path is not None else settings.models_dir / f"{task}.onnx"
        clf = OnnxClassifier(model, num_threads=num_threads)
        if list(clf.class_names) != list(cfg.classes):
            raise DetectionDataError(
                f"{model}: the model's classes {clf.class_names} differ from task {task!r} classes {cfg.classes}"
            )
        # uncertain=False: every face keeps its argmax class; AP needs every face ranked
        pipeline = FaceMaskPipeline(clf, det, PipelineConfig(margin=cfg.crops.margin, uncertain=False))
        info["model"] = str(model)
        run = evaluate_detection(
            pipeline, items, cfg.classes, scoring=scoring, multi_label=multi_label, info=info
        )
    if out_dir is not None:
        run.paths = write_detection_run(run, out_dir)
    return run
