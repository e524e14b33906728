"""The detector variants: multi-scale merge (WBF, flip) and the calibrated detectors."""

from __future__ import annotations

import numpy as np
import pytest

from maskops.detect.multiscale import flip_detections, merge_views, weighted_box_fusion
from maskops.detect.registry import create_detector, list_detectors
from maskops.types import UNCLASSIFIED, Detections

VARIANTS = ["yunet_cal", "yunet_ms", "yunet_ms_cal"]


def _faces(boxes: list[list[float]], scores: list[float]) -> Detections:
    s = np.asarray(scores, np.float32)
    return Detections(
        xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        confidence=s,
        class_id=np.full(len(s), -1),
        face_score=s,
    )


def test_wbf_averages_boxes_and_penalises_single_views() -> None:
    f = _faces([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], [0.6, 0.2, 0.8])
    fused = weighted_box_fusion(f, 0.5, num_views=2)
    by_score = fused[np.argsort(-fused.confidence)]
    # the 50 px face is seen in one view of two: score halved; the pair is averaged with weights 0.6 / 0.2
    assert by_score.confidence.tolist() == pytest.approx([0.4, 0.4])
    assert fused.xyxy[np.argmin(fused.xyxy[:, 0])].tolist() == pytest.approx([0.5, 0, 10.5, 10])
    with pytest.raises(ValueError, match="unknown merge"):
        merge_views(f, "max", 0.5, 2)


def test_flip_detections_maps_back_and_swaps_landmarks() -> None:
    lm = np.array([[[2, 1], [8, 1], [5, 5], [3, 8], [7, 8]]], np.float32)
    f = _faces([[0, 0, 10, 10]], [0.9]).replace(landmarks=lm)
    back = flip_detections(f, 100)
    assert back.xyxy.tolist() == [[90, 0, 100, 10]]
    # right eye (index 0) of the mirrored face is the left eye of the original one
    assert back.landmarks is not None
    assert back.landmarks[0, 0].tolist() == [92, 1] and back.landmarks[0, 1].tolist() == [98, 1]


def _face_image() -> np.ndarray:
    from maskops.config import Settings
    from maskops.data.images import read_bgr

    path = Settings().data_dir / "facemask-voc" / "images" / "maksssksksss0.jpg"
    if path.is_file():
        return read_bgr(path)
    return np.full((240, 320, 3), 127, np.uint8)


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_returns_valid_detections(name: str) -> None:
    from maskops.config import Settings

    assert name in list_detectors()
    if Settings().yunet_path is None:
        pytest.skip("YuNet weights not available (set MASKOPS_YUNET_PATH)")
    image = _face_image()
    det = create_detector(name, score_threshold=0.3)
    faces = det.detect(image)
    h, w = image.shape[:2]
    assert isinstance(faces, Detections)
    assert faces.face_score is not None and np.all(faces.class_id == UNCLASSIFIED)
    assert (
        np.all(faces.xyxy >= 0) and np.all(faces.xyxy[:, [0, 2]] <= w) and np.all(faces.xyxy[:, [1, 3]] <= h)
    )
    assert np.all(faces.confidence >= 0.3 - 1e-6)
    empty = det.detect(np.zeros((60, 80, 3), np.uint8))
    assert len(empty) == 0 and empty.face_score is not None
