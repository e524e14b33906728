"""Fitting a ``BoxCalibration``: (detector box, true box) pairs -> per-size-bucket corrections.

Research/training code: ``bench/fit_boxcal.py`` runs it on facemask-voc ``train`` and writes the
calibration JSON that ``maskops.detect.boxcal`` applies at inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from maskops.boxes import box_iou
from maskops.detect.boxcal import BoxCalibration, BoxCorrection
from maskops.evaluate.detection import match_detections
from maskops.types import Detections

__all__ = ["METHODS", "box_offsets", "fit_box_calibration", "matched_pairs"]

METHODS = ("median", "mean")


def box_offsets(pred: Any, gt: Any) -> np.ndarray:
    """(n, 4) ``[dx, dy, log sx, log sy]`` taking each predicted box onto its paired true box.

    Raises:
        ValueError: shapes differ or a predicted box has zero width or height.
    """
    p = np.asarray(pred, np.float64).reshape(-1, 4)
    g = np.asarray(gt, np.float64).reshape(-1, 4)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must pair up, got {p.shape[0]} and {g.shape[0]} boxes")
    w, h = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    if np.any(w <= 0) or np.any(h <= 0) or np.any(gw <= 0) or np.any(gh <= 0):
        raise ValueError("boxes must have positive width and height")
    dx = ((g[:, 0] + g[:, 2]) - (p[:, 0] + p[:, 2])) / 2 / w
    dy = ((g[:, 1] + g[:, 3]) - (p[:, 1] + p[:, 3])) / 2 / h
    return np.stack([dx, dy, np.log(gw / w), np.log(gh / h)], 1)


def matched_pairs(
    faces: Sequence[Detections],
    gts: Sequence[Detections],
    *,
    min_iou: float = 0.3,
    min_score: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one (detector box, true box) pairs over many images, for fitting.

    Matching is greedy by face score, class-agnostic, with IoU >= ``min_iou`` (lower than 0.5 on purpose:
    the badly framed faces are the ones to learn from); faces under ``min_score`` are ignored.

    Returns:
        ``(pred_xyxy, gt_xyxy)``, both (k, 4) float64.
    """
    ps, gs = [], []
    for f, g in zip(faces, gts, strict=True):
        score = f.face_score if f.face_score is not None else f.confidence
        f = f[score >= min_score]
        if not len(f) or not len(g):
            continue
        f = f.replace(
            class_id=np.zeros(len(f), np.int64),
            confidence=f.face_score if f.face_score is not None else f.confidence,
        )
        sizes_ok = (f.xyxy[:, 2] > f.xyxy[:, 0]) & (f.xyxy[:, 3] > f.xyxy[:, 1])
        f = f[sizes_ok]
        m = match_detections(f, g, min_iou, class_aware=False)
        ok = m.tp
        ps.append(f.xyxy[ok])
        gs.append(g.xyxy[m.matched_gt[ok]])
    if not ps:
        return np.zeros((0, 4)), np.zeros((0, 4))
    return np.concatenate(ps).astype(np.float64), np.concatenate(gs).astype(np.float64)


def _summary(v: np.ndarray, method: str, n: int) -> BoxCorrection:
    c = np.median(v, 0) if method == "median" else np.mean(v, 0)
    return BoxCorrection(
        dx=round(float(c[0]), 5),
        dy=round(float(c[1]), 5),
        sx=round(float(np.exp(c[2])), 5),
        sy=round(float(np.exp(c[3])), 5),
        n=n,
    )


def fit_box_calibration(
    pred: Any,
    gt: Any,
    *,
    edges: Sequence[float] = (),
    method: str = "median",
    min_count: int = 30,
    detector: str = "",
    fitted_on: str = "",
) -> BoxCalibration:
    """Fit per-bucket corrections from paired boxes.

    ``median`` takes the median offset and log scale (robust to the odd wrong pair); ``mean`` is the
    least-squares fit of the same four numbers. A bucket with fewer than ``min_count`` pairs gets the
    global correction.

    Args:
        pred: (k, 4) detector boxes.
        gt: (k, 4) their true boxes.
        edges: size bucket edges (shorter side of the detector box, px).
        method: ``median`` or ``mean``.
        min_count: minimum pairs for a bucket of its own.
        detector, fitted_on: recorded in the calibration.

    Raises:
        ValueError: unknown method, or fewer than ``min_count`` pairs overall.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    v = box_offsets(pred, gt)
    if v.shape[0] < min_count:
        raise ValueError(f"need at least {min_count} matched boxes to fit a calibration, got {v.shape[0]}")
    glob = _summary(v, method, int(v.shape[0]))
    cal = BoxCalibration((glob,), (), detector, method, fitted_on)
    if edges:
        p = np.asarray(pred, np.float64).reshape(-1, 4)
        probe = BoxCalibration(
            tuple(BoxCorrection() for _ in range(len(edges) + 1)), tuple(float(e) for e in edges)
        )
        k = probe.bucket(p)
        corr = []
        for b in range(len(edges) + 1):
            sel = k == b
            corr.append(_summary(v[sel], method, int(sel.sum())) if sel.sum() >= min_count else glob)
        cal = BoxCalibration(tuple(corr), tuple(float(e) for e in edges), detector, method, fitted_on)
    before = np.diag(box_iou(pred, gt)) if len(v) else np.zeros(0)
    after = np.diag(box_iou(cal.apply(pred), gt)) if len(v) else np.zeros(0)
    stats = {
        "pairs": int(v.shape[0]),
        "mean_iou_before": round(float(before.mean()), 4),
        "mean_iou_after": round(float(after.mean()), 4),
        "iou50_before": round(float((before >= 0.5).mean()), 4),
        "iou50_after": round(float((after >= 0.5).mean()), 4),
        "median_offsets": {
            k: round(float(x), 4)
            for k, x in zip(("dx", "dy", "log_sx", "log_sy"), np.median(v, 0), strict=True)
        },
        "iqr_offsets": {
            k: round(float(x), 4)
            for k, x in zip(
                ("dx", "dy", "log_sx", "log_sy"),
                np.percentile(v, 75, 0) - np.percentile(v, 25, 0),
                strict=True,
            )
        },
    }
    return BoxCalibration(cal.corrections, cal.edges, detector, method, fitted_on, stats)
