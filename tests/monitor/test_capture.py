from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from maskops.monitor.capture import build_record
from maskops.types import Detections

NAMES = ["with_mask", "without_mask", "mask_weared_incorrect"]


@dataclass
class Result:
    detections: Detections
    probs: np.ndarray
    reasons: list


def test_build_record_from_a_face_result() -> None:
    det = Detections(
        xyxy=[[1, 2, 41, 62], [50, 5, 70, 35]],
        confidence=[0.9, 0.4],
        class_id=[0, -1],
        face_score=[0.95, 0.6],
    )
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25]], np.float32)
    rec = build_record(
        Result(det, probs, [None, "low_confidence"]),
        NAMES,
        request_id="rid",
        source="api",
        width=640,
        height=480,
        latency_ms=12.3456,
        stages_ms={"detect": 5.0},
        quality={"brightness": 0.5},
        site="",
        model_name="facemask",
    )
    assert rec.site is None
    assert [f.label for f in rec.faces] == ["with_mask", "uncertain"]
    assert rec.faces[1].uncertain_reason == "low_confidence"
    assert rec.faces[0].box == (1.0, 2.0, 41.0, 62.0)
    assert rec.faces[0].size == pytest.approx(40.0)
    assert rec.faces[0].face_score == pytest.approx(0.95)
    assert rec.faces[1].probabilities["with_mask"] == pytest.approx(0.4)
    assert rec.latency_ms == pytest.approx(12.346)


def test_no_faces() -> None:
    rec = build_record(
        Result(Detections.empty(), np.zeros((0, 3), np.float32), []),
        NAMES,
        request_id="r",
        source="stream",
        width=1,
        height=1,
        latency_ms=1,
    )
    assert rec.faces == ()


def test_detector_version(tmp_path) -> None:
    import cv2

    from maskops.monitor.capture import detector_version

    weights = tmp_path / "yunet.onnx"
    weights.write_bytes(b"weights")
    assert detector_version("yunet_cal", weights) == detector_version("yunet", weights)
    assert len(detector_version("yunet", weights)) == 12
    assert detector_version("yunet", tmp_path / "missing.onnx") is None
    assert detector_version("haar", None) == f"opencv-{cv2.__version__}"
    assert detector_version(None, None) is None
