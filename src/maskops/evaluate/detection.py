"""Pure detection metrics on ``Detections``: IoU, VOC-style matching, AP and mAP.

Conventions (documented once, used everywhere here):
    * Boxes are continuous pixel coordinates ``x1, y1, x2, y2``; area is ``(x2-x1)*(y2-y1)`` (no VOC
      "+1"), as COCO and supervision do.
    * Matching is per image and per class, greedy by descending confidence (stable for ties: input
      order). Each prediction looks at the ground-truth box of its class with the highest IoU; if that
      IoU >= threshold and the box is still unmatched it is a true positive, otherwise a false positive
      (so duplicates of an already-matched face are false positives, as in the VOC devkit).
    * Predictions with ``class_id < 0`` (``uncertain``) belong to no class and are ignored by AP.
    * AP is VOC all-point interpolation (area under the monotone precision envelope).
    * A class with no ground truth has AP ``nan`` and is excluded from every mean; a class with ground
      truth but no predictions has AP 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskops.boxes import box_iou
from maskops.types import Detections

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "DetectionEvaluation",
    "MatchResult",
    "PRCurve",
    "average_precision",
    "box_iou",
    "evaluate_detections",
    "match_detections",
]

COCO_IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


@dataclass(frozen=True)
class MatchResult:
    """Outcome of matching one image's predictions to its ground truth.

    Attributes:
        tp: (n_pred,) bool, True where the prediction is a true positive.
        matched_gt: (n_pred,) int64 index of the matched ground-truth box, -1 for false positives.
        iou: (n_pred,) float64 IoU with the best ground-truth box of the same class (0 when none).
        gt_matched: (n_gt,) bool, True where a ground-truth box was found.
    """

    tp: np.ndarray
    matched_gt: np.ndarray
    iou: np.ndarray
    gt_matched: np.ndarray


def match_detections(
    pred: Detections,
    gt: Detections,
    iou_threshold: float = 0.5,
    *,
    class_aware: bool = True,
    iou: np.ndarray | None = None,
) -> MatchResult:
    """Greedy VOC-style matching of one image's predictions to its ground truth.

    Args:
        pred: predictions (``confidence`` ranks them).
        gt: ground truth of the same image.
        iou_threshold: minimum IoU for a true positive.
        class_aware: only match boxes of the same ``class_id`` (False: any class, e.g. for face recall).
        iou: optional precomputed ``box_iou(pred, gt)``.

    Returns:
        A ``MatchResult``. Predictions with ``class_id < 0`` are never matched when ``class_aware``.
    """
    n, m = len(pred), len(gt)
    tp = np.zeros(n, bool)
    matched_gt = np.full(n, -1, np.int64)
    best_iou = np.zeros(n, np.float64)
    gt_matched = np.zeros(m, bool)
    if n == 0 or m == 0:
        return MatchResult(tp, matched_gt, best_iou, gt_matched)
    ious = box_iou(pred, gt) if iou is None else np.asarray(iou, np.float64)
    if ious.shape != (n, m):
        raise ValueError(f"iou must have shape ({n}, {m}), got {ious.shape}")
    if class_aware:
        same = pred.class_id[:, None] == gt.class_id[None, :]
        ious = np.where(same, ious, -1.0)
    order = np.argsort(-pred.confidence, kind="stable")
    for i in order:
        j = int(np.argmax(ious[i]))
        best = ious[i, j]
        if best < 0:  # no ground truth of this class in the image
            continue
        best_iou[i] = best
        if best >= iou_threshold and not gt_matched[j]:
            tp[i] = True
            matched_gt[i] = j
            gt_matched[j] = True
    return MatchResult(tp, matched_gt, best_iou, gt_matched)


def average_precision(recall: Any, precision: Any) -> float:
    """VOC all-point interpolated average precision.

    Precision is replaced by its running maximum from the right (the monotone envelope) and integrated
    over recall, with sentinels at recall 0 and 1.

    Args:
        recall: (k,) non-decreasing recall values of a ranked list.
        precision: (k,) precision at the same ranks.

    Returns:
        AP in [0, 1]; 0.0 for an empty curve.
    """
    r = np.asarray(recall, np.float64).reshape(-1)
    p = np.asarray(precision, np.float64).reshape(-1)
    if r.shape != p.shape:
        raise ValueError(f"recall and precision must have the same length, got {r.size} and {p.size}")
    if r.size == 0:
        return 0.0
    mrec = np.concatenate([[0.0], r, [1.0]])
    mpre = np.concatenate([[0.0], p, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


@dataclass(frozen=True)
class PRCurve:
    """Precision/recall of one class's ranked predictions (one point per prediction)."""

    recall: np.ndarray
    precision: np.ndarray
    scores: np.ndarray

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "recall": self.recall.tolist(),
            "precision": self.precision.tolist(),
            "scores": self.scores.tolist(),
        }


@dataclass(frozen=True)
class DetectionEvaluation:
    """Result of ``evaluate_detections``.

    Attributes:
        class_names: names in class-id order.
        iou_thresholds: the thresholds of ``ap`` rows.
        ap: (T, C) AP per threshold and class; ``nan`` for classes without ground truth.
        ap50: (C,) AP at IoU 0.5.
        map50: mean of ``ap50`` over classes with ground truth (``nan`` when there are none).
        map50_95: mean over the COCO thresholds 0.50:0.05:0.95 of the per-threshold mAP.
        gt_counts: (C,) ground-truth boxes per class.
        pred_counts: (C,) predictions per class.
        pr_curves: class name -> ``PRCurve`` at IoU 0.5.
        num_images: images evaluated.
    """

    class_names: list[str]
    iou_thresholds: tuple[float, ...]
    ap: np.ndarray
    ap50: np.ndarray
    map50: float
    map50_95: float
    gt_counts: np.ndarray
    pred_counts: np.ndarray
    pr_curves: dict[str, PRCurve] = field(default_factory=dict)
    num_images: int = 0

    def per_class(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for c, name in enumerate(self.class_names):
            curve = self.pr_curves.get(name)
            out[name] = {
                "ap50": float(self.ap50[c]),
                "ap50_95": float(np.mean(self.ap[:, c])) if self.gt_counts[c] else float("nan"),
                "gt": int(self.gt_counts[c]),
                "predictions": int(self.pred_counts[c]),
                "max_recall": float(curve.recall[-1]) if curve is not None and curve.recall.size else 0.0,
            }
        return out

    def to_dict(self, *, include_curves: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "num_images": self.num_images,
            "map50": self.map50,
            "map50_95": self.map50_95,
            "iou_thresholds": list(self.iou_thresholds),
            "per_class": self.per_class(),
        }
        if include_curves:
            d["pr_curves"] = {k: v.to_dict() for k, v in self.pr_curves.items()}
        return d


def _class_ranking(
    preds: Sequence[Detections],
    class_id: int,
    matches: Sequence[MatchResult],
) -> tuple[np.ndarray, np.ndarray]:
    scores, tps = [], []
    for p, mr in zip(preds, matches, strict=True):
        sel = p.class_id == class_id
        scores.append(p.confidence[sel].astype(np.float64))
        tps.append(mr.tp[sel])
    s = np.concatenate(scores) if scores else np.zeros(0)
    t = np.concatenate(tps) if tps else np.zeros(0, bool)
    order = np.argsort(-s, kind="stable")
    return s[order], t[order]


def _curve(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> PRCurve:
    ctp = np.cumsum(tp).astype(np.float64)
    cfp = np.cumsum(~tp).astype(np.float64)
    recall = ctp / n_gt if n_gt else np.zeros_like(ctp)
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    return PRCurve(recall=recall, precision=precision, scores=scores)


def evaluate_detections(
    preds: Sequence[Detections],
    gts: Sequence[Detections],
    num_classes: int,
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
    *,
    class_names: Sequence[str] | None = None,
) -> DetectionEvaluation:
    """Per-class AP, mAP@0.5 and mAP@0.5:0.95 over a set of images.

    Args:
        preds: one ``Detections`` of predictions per image.
        gts: one ``Detections`` of ground truth per image (same order).
        num_classes: C; ground-truth class ids must be in ``[0, C)``.
        iou_thresholds: thresholds for the ``ap`` table; 0.5 is always added. ``map50_95`` always uses the
            COCO thresholds (added when missing).
        class_names: optional names (default ``class_0`` …).

    Returns:
        A ``DetectionEvaluation``. Classes with no ground truth are excluded from the means.

    Raises:
        ValueError: different numbers of images, or ground-truth class ids out of range.
    """
    if len(preds) != len(gts):
        raise ValueError(f"preds and gts must have one entry per image, got {len(preds)} and {len(gts)}")
    names = list(class_names) if class_names is not None else [f"class_{c}" for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names but num_classes is {num_classes}")
    for k, g in enumerate(gts):
        if len(g) and (g.class_id.min() < 0 or g.class_id.max() >= num_classes):
            raise ValueError(f"ground truth of image {k} has class ids outside [0, {num_classes})")
    thresholds = tuple(sorted({round(float(t), 4) for t in (*iou_thresholds, 0.5, *COCO_IOU_THRESHOLDS)}))
    gt_counts = np.zeros(num_classes, np.int64)
    pred_counts = np.zeros(num_classes, np.int64)
    for p, g in zip(preds, gts, strict=True):
        gt_counts += np.bincount(g.class_id, minlength=num_classes)[:num_classes]
        valid = p.class_id[(p.class_id >= 0) & (p.class_id < num_classes)]
        pred_counts += np.bincount(valid, minlength=num_classes)[:num_classes]
    ious = [box_iou(p, g) for p, g in zip(preds, gts, strict=True)]
    ap = np.full((len(thresholds), num_classes), np.nan)
    curves: dict[str, PRCurve] = {}
    for ti, thr in enumerate(thresholds):
        matches = [match_detections(p, g, thr, iou=i) for p, g, i in zip(preds, gts, ious, strict=True)]
        for c in range(num_classes):
            scores, tp = _class_ranking(preds, c, matches)
            curve = _curve(scores, tp, int(gt_counts[c]))
            if thr == 0.5:
                curves[names[c]] = curve
            if gt_counts[c]:
                ap[ti, c] = average_precision(curve.recall, curve.precision)
    has_gt = gt_counts > 0
    ap50 = ap[thresholds.index(0.5)]
    coco_rows = [thresholds.index(round(t, 4)) for t in COCO_IOU_THRESHOLDS]
    if has_gt.any():
        map50 = float(np.mean(ap50[has_gt]))
        map50_95 = float(np.mean([np.mean(ap[r, has_gt]) for r in coco_rows]))
    else:
        map50 = map50_95 = float("nan")
    return DetectionEvaluation(
        class_names=names,
        iou_thresholds=thresholds,
        ap=ap,
        ap50=ap50,
        map50=map50,
        map50_95=map50_95,
        gt_counts=gt_counts,
        pred_counts=pred_counts,
        pr_curves=curves,
        num_images=len(gts),
    )
