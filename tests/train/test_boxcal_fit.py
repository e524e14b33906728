"""Fitting a box calibration: the fit recovers a known synthetic offset and scale; pairs and errors."""

from __future__ import annotations

import numpy as np
import pytest

from maskops.train.boxcal_fit import box_offsets, fit_box_calibration, matched_pairs
from maskops.types import Detections


def _random_boxes(n: int, lo: float, hi: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.uniform(lo, hi, n)
    h = w * rng.uniform(0.9, 1.3, n)
    x = rng.uniform(0, 500, n)
    y = rng.uniform(0, 400, n)
    return np.stack([x, y, x + w, y + h], 1)


def _detector_boxes(gt: np.ndarray, dx: float, dy: float, sx: float, sy: float) -> np.ndarray:
    """Boxes a detector would give if the true box were the detector box corrected by (dx, dy, sx, sy)."""
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    w, h = gw / sx, gh / sy
    cx = (gt[:, 0] + gt[:, 2]) / 2 - dx * w
    cy = (gt[:, 1] + gt[:, 3]) / 2 - dy * h
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


@pytest.mark.parametrize("method", ["median", "mean"])
def test_fit_recovers_known_offset_and_scale(method: str) -> None:
    gt = _random_boxes(200, 10, 120, seed=1)
    pred = _detector_boxes(gt, dx=0.02, dy=0.13, sx=1.04, sy=0.9)
    cal = fit_box_calibration(pred, gt, method=method, detector="fake")
    c = cal.corrections[0]
    assert (c.dx, c.dy, c.sx, c.sy) == pytest.approx((0.02, 0.13, 1.04, 0.9), abs=1e-4)
    assert c.n == 200
    assert cal.apply(pred) == pytest.approx(gt.astype(np.float32), abs=1e-2)
    assert cal.stats["mean_iou_after"] == pytest.approx(1.0, abs=1e-4)
    assert cal.stats["mean_iou_before"] < 0.9


def test_median_fit_ignores_outliers_and_buckets_by_size() -> None:
    small = _random_boxes(100, 8, 15, seed=2)
    large = _random_boxes(100, 70, 150, seed=3)
    pred = np.concatenate(
        [_detector_boxes(small, 0.0, 0.2, 1.0, 0.8), _detector_boxes(large, 0.05, 0.1, 1.1, 0.95)]
    )
    gt = np.concatenate([small, large])
    pred[0] += [50, 0, 50, 0]  # one wrong pair must not move a median
    cal = fit_box_calibration(pred, gt, edges=(32,), method="median", min_count=20)
    assert (cal.corrections[0].dy, cal.corrections[0].sy) == pytest.approx((0.2, 0.8), abs=1e-3)
    assert (cal.corrections[1].dx, cal.corrections[1].sx) == pytest.approx((0.05, 1.1), abs=1e-3)
    assert cal.bucket(np.array([[0, 0, 10, 10], [0, 0, 40, 40]])).tolist() == [0, 1]
    # too few pairs in a bucket: it inherits the global correction
    sparse = fit_box_calibration(pred, gt, edges=(5,), method="median", min_count=20)
    assert sparse.corrections[0] == sparse.corrections[1]


def test_box_offsets() -> None:
    off = box_offsets([[0, 0, 10, 20]], [[1, 4, 13, 20]])
    assert off[0] == pytest.approx([0.2, 0.1, np.log(1.2), np.log(0.8)])
    with pytest.raises(ValueError, match="pair up"):
        box_offsets([[0, 0, 1, 1]], np.zeros((0, 4)))


def test_fit_needs_enough_pairs() -> None:
    with pytest.raises(ValueError, match="at least 30 matched boxes"):
        fit_box_calibration(np.zeros((0, 4)), np.zeros((0, 4)))


def test_matched_pairs_is_one_to_one_and_uses_scores() -> None:
    gt = Detections.from_lists([[0, 0, 10, 10], [50, 50, 70, 70]], [0, 1])
    faces = Detections(
        xyxy=np.array([[1, 1, 11, 11], [0, 0, 10, 10], [50, 52, 70, 72], [100, 100, 110, 110]], np.float32),
        confidence=np.array([0.9, 0.95, 0.3, 0.9], np.float32),
        class_id=np.full(4, -1),
        face_score=np.array([0.9, 0.95, 0.3, 0.9], np.float32),
    )
    pred, true = matched_pairs([faces], [gt], min_iou=0.3, min_score=0.5)
    assert pred.tolist() == [[0, 0, 10, 10]]  # the best-scored of the duplicates; 0.3 is under min_score
    assert true.tolist() == [[0, 0, 10, 10]]
