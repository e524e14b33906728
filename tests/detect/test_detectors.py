from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from maskops.config import Settings
from maskops.data.images import read_bgr
from maskops.detect.detectors import (
    DetectorError,
    HaarDetector,
    YuNetDetector,
    create_detector,
    haar_available,
    list_detectors,
)
from maskops.types import UNCLASSIFIED

YUNET = Settings().yunet_path


def _yunet_or_skip() -> Path:
    if YUNET is None or not Path(YUNET).is_file():
        pytest.skip("YuNet weights not found (set MASKOPS_YUNET_PATH)")
    return Path(YUNET)


def test_registry_lists_and_rejects() -> None:
    assert {"yunet", "haar"} <= set(list_detectors())
    with pytest.raises(ValueError, match=r"valid: .*haar.*yunet"):
        create_detector("retinaface-xl")


def _haar_or_skip() -> HaarDetector:
    if not haar_available():
        with pytest.raises(DetectorError, match=r"no CascadeClassifier.*yunet"):
            create_detector("haar")
        pytest.skip(f"this OpenCV ({cv2.__version__}) has no Haar cascades: checked the error instead")
    return create_detector("haar")  # type: ignore[return-value]


def test_missing_weights_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(DetectorError, match=str(missing)):
        YuNetDetector(model_path=missing)


@pytest.mark.parametrize("backend", YuNetDetector.BACKENDS)
def test_corrupt_weights_are_one_clear_error(tmp_path: Path, backend: str) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(DetectorError, match="could not be loaded"):
        YuNetDetector(model_path=bad, backend=backend)


def test_unknown_backend_lists_the_valid_ones() -> None:
    with pytest.raises(DetectorError, match="valid: onnxruntime, opencv"):
        YuNetDetector(model_path=_yunet_or_skip(), backend="tensorrt")


@pytest.mark.integration
def test_onnxruntime_backend_matches_opencv_face_detector_yn(data_dir: Path) -> None:
    """Same network, same decoding: boxes, landmarks and scores agree with cv2.FaceDetectorYN."""
    weights = _yunet_or_skip()
    folder = data_dir / "facemask-voc" / "images"
    files = sorted(folder.glob("*.jpg"))[:12] if folder.is_dir() else []
    if not files:
        pytest.skip(f"{folder} not found (set MASKOPS_DATA_DIR to the shared datasets)")
    ref = YuNetDetector(weights, score_threshold=0.3, backend="opencv")
    ort = YuNetDetector(weights, score_threshold=0.3, backend="onnxruntime")
    faces = 0
    for path in [*files, None]:
        image = np.full((200, 300, 3), 90, np.uint8) if path is None else read_bgr(path)
        a, b = ref.detect(image), ort.detect(image)
        assert len(a) == len(b), path
        faces += len(a)
        if len(a):
            np.testing.assert_allclose(b.xyxy, a.xyxy, atol=0.01)
            np.testing.assert_allclose(b.face_score, a.face_score, atol=1e-4)
            np.testing.assert_allclose(b.landmarks, a.landmarks, atol=0.01)
    assert faces >= 12


def test_haar_on_blank_image_is_empty() -> None:
    det = _haar_or_skip().detect(np.zeros((120, 160, 3), np.uint8))
    assert len(det) == 0 and det.face_score is not None


def test_yunet_on_blank_image_is_empty() -> None:
    detector = YuNetDetector(model_path=_yunet_or_skip())
    det = detector.detect(np.full((100, 100, 3), 128, np.uint8))
    assert len(det) == 0
    assert det.landmarks is not None and det.landmarks.shape == (0, 5, 2)


def test_yunet_upscale_rule() -> None:
    detector = YuNetDetector(model_path=_yunet_or_skip(), upscale=2.0, min_side=640)
    assert detector._scale_for(200, 100) == 2.0
    assert detector._scale_for(500, 300) == pytest.approx(640 / 500)
    assert detector._scale_for(800, 600) == 1.0
    assert YuNetDetector(model_path=YUNET, upscale=1.0)._scale_for(100, 100) == 1.0


def test_gray_input_is_accepted() -> None:
    detector = YuNetDetector(model_path=_yunet_or_skip())
    assert len(detector.detect(np.zeros((60, 80), np.uint8))) == 0
    with pytest.raises(ValueError, match="image must be"):
        detector.detect(np.zeros((4, 4, 2), np.uint8))


@pytest.mark.integration
def test_yunet_finds_the_faces_of_a_crowd_photo(data_dir: Path) -> None:
    _yunet_or_skip()
    path = data_dir / "facemask-voc" / "images" / "maksssksksss0.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not found (set MASKOPS_DATA_DIR to the shared datasets)")
    image = read_bgr(path)
    det = create_detector("yunet").detect(image)
    assert len(det) >= 2
    h, w = image.shape[:2]
    assert np.all(det.xyxy[:, [0, 2]] <= w) and np.all(det.xyxy[:, [1, 3]] <= h) and np.all(det.xyxy >= 0)
    assert np.all(det.class_id == UNCLASSIFIED)  # not "uncertain": no classifier has seen them
    assert det.landmarks is not None and det.landmarks.shape == (len(det), 5, 2)
    assert det.face_score is not None and np.allclose(det.face_score, det.confidence)
    assert np.all(det.face_score >= 0.6)


def _closeup(
    photo: Path, box: tuple[float, float, float, float], fill: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """A 512 px frame cut around ``box`` so that its longer side fills ``fill`` of the frame."""
    img = read_bgr(photo)
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) / fill
    x0, y0 = (x1 + x2 - side) / 2, (y1 + y2 - side) / 2
    k = 512 / side
    frame = cv2.warpAffine(img, np.array([[k, 0, -x0 * k], [0, k, -y0 * k]]), (512, 512))
    return frame, np.array([[(x1 - x0) * k, (y1 - y0) * k, (x2 - x0) * k, (y2 - y0) * k]], np.float32)


@pytest.mark.integration
def test_yunet_finds_a_face_filling_the_frame() -> None:
    from maskops.boxes import box_iou

    _yunet_or_skip()
    photo = Settings().data_dir / "facemask-photos" / "with_mask" / "0803.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} not found (../shared/datasets)")
    # the face box the data stage's detector finds on the whole photo
    frame, gt = _closeup(photo, (201.2, 82.2, 452.5, 373.3))
    assert len(YuNetDetector(closeup_side=0).detect(frame)) == 0  # no face without the close-up pass
    faces = YuNetDetector().detect(frame)
    assert len(faces) == 1
    assert box_iou(gt, faces.xyxy).max() >= 0.5
    assert (faces.landmarks[..., 0] >= 0).all() and (faces.landmarks[..., 0] <= 512).all()


def _rows(*faces: tuple[float, float, float, float, float]) -> np.ndarray:
    """YuNet rows (x, y, w, h, 5 landmarks, score) from ``(x, y, w, h, score)``."""
    out = np.zeros((len(faces), 15), np.float32)
    for i, (x, y, w, h, s) in enumerate(faces):
        out[i, :4] = (x, y, w, h)
        out[i, 4:14] = np.tile([x + w / 2, y + h / 2], 5)
        out[i, 14] = s
    return out


def test_yunet_closeup_pass_nested_boxes_and_landmark_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    _yunet_or_skip()
    det = YuNetDetector()
    calls: list[float] = []

    def fake_faces_at(image: np.ndarray, scale: float) -> np.ndarray:
        calls.append(scale)
        if scale < 1:  # the close-up pass finds the whole face
            return _rows((40, 30, 440, 470, 0.9))
        # the first pass finds only part of the face (an eye region) and a face cut by the edge
        return _rows((100, 120, 80, 60, 0.7), (480, 10, 60, 40, 0.8))

    monkeypatch.setattr(det, "_faces_at", fake_faces_at)
    frame = np.zeros((512, 512, 3), np.uint8)
    # no face in the first pass is large, but one found: no close-up pass, nothing nested
    monkeypatch.setattr(det, "closeup_ratio", 0.9)
    faces = det.detect(frame)
    assert calls == [1.25] and len(faces) == 2
    # with the default ratio nothing triggers either (largest 80 px < 0.45 x 512) ...
    calls.clear()
    monkeypatch.setattr(det, "closeup_ratio", 0.45)
    assert len(det.detect(frame)) == 2 and calls == [1.25]
    # ... an empty first pass does, and the close-up's face swallows the nested part-face
    monkeypatch.setattr(
        det, "_faces_at", lambda image, scale: fake_faces_at(image, scale) if scale < 1 else _rows()
    )
    calls.clear()
    faces = det.detect(frame)
    assert calls == [192 / 512] and len(faces) == 1
    np.testing.assert_allclose(faces.xyxy[0], [40, 30, 480, 500])
    # a part-face found beside the whole face is dropped as nested; the edge face stays, clipped
    monkeypatch.setattr(
        det,
        "_faces_at",
        lambda image, scale: _rows((40, 30, 440, 470, 0.9), (100, 120, 80, 60, 0.7), (480, 10, 60, 40, 0.8)),
    )
    faces = det.detect(frame)
    assert len(faces) == 2
    np.testing.assert_allclose(faces.xyxy[1], [480, 10, 512, 50])
    assert faces.landmarks[1, :, 0].max() <= 512


def test_yunet_rejects_bad_closeup_options() -> None:
    _yunet_or_skip()
    with pytest.raises(DetectorError, match="closeup_ratio"):
        YuNetDetector(closeup_ratio=0)
