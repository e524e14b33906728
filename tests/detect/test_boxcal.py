"""Box calibration: the fit recovers a known synthetic offset and scale; wrapper, files, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from maskops.detect.boxcal import (
    BoxCalibration,
    BoxCorrection,
    CalibratedDetector,
    box_offsets,
    calibration_path,
    fit_box_calibration,
    matched_pairs,
)
from maskops.detect.detectors import FaceDetector, create_detector, list_detectors
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


def test_box_offsets_and_apply_clip() -> None:
    off = box_offsets([[0, 0, 10, 20]], [[1, 4, 13, 20]])
    assert off[0] == pytest.approx([0.2, 0.1, np.log(1.2), np.log(0.8)])
    cal = BoxCalibration((BoxCorrection(dx=0.0, dy=0.5, sx=2.0, sy=1.0),))
    # centre (5, 10), size 20 x 10 -> (-5, 5, 15, 15), clipped to the 12 x 8 image
    assert cal.apply([[0, 0, 10, 10]], width=12, height=8).tolist() == [[0, 5, 12, 8]]
    assert cal.apply(np.zeros((0, 4))).shape == (0, 4)
    with pytest.raises(ValueError, match="pair up"):
        box_offsets([[0, 0, 1, 1]], np.zeros((0, 4)))


def test_save_load_roundtrip_and_errors(tmp_path: Path) -> None:
    cal = BoxCalibration((BoxCorrection(0.1, 0.2, 1.1, 0.9, 5), BoxCorrection()), (24.0,), "x", "median", "t")
    path = cal.save(tmp_path / "c.json")
    assert BoxCalibration.load(path) == cal
    with pytest.raises(FileNotFoundError, match="box calibration not found"):
        BoxCalibration.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text(json.dumps({"edges": []}))
    with pytest.raises(ValueError, match=r"bad\.json: missing field 'corrections'"):
        BoxCalibration.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="needs 2 corrections"):
        BoxCalibration((BoxCorrection(),), (10.0,))
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


class _FixedDetector(FaceDetector):
    name = "fixed"

    def detect(self, image_bgr: np.ndarray) -> Detections:
        return Detections(
            xyxy=np.array([[10, 10, 20, 20]], np.float32),
            confidence=np.array([0.9], np.float32),
            class_id=np.array([-1]),
            face_score=np.array([0.9], np.float32),
        )


def test_calibrated_detector_moves_boxes(tiny_image: np.ndarray) -> None:
    det = CalibratedDetector(_FixedDetector(), BoxCalibration((BoxCorrection(dy=0.2, sy=0.8),)))
    faces = det.detect(tiny_image)
    assert faces.xyxy.tolist() == [pytest.approx([10, 13, 20, 21])]
    assert faces.face_score is not None and det.name == "fixed_cal"


def test_packaged_calibrations_load() -> None:
    assert "yunet_cal" in list_detectors()
    for name in ("yunet", "yunet_ms"):
        cal = BoxCalibration.load(calibration_path(name))
        assert cal.detector == name and cal.corrections[0].n > 0
        assert cal.stats["mean_iou_after"] > cal.stats["mean_iou_before"]


def test_yunet_cal_with_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="box calibration not found"):
        create_detector("yunet_cal", calibration_file=tmp_path / "none.json")
