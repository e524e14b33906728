"""detect -> crop -> classify: uncertainty rules, input kinds, and a real YuNet run on a real photo."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from maskops.detect.detectors import FaceDetector
from maskops.detect.pipeline import (
    FaceMaskPipeline,
    PipelineConfig,
    ThreadDetectors,
    count_faces,
    detector_factory,
    face_quality,
)
from maskops.inference.classifier import OnnxClassifier
from maskops.types import UNCERTAIN, UNCLASSIFIED, Detections


class FixedBoxes(FaceDetector):
    """Returns the same boxes for every image (the classification logic is what is tested)."""

    name = "fixed"

    def __init__(self, boxes: list[list[float]]) -> None:
        self.boxes = boxes

    def detect(self, image_bgr: np.ndarray) -> Detections:
        n = len(self.boxes)
        return Detections(
            xyxy=np.asarray(self.boxes, np.float32).reshape(-1, 4),
            confidence=np.full(n, 0.9, np.float32),
            class_id=np.full(n, UNCLASSIFIED),
            face_score=np.full(n, 0.9, np.float32),
        )


def _scene() -> np.ndarray:
    """A textured image with a bright red patch (class 0 for the linear model), a dark patch."""
    rng = np.random.default_rng(1)
    img = rng.integers(60, 200, size=(200, 300, 3), dtype=np.uint8)
    img[20:80, 20:80] = np.clip(img[20:80, 20:80].astype(int) // 3 + [0, 0, 200], 0, 255).astype(np.uint8)
    img[120:180, 200:260] = rng.integers(0, 12, size=(60, 60, 3), dtype=np.uint8)  # very dark
    return img


def test_classifies_each_box_and_flags_hard_faces(linear_model: Path) -> None:
    boxes = [[20, 20, 80, 80], [200, 120, 260, 180], [150, 20, 156, 26]]
    pipe = FaceMaskPipeline(OnnxClassifier(linear_model), FixedBoxes(boxes), PipelineConfig(margin=0.0))
    result = pipe(_scene())
    assert len(result.detections) == 3 and result.probs.shape == (3, 3)
    assert result.detections.class_id[0] == 0  # red patch -> with_mask for the linear model
    assert result.reasons[0] is None
    assert result.detections.class_id[1] == -1 and "dark" in result.reasons[1]
    assert result.detections.class_id[2] == -1 and "px" in result.reasons[2]
    np.testing.assert_allclose(result.detections.confidence, result.probs.max(1), rtol=1e-6)
    assert set(result.timings_ms) == {"detect", "classify"}
    recs = result.records(pipe.class_names)
    assert recs[1]["label"] == "uncertain" and "uncertain_reason" in recs[1]
    assert result.records() == recs  # the result knows its class names
    assert result.counts() == {"with_mask": 1, "without_mask": 0, "mask_weared_incorrect": 0, "uncertain": 2}
    # the rule can be turned off: every face gets its argmax
    off = FaceMaskPipeline(pipe.classifier, FixedBoxes(boxes), PipelineConfig(margin=0.0, uncertain=False))
    assert (off(_scene()).detections.class_id >= 0).all()


def test_low_confidence_is_uncertain(linear_model: Path) -> None:
    cfg = PipelineConfig(thresholds={"min_confidence": 0.999, "min_sharpness": 0, "min_brightness": 0})
    pipe = FaceMaskPipeline(OnnxClassifier(linear_model), FixedBoxes([[20, 20, 80, 80]]), cfg)
    result = pipe(_scene())
    assert result.detections.class_id[0] == -1 and "low confidence" in result.reasons[0]


@pytest.mark.parametrize("shape", [(200, 300), (200, 300, 1), (200, 300, 4)])
def test_gray_and_rgba_inputs(linear_model: Path, shape: tuple[int, ...]) -> None:
    pipe = FaceMaskPipeline(OnnxClassifier(linear_model), FixedBoxes([[10, 10, 60, 60]]))
    image = np.full(shape, 120, np.uint8)
    assert len(pipe(image).detections) == 1


def test_no_face_and_summary(linear_model: Path) -> None:
    pipe = FaceMaskPipeline(OnnxClassifier(linear_model), FixedBoxes([]))
    empty = pipe(_scene())
    assert len(empty.detections) == 0 and empty.probs.shape == (0, 3)
    two = FaceMaskPipeline(pipe.classifier, FixedBoxes([[20, 20, 80, 80], [150, 20, 156, 26]]))(_scene())
    s = pipe.summary([empty, two])
    assert s["images"] == 2 and s["faces"] == 2
    assert s["per_class"]["with_mask"] == 1 and s["per_class"]["uncertain"] == 1
    assert s["compliance_rate"] == 1.0
    assert pipe.summary([empty])["compliance_rate"] is None


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ([], {"a": 0, "b": 0, "uncertain": 0}),
        ([0, 1, 1, -1], {"a": 1, "b": 2, "uncertain": 1}),
        ([5], {"a": 0, "b": 0, "uncertain": 1}),  # an id the model does not have is not a class
    ],
)
def test_count_faces(ids: list[int], expected: dict[str, int]) -> None:
    assert count_faces(ids, ["a", "b"]) == expected


def test_face_quality_orders_blur_and_light() -> None:
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, size=(80, 80, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(sharp, (21, 21), 8)
    assert face_quality(sharp)[0] > 10 * face_quality(blurred)[0]
    assert face_quality(sharp // 10)[1] < face_quality(sharp)[1]


def test_face_quality_values_are_laplacian_variance_and_mean_gray() -> None:
    rng = np.random.default_rng(2)
    crop = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA)
    sharpness, brightness = face_quality(crop)
    assert sharpness == pytest.approx(float(cv2.Laplacian(small, cv2.CV_64F).var()), rel=1e-9)
    assert brightness == pytest.approx(float(gray.mean()), rel=1e-12)


@pytest.mark.integration
def test_real_photo_with_yunet(linear_model: Path, data_dir: Path) -> None:
    from maskops.config import Settings

    yunet = Settings().yunet_path
    images = sorted((data_dir / "facemask-voc" / "images").glob("maksssksksss*.*"))[:5]
    if yunet is None or not images:
        pytest.skip(f"needs the YuNet weights (MASKOPS_YUNET_PATH) and facemask-voc images under {data_dir}")
    pipe = FaceMaskPipeline.from_paths(linear_model)
    found = 0
    for path in images:
        result = pipe(cv2.imread(str(path)))
        found += len(result.detections)
        assert result.detections.face_score is not None
        assert result.detections.landmarks is not None
    assert found >= 5  # these photos hold several faces each


def test_detector_factory_builds_a_new_configured_detector_each_call() -> None:
    make = detector_factory(
        "yunet", face_threshold=0.7, num_threads=2, yunet_path="/x.onnx", options={"top_k": 9}
    )
    assert make.keywords == {"model_path": "/x.onnx", "num_threads": 2, "score_threshold": 0.7, "top_k": 9}
    # YuNet's own options are not given to other detectors
    assert detector_factory("haar", num_threads=2, yunet_path="/x.onnx").keywords == {}


def test_thread_detectors_give_each_thread_its_own() -> None:
    import threading

    built: list[FixedBoxes] = []

    def make() -> FixedBoxes:
        built.append(FixedBoxes([]))
        return built[-1]

    first = FixedBoxes([])
    pool = ThreadDetectors(make, first=first)
    seen: list[object] = []
    assert pool.get() is first and pool.get() is first  # the first thread keeps the given one
    threads = [threading.Thread(target=lambda: seen.extend([pool.get(), pool.get()])) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 3
    for i in range(3):
        assert seen[2 * i] is seen[2 * i + 1] and seen[2 * i] in built


@pytest.mark.parametrize("shape", [(1, 1, 3), (15, 400, 3), (400, 8)])
def test_an_image_too_small_for_a_face_skips_the_detector(linear_model: Path, shape: tuple[int, ...]) -> None:
    class Refuses(FaceDetector):
        name = "refuses"

        def detect(self, image_bgr: np.ndarray) -> Detections:
            raise AssertionError("the detector ran")

    result = FaceMaskPipeline(OnnxClassifier(linear_model), Refuses())(np.zeros(shape, np.uint8))
    assert len(result.detections) == 0 and result.detections.face_score is not None
    assert set(result.timings_ms) == {"detect", "classify"}


def test_unclassified_and_uncertain_are_two_ids(linear_model: Path) -> None:
    """A detector's face is not classified yet (-2); a classified face too hard to judge is uncertain (-1)."""
    boxes = [[20, 20, 80, 80], [200, 120, 260, 180]]
    faces = FixedBoxes(boxes).detect(_scene())
    assert [r["label"] for r in faces.to_records(["with_mask", "without_mask", "x"])] == ["unclassified"] * 2
    result = FaceMaskPipeline(OnnxClassifier(linear_model), FixedBoxes(boxes), PipelineConfig(margin=0.0))(
        _scene()
    )
    assert UNCLASSIFIED not in result.detections.class_id
    assert result.detections.class_id.tolist() == [0, UNCERTAIN]
