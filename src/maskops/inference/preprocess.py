"""The one preprocessing function: every code path that feeds a classifier goes through it.

Training (validation/test), ONNX parity checks, evaluation and serving all call ``preprocess``
with the model's ``ModelSpec``, so the input pipeline is declared once.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from maskops.types import ModelSpec


def to_rgb(image: np.ndarray, *, grayscale: bool = False) -> np.ndarray:
    """BGR/BGRA/gray uint8 image -> 3-channel RGB uint8 (gray replicated when ``grayscale``)."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")
    if image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if grayscale:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# Shrinking by at least this factor (on the more shrunk side) uses area interpolation; below it,
# linear interpolation reads every source pixel already (its 2x2 footprint at most 2 pixels
# apart) and is 4-5x cheaper than OpenCV's area path at non-integer factors (~30 vs ~130 us for a
# 100 px face to 80 px; every detected face goes through this once).
AREA_FROM_FACTOR = 2.0


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (height, width): area interpolation when shrinking by ``AREA_FROM_FACTOR`` or
    more on a side, linear otherwise (enlarging, or shrinking by less)."""
    h, w = size
    if image.shape[0] == h and image.shape[1] == w:
        return image
    factor = max(image.shape[0] / h, image.shape[1] / w)
    interpolation = cv2.INTER_AREA if factor >= AREA_FROM_FACTOR else cv2.INTER_LINEAR
    return cv2.resize(image, (w, h), interpolation=interpolation)


def normalize(rgb: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """HxWx3 uint8 RGB (already at input size) -> 3xHxW float32 normalised as the spec says."""
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    x = (rgb.astype(np.float32) - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


@lru_cache(maxsize=8)
def _lookup_rows(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """Per channel, a (1, 256) float32 table (the form ``cv2.LUT`` takes): ``normalize``'s value for
    each uint8 level, computed the same way."""
    levels = np.arange(256, dtype=np.uint8)[:, None].astype(np.float32)
    table = (levels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    rows = tuple(np.ascontiguousarray(table[:, c]).reshape(1, 256) for c in range(table.shape[1]))
    for row in rows:
        row.setflags(write=False)
    return rows


def preprocess(images_bgr: Sequence[np.ndarray], spec: ModelSpec) -> np.ndarray:
    """OpenCV BGR crops -> an NCHW float32 batch for the model described by ``spec``.

    Args:
        images_bgr: uint8 images as OpenCV decodes them (BGR, BGRA or gray), any size.
        spec: the model card; ``input_size``, ``mean``, ``std`` and ``color`` are used.

    Returns:
        (n, 3, H, W) float32 array; (0, 3, H, W) for an empty input.
    """
    h, w = spec.input_size
    if len(images_bgr) == 0:
        return np.zeros((0, 3, h, w), np.float32)
    grayscale = spec.color == "gray"
    # a table lookup per channel gives normalize()'s float32 values bit for bit, straight into the
    # NCHW batch (no float temporaries, no transpose); a BGR crop is resized as is and its channels
    # read in reverse (resizing commutes with the BGR -> RGB swap)
    rows = _lookup_rows(tuple(spec.mean), tuple(spec.std))
    batch = np.empty((len(images_bgr), 3, h, w), np.float32)
    for i, img in enumerate(images_bgr):
        if img is None or img.size == 0:
            raise ValueError(f"image {i} is empty")
        if img.dtype != np.uint8:
            batch[i] = normalize(resize_to(to_rgb(img, grayscale=grayscale), (h, w)), spec)
            continue
        if not grayscale and img.ndim == 3 and img.shape[2] == 3:
            small, order = resize_to(img, (h, w)), (2, 1, 0)
        else:
            small, order = resize_to(to_rgb(img, grayscale=grayscale), (h, w)), (0, 1, 2)
        # planes split by OpenCV, each mapped through its channel's float32 table straight into the
        # batch (cv2.LUT with dst): the same values as np.take, in about half the time
        planes = cv2.split(small)
        for c, src in enumerate(order):
            cv2.LUT(planes[src], rows[c], dst=batch[i, c])
    return batch
