"""The detector variants of issue 4: multi-scale merge, calibrated and refined detectors, refiner training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from maskops.boxes import nms
from maskops.detect.detectors import FaceDetector, create_detector, list_detectors
from maskops.detect.multiscale import flip_detections, merge_views, weighted_box_fusion
from maskops.detect.refine import (
    BoxRefiner,
    RefinedDetector,
    RefinerSpec,
    crop_proposals,
    crop_regions,
    decode_boxes,
    encode_boxes,
    refiner_path,
)
from maskops.types import Detections

VARIANTS = ["yunet_cal", "yunet_ms", "yunet_ms_cal", "yunet_refine"]


def _faces(boxes: list[list[float]], scores: list[float]) -> Detections:
    s = np.asarray(scores, np.float32)
    return Detections(
        xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        confidence=s,
        class_id=np.full(len(s), -1),
        face_score=s,
    )


def test_nms_keeps_best_of_overlaps() -> None:
    f = _faces([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], [0.5, 0.9, 0.4])
    kept = nms(f, 0.4)
    assert kept.confidence.tolist() == pytest.approx([0.9, 0.4])
    assert len(nms(f[:0], 0.4)) == 0


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


def test_encode_decode_roundtrip_and_crops() -> None:
    props = np.array([[10, 10, 30, 40], [0, 0, 5, 5]], np.float64)
    gt = np.array([[12, 14, 34, 40], [1, 0, 6, 4]], np.float64)
    d = encode_boxes(props, gt)
    assert decode_boxes(props, d) == pytest.approx(gt.astype(np.float32), abs=1e-4)
    assert crop_regions(props[:1], 2.0).tolist() == [[-10, -5, 50, 55]]
    img = np.zeros((50, 60, 3), np.uint8)
    img[:, :30] = (0, 0, 255)  # red on the left, in BGR
    crops = crop_proposals(img, props, 16, 2.0)
    assert crops.shape == (2, 16, 16, 3) and crops.dtype == np.uint8
    assert crops[1, 8, 8].tolist() == [255, 0, 0]  # RGB
    assert crops[1, 0, 0].tolist() == [0, 0, 0]  # outside the image: zero padding


class _Props(FaceDetector):
    name = "props"

    def detect(self, image_bgr: np.ndarray) -> Detections:
        return _faces([[10, 10, 30, 30], [12, 10, 32, 30], [40, 5, 50, 15]], [0.9, 0.5, 0.2])


def test_refiner_train_export_and_detect(tmp_path: Path, tiny_image: np.ndarray) -> None:
    """A two-epoch training on a few crops exports an ONNX refiner that RefinedDetector runs (no weights needed)."""
    pytest.importorskip("torch")
    from maskops.detect.refine_train import TrainSettings, build_samples, export_refiner, train_refiner

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    gts = [Detections.from_lists([[11, 10, 31, 31]], [k % 3]) for k in range(3)]
    spec = RefinerSpec(size=16, context=2.0, base="props", base_options={})
    samples = build_samples(_Props(), images, gts, spec, jitter_per_face=2)
    assert len(samples) == 3 * (3 + 2)
    assert set(samples.face.tolist()) <= {-1.0, 0.0, 1.0} and samples.reg_mask.any()
    samples.save(tmp_path / "s.npz")
    work = tmp_path / "work"
    settings = TrainSettings(epochs=2, batch_size=8, num_threads=1)
    best = train_refiner(samples, samples, work, spec, settings)
    assert (work / "last.pt").is_file() and len((work / "log.jsonl").read_text().splitlines()) == 2
    # a finished run resumes as a no-op
    train_refiner(samples, samples, work, spec, settings)
    assert len((work / "log.jsonl").read_text().splitlines()) == 2
    onnx_path = export_refiner(best, spec, tmp_path / "refine.onnx")
    det = RefinedDetector(BoxRefiner(onnx_path), base=_Props())
    faces = det.detect(tiny_image)
    assert 1 <= len(faces) <= 3
    assert faces.face_score is not None and np.all((faces.face_score >= 0) & (faces.face_score <= 1))
    assert det.last_probs is not None and det.last_probs.shape == (len(faces), 3)
    assert np.all(faces.xyxy[:, 2] <= 64) and np.all(faces.xyxy[:, 0] >= 0)


def test_missing_refiner_weights_are_named(tmp_path: Path) -> None:
    from maskops.detect.detectors import DetectorError

    with pytest.raises(DetectorError, match=r"refiner weights not found at .*none\.onnx"):
        create_detector("yunet_refine", model_path=tmp_path / "none.onnx")


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
    if name == "yunet_refine" and not refiner_path().is_file():
        pytest.skip("refiner weights not trained yet (bench/train_refiner.py)")
    image = _face_image()
    det = create_detector(name, score_threshold=0.3)
    faces = det.detect(image)
    h, w = image.shape[:2]
    assert isinstance(faces, Detections)
    assert faces.face_score is not None and np.all(faces.class_id == -1)
    assert (
        np.all(faces.xyxy >= 0) and np.all(faces.xyxy[:, [0, 2]] <= w) and np.all(faces.xyxy[:, [1, 3]] <= h)
    )
    assert np.all(faces.confidence >= 0.3 - 1e-6) if name != "yunet_refine" else True
    empty = det.detect(np.zeros((60, 80, 3), np.uint8))
    assert len(empty) == 0 and empty.face_score is not None
