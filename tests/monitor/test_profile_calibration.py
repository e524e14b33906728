"""The profile builder keeps each value's image, so the profile's drift thresholds are calibrated
on windows drawn photo by photo (``maskops.monitor.profile.ProfileCollector``)."""

from __future__ import annotations

import numpy as np
import pytest

from maskops.detect.pipeline import FaceResult
from maskops.monitor import profile as profile_module
from maskops.monitor.profile import ProfileCollector
from maskops.types import Detections

NAMES = ["with_mask", "without_mask", "mask_weared_incorrect"]


def _result(n: int, rng: np.random.Generator, cls: int) -> FaceResult:
    x = rng.uniform(0, 100, n)
    side = rng.uniform(20, 60)  # the faces of one photo have one size
    xyxy = np.stack([x, x, x + side, x + side], axis=1).astype(np.float32)
    probs = np.tile(np.eye(3)[cls] * 0.8 + 0.2 / 3, (n, 1))
    det = Detections(
        xyxy=xyxy,
        confidence=probs.max(1).astype(np.float32),
        class_id=np.full(n, cls, np.int64),
        face_score=rng.uniform(0.5, 1, n).astype(np.float32),
    )
    emb = rng.normal(size=(n, 4)).astype(np.float16)
    return FaceResult(det, probs, [None] * n, {}, (160, 160), tuple(NAMES), emb)


def test_each_value_keeps_its_image_and_the_store_features_are_calibrated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(0)
    collector = ProfileCollector(NAMES)
    faces = [0, 3, 1, 2, 0, 5] * 8  # 48 photos, 32 with faces
    for i, n in enumerate(faces):
        collector.add_image(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        collector.add_faces(_result(n, rng, i % 3), None)
    seen: dict = {}
    real = profile_module.build_reference

    def spy(**kwargs):  # type: ignore[no-untyped-def]
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(profile_module, "build_reference", spy)
    profile = collector.profile(calibration_faces=(40,), calibration_windows=20)

    np.testing.assert_array_equal(seen["faces_per_image"], faces)
    index = seen["image_index"]
    expected_face_images = np.repeat(np.arange(len(faces)), faces).tolist()
    for name in ("face_size", "face_score", "confidence", "label", "embedding"):
        assert list(index[name]) == expected_face_images, name
    for name in ("brightness", "contrast", "sharpness", "saturation", "face_count"):
        assert list(index[name]) == list(range(len(faces))), name
    assert not any(name.startswith("p_") for name in index)  # not logged by the store

    cal = profile.calibration
    assert cal is not None
    assert set(cal.thresholds) == {
        "brightness",
        "contrast",
        "sharpness",
        "saturation",
        "face_count",
        "face_size",
        "face_score",
        "confidence",
        "label",
        "embedding",
    }
    assert cal.images == 48 and cal.with_faces == 32
