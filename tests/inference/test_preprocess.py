"""``preprocess`` (table lookup) against the reference chain ``normalize(resize_to(to_rgb(img)))``."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from maskops.inference.preprocess import normalize, preprocess, resize_to, to_rgb
from maskops.types import ModelSpec


def _spec(**kw: object) -> ModelSpec:
    base = ModelSpec(
        task="t",
        class_names=("a", "b"),
        input_size=(24, 20),
        mean=(123.675, 116.28, 103.53),
        std=(58.395, 57.12, 57.375),
    )
    return dataclasses.replace(base, **kw)


def _reference(images: list[np.ndarray], spec: ModelSpec) -> np.ndarray:
    gray = spec.color == "gray"
    return np.stack([normalize(resize_to(to_rgb(i, grayscale=gray), spec.input_size), spec) for i in images])


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, (37, 29, 3), dtype=np.uint8),  # BGR, shrunk by < 2 (linear)
        rng.integers(0, 256, (61, 30, 3), dtype=np.uint8),  # BGR, shrunk by >= 2 on a side (area)
        rng.integers(0, 256, (9, 7, 3), dtype=np.uint8),  # BGR, enlarged (linear)
        rng.integers(0, 256, (24, 20, 3), dtype=np.uint8),  # BGR, already at input size
        rng.integers(0, 256, (31, 40), dtype=np.uint8),  # gray
        rng.integers(0, 256, (31, 40, 1), dtype=np.uint8),  # gray with a channel axis
        rng.integers(0, 256, (50, 44, 4), dtype=np.uint8),  # BGRA
    ]


@pytest.mark.parametrize("color", ["rgb", "gray"])
def test_preprocess_is_bit_exact_with_the_reference_chain(color: str) -> None:
    spec = _spec(color=color)
    images = _images()
    before = [i.copy() for i in images]
    got = preprocess(images, spec)
    assert got.dtype == np.float32 and got.shape == (len(images), 3, 24, 20)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, _reference(images, spec))
    for a, b in zip(images, before, strict=True):  # inputs untouched
        np.testing.assert_array_equal(a, b)


def test_preprocess_follows_the_cards_mean_and_std() -> None:
    image = np.full((24, 20, 3), (10, 20, 30), np.uint8)  # BGR
    spec = _spec(mean=(0.0, 10.0, 20.0), std=(2.0, 4.0, 5.0))
    out = preprocess([image], spec)[0]
    # RGB order: R = 30, G = 20, B = 10
    assert out[0, 0, 0] == pytest.approx((30 - 0) / 2)
    assert out[1, 0, 0] == pytest.approx((20 - 10) / 4)
    assert out[2, 0, 0] == pytest.approx((10 - 20) / 5)


def test_preprocess_takes_non_uint8_images_through_the_reference_chain() -> None:
    image = np.random.default_rng(1).uniform(0, 255, (30, 30, 3)).astype(np.float32)
    spec = _spec()
    np.testing.assert_array_equal(preprocess([image], spec), _reference([image], spec))


def test_preprocess_rejects_an_empty_image_by_index() -> None:
    with pytest.raises(ValueError, match="image 1 is empty"):
        preprocess([np.zeros((4, 4, 3), np.uint8), np.zeros((0, 4, 3), np.uint8)], _spec())


def test_resize_to_picks_area_only_for_shrinking_by_two_or_more() -> None:
    rng = np.random.default_rng(1)
    cases = [
        ((100, 90), (80, 80), cv2.INTER_LINEAR),  # shrunk by 1.25
        ((159, 120), (80, 80), cv2.INTER_LINEAR),  # 1.99 on the taller side
        ((160, 120), (80, 80), cv2.INTER_AREA),  # 2.0 on the taller side
        ((50, 400), (80, 80), cv2.INTER_AREA),  # enlarged in height, shrunk 5x in width
        ((30, 20), (80, 80), cv2.INTER_LINEAR),  # enlarged
    ]
    for shape, (h, w), interpolation in cases:
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        got = resize_to(image, (h, w))
        assert got.shape == (h, w, 3)
        np.testing.assert_array_equal(
            got, cv2.resize(image, (w, h), interpolation=interpolation), err_msg=str(shape)
        )
    same = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
    assert resize_to(same, (80, 80)) is same
