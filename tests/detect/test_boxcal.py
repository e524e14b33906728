"""Box calibration at inference: applying corrections, the detector wrapper, files, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from maskops.detect.base import FaceDetector
from maskops.detect.boxcal import BoxCalibration, BoxCorrection, CalibratedDetector, calibration_path
from maskops.detect.registry import create_detector, list_detectors
from maskops.types import Detections


def test_apply_clip() -> None:
    cal = BoxCalibration((BoxCorrection(dx=0.0, dy=0.5, sx=2.0, sy=1.0),))
    # centre (5, 10), size 20 x 10 -> (-5, 5, 15, 15), clipped to the 12 x 8 image
    assert cal.apply([[0, 0, 10, 10]], width=12, height=8).tolist() == [[0, 5, 12, 8]]
    assert cal.apply(np.zeros((0, 4))).shape == (0, 4)


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
