"""Augmentation: shape/dtype kept, deterministic per seed, each op changes the image when forced on."""

from __future__ import annotations

import numpy as np
import pytest

from maskops.data import augment as aug
from maskops.data.augment import AugmentConfig


def _face_like(h: int = 40, w: int = 36, gray: bool = False) -> np.ndarray:
    """A structured image (gradient + bright disc in the middle) so geometric ops are visible."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (h + w)], axis=-1).astype(np.uint8)
    mask = (yy - h / 2) ** 2 + (xx - w / 2.5) ** 2 < (min(h, w) / 4) ** 2
    img[mask] = (30, 200, 240)
    return img[..., 1].copy() if gray else img


ALL_OFF = dict.fromkeys(aug._PROBABILITIES, 0.0)


@pytest.mark.parametrize(
    ("op", "gray"),
    [(op, False) for op in ALL_OFF] + [(op, True) for op in ALL_OFF if op != "grayscale"],
)
def test_each_op_changes_image_when_forced_on(op: str, gray: bool) -> None:
    img = _face_like(gray=gray)
    cfg = AugmentConfig(**{**ALL_OFF, op: 1.0})
    out = aug.augment(img, np.random.default_rng(3), cfg)
    assert out.shape == img.shape
    assert out.dtype == np.uint8
    assert not np.array_equal(out, img), f"{op} left the image unchanged"


def test_all_off_is_identity_copy() -> None:
    img = _face_like()
    out = aug.augment(img, np.random.default_rng(0), AugmentConfig(**ALL_OFF))
    assert np.array_equal(out, img)
    assert out is not img
    assert np.array_equal(aug.augment(img, np.random.default_rng(0), AugmentConfig.off()), img)


@pytest.mark.parametrize("shape", [(40, 36, 3), (17, 61, 3), (50, 50)])
def test_default_chain_keeps_shape_and_is_deterministic(shape: tuple[int, ...]) -> None:
    img = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    cfg = AugmentConfig()
    a = [aug.augment(img, np.random.default_rng(seed), cfg) for seed in range(5)]
    b = [aug.augment(img, np.random.default_rng(seed), cfg) for seed in range(5)]
    for x, y in zip(a, b, strict=True):
        assert x.shape == img.shape and x.dtype == np.uint8
        assert np.array_equal(x, y)
    assert not all(np.array_equal(a[0], x) for x in a[1:]), "different seeds should differ"
    assert np.array_equal(img, np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8))


def test_crop_keeps_the_central_face() -> None:
    # a white square exactly covering the central keep region stays fully visible (never cropped away)
    h = w = 60
    img = np.zeros((h, w, 3), np.uint8)
    img[18:42, 18:42] = 255  # central 40%
    for seed in range(30):
        out = aug.random_resized_crop(img, np.random.default_rng(seed), scale=(0.3, 1.0), keep=0.6)
        bright = out[..., 0] > 127
        ys, xs = np.nonzero(bright)
        assert ys.size, "the face disappeared"
        assert ys.min() > 0 and ys.max() < h - 1 and xs.min() > 0 and xs.max() < w - 1
        # zoom in at most 1/keep: the square is at most (24/36) of the side + interpolation slack
        assert (xs.max() - xs.min() + 1) <= 24 / 36 * w + 2


def test_gamma_darkens_and_hflip_mirrors() -> None:
    img = _face_like()
    assert aug.adjust_gamma(img, 2.0).mean() < img.mean()
    assert np.array_equal(aug.hflip(img)[:, 0], img[:, -1])
    assert np.array_equal(aug.hflip(aug.hflip(img)), img)


def test_config_from_dict_validates() -> None:
    cfg = AugmentConfig.from_dict({"hflip": 0.0, "jpeg_quality": [50, 60]})
    assert cfg.hflip == 0.0 and cfg.jpeg_quality == (50, 60)
    with pytest.raises(ValueError, match=r"unknown augment option.*'flip'.*hflip"):
        AugmentConfig.from_dict({"flip": 0.5})
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig.from_dict({"blur": 1.5})
    with pytest.raises(ValueError, match="low <= high"):
        AugmentConfig.from_dict({"gamma": [3.0, 1.0]})


def test_rejects_non_uint8() -> None:
    with pytest.raises(ValueError, match="uint8"):
        aug.augment(np.zeros((8, 8, 3), np.float32), np.random.default_rng(0), AugmentConfig())


def test_downscale_blurs_large_images_and_leaves_small_ones() -> None:
    img = np.random.default_rng(2).integers(0, 256, size=(120, 100, 3), dtype=np.uint8)
    out = aug.downscale(img, 20)
    assert out.shape == img.shape and out.dtype == np.uint8
    # a 20-px round trip removes the pixel noise: far less high-frequency energy
    assert (
        np.abs(np.diff(out.astype(int), axis=1)).mean()
        < 0.3 * np.abs(np.diff(img.astype(int), axis=1)).mean()
    )
    small = img[:18, :30]
    assert np.array_equal(aug.downscale(small, 20), small)


def test_downscale_off_keeps_the_previous_stream() -> None:
    img = _face_like()
    a = aug.augment(img, np.random.default_rng(5), AugmentConfig())
    b = aug.augment(img, np.random.default_rng(5), AugmentConfig(downscale=0.0, downscale_px=(5, 9)))
    assert np.array_equal(a, b)
