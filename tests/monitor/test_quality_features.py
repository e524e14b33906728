from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskops.monitor.features import image_quality


def test_flat_gray_image() -> None:
    q = image_quality(np.full((40, 60, 3), 128, np.uint8))
    assert q.brightness == pytest.approx(128 / 255)
    assert q.contrast == pytest.approx(0.0)
    assert q.sharpness == pytest.approx(0.0)
    assert q.saturation == pytest.approx(0.0)


def test_half_black_half_white() -> None:
    img = np.zeros((10, 20), np.uint8)
    img[:, 10:] = 255
    q = image_quality(img)
    assert q.brightness == pytest.approx(0.5)
    assert q.contrast == pytest.approx(0.5)
    assert q.saturation == 0.0
    assert q.sharpness > 0


def test_pure_red_is_saturated() -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, :, 2] = 255
    assert image_quality(img).saturation == pytest.approx(1.0)


def test_blur_lowers_sharpness_and_size_does_not_matter_much() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    sharp = image_quality(img).sharpness
    blurred = image_quality(cv2.GaussianBlur(img, (0, 0), 3)).sharpness
    assert blurred < sharp / 10
    big = cv2.resize(img, (1200, 800), interpolation=cv2.INTER_NEAREST)
    assert image_quality(big).brightness == pytest.approx(image_quality(img).brightness, abs=0.01)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (np.zeros((5, 5, 4), np.uint8), "shape"),
        (np.zeros((5, 5, 3), np.float32), "uint8"),
    ],
)
def test_bad_images_raise(image: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        image_quality(image)
