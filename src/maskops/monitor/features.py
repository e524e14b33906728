"""Image quality features of a served image: brightness, contrast, sharpness, saturation.

Pure functions of the pixels, cheap enough for the request path: the image is first subsampled
(every k-th pixel) so its longer side is at most ``QUALITY_SIDE`` pixels, which also makes sharpness
comparable across image sizes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

QUALITY_SIDE = 256


@dataclass(frozen=True)
class ImageQuality:
    """Quality features, each a float.

    Attributes:
        brightness: mean gray level, 0 (black) to 1 (white).
        contrast: standard deviation of the gray levels (RMS contrast), 0 to 0.5.
        sharpness: variance of the Laplacian of the gray image (0-255 scale) at ``QUALITY_SIDE``.
        saturation: mean HSV saturation, 0 (gray) to 1.
    """

    brightness: float
    contrast: float
    sharpness: float
    saturation: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    # every k-th pixel: a view, no copy, ~100x cheaper than an area resize of a full-HD frame
    step = -(-max(image.shape[:2]) // side)
    return image[::step, ::step] if step > 1 else image


def image_quality(image: np.ndarray, side: int = QUALITY_SIDE) -> ImageQuality:
    """Quality features of a BGR (or single-channel gray) uint8 image.

    Args:
        image: (h, w, 3) BGR or (h, w) gray, uint8.
        side: the longer side the image is shrunk to before measuring.

    Returns:
        The four features; a gray image has saturation 0.

    Raises:
        ValueError: empty image, or a shape or dtype that is not a uint8 gray or BGR image.
    """
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"image must have shape (h, w) or (h, w, 3), got {image.shape}")
    if image.size == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    small = _shrink(image, side)
    small = np.ascontiguousarray(small)
    if small.ndim == 3:
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        saturation = float(cv2.cvtColor(small, cv2.COLOR_BGR2HSV)[:, :, 1].mean()) / 255.0
    else:
        gray = small
        saturation = 0.0
    mean, std = cv2.meanStdDev(gray)
    sharpness = 0.0
    if min(gray.shape) >= 3:
        _, lap_std = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_64F))  # numpy's var() is 5x slower
        sharpness = float(lap_std[0, 0]) ** 2
    return ImageQuality(
        brightness=float(mean[0, 0]) / 255.0,
        contrast=float(std[0, 0]) / 255.0,
        sharpness=sharpness,
        saturation=saturation,
    )
