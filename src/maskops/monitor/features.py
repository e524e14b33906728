"""Image quality features of a served image: brightness, contrast, sharpness, saturation.

Pure functions of the pixels, cheap enough for the request path (~0.3 ms for 640x480): the image is
first subsampled (nearest neighbour) so its longer side is at most ``QUALITY_SIDE`` pixels, which
also makes sharpness comparable across image sizes.
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
    # nearest-neighbour subsampling: ~7x cheaper than numpy's strided copy, ~20x than an area resize
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)


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
    small = np.ascontiguousarray(small)  # a no-op unless the input was a view
    if small.ndim == 3:
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        saturation = float(cv2.mean(cv2.cvtColor(small, cv2.COLOR_BGR2HSV))[1]) / 255.0
    else:
        gray = small
        saturation = 0.0
    mean, std = cv2.meanStdDev(gray)
    sharpness = 0.0
    if min(gray.shape) >= 3:
        # int16 holds the 3x3 Laplacian of uint8 exactly; OpenCV's reduction: numpy's var() is 5x slower
        _, lap_std = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_16S))
        sharpness = float(lap_std[0, 0]) ** 2
    return ImageQuality(
        brightness=float(mean[0, 0]) / 255.0,
        contrast=float(std[0, 0]) / 255.0,
        sharpness=sharpness,
        saturation=saturation,
    )
