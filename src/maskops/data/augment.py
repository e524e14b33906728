"""Training augmentation for face crops and cell images: numpy + OpenCV only.

Every operation takes a uint8 image (H×W×3 BGR or H×W gray) and a seeded ``numpy.random.Generator``
and returns a new uint8 image of the same shape, so a sample's augmentation is reproducible from
``(seed, epoch, index)``. ``augment`` chains them with the probabilities of an ``AugmentConfig``.

The crops given to the classifier already carry a margin of context around the face (the crop
stage adds ``crops.margin`` per side), so the random resized crop is constrained to keep the
central ``keep`` fraction of the image (the face) inside the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np

_BORDER = cv2.BORDER_REFLECT_101
_PROBABILITIES = (
    "hflip",
    "crop",
    "rotate",
    "downscale",
    "color",
    "low_light",
    "blur",
    "motion_blur",
    "jpeg",
    "grayscale",
)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the training augmentation (``TrainConfig.augment`` overrides them).

    Attributes:
        enabled: False turns every operation off (eval-like training input).
        hflip: probability of a horizontal flip.
        crop: probability of a random resized crop.
        crop_scale: window area as a fraction of the image area; > 1 zooms out (reflected border).
        crop_ratio: window aspect (w/h) relative to the image's.
        crop_keep: central fraction of each side (the face) that the window must contain.
        rotate: probability of a small rotation.
        max_rotate: largest rotation in degrees (either way).
        downscale: probability of a low-resolution round trip: the image is shrunk so that its
            shorter side is ``downscale_px`` pixels, then enlarged back (a large studio face made to
            look like the 10-30 px faces of crowd photos). Off by default.
        downscale_px: range of the shorter side in pixels; images already smaller are left alone.
        color: probability of brightness/contrast/saturation jitter.
        brightness: largest additive brightness change as a fraction of 255.
        contrast: largest relative contrast change.
        saturation: largest relative saturation change (colour images only).
        low_light: probability of a darkening gamma (dim rooms, night-time CCTV).
        gamma: gamma range for ``low_light``; > 1 darkens.
        blur: probability of a gaussian blur.
        blur_sigma: gaussian sigma range in pixels.
        motion_blur: probability of a linear motion blur.
        motion_kernel: motion kernel length range in pixels (odd lengths are used).
        jpeg: probability of a JPEG re-encode.
        jpeg_quality: JPEG quality range.
        grayscale: probability of dropping colour (kept 3-channel).
    """

    enabled: bool = True
    hflip: float = 0.5
    crop: float = 0.8
    crop_scale: tuple[float, float] = (0.7, 1.15)
    crop_ratio: tuple[float, float] = (0.85, 1.18)
    crop_keep: float = 0.6
    rotate: float = 0.3
    max_rotate: float = 12.0
    downscale: float = 0.0
    downscale_px: tuple[float, float] = (10.0, 28.0)
    color: float = 0.8
    brightness: float = 0.2
    contrast: float = 0.3
    saturation: float = 0.3
    low_light: float = 0.15
    gamma: tuple[float, float] = (1.5, 3.0)
    blur: float = 0.15
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    motion_blur: float = 0.1
    motion_kernel: tuple[int, int] = (3, 9)
    jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 90)
    grayscale: float = 0.05

    def __post_init__(self) -> None:
        for name in _PROBABILITIES:
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augment.{name} is a probability in [0, 1], got {value}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple | list):
                if len(value) != 2 or float(value[0]) > float(value[1]):
                    raise ValueError(
                        f"augment.{f.name} must be a (low, high) pair with low <= high, got {value}"
                    )
                object.__setattr__(self, f.name, (value[0], value[1]))
        if not 0.0 < self.crop_keep <= 1.0:
            raise ValueError(f"augment.crop_keep must be in (0, 1], got {self.crop_keep}")
        if self.crop_scale[0] <= 0:
            raise ValueError(f"augment.crop_scale must be positive, got {self.crop_scale}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AugmentConfig:
        """Build from ``TrainConfig.augment``; unknown keys raise a ValueError listing the valid ones."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown augment option(s) {unknown}; valid options: {sorted(known)}")
        for key, value in data.items():
            if isinstance(value, list):
                data[key] = tuple(value)
        return cls(**data)

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(enabled=False)


def _check(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected a uint8 HxW or HxWx3 image, got {image.dtype} {image.shape}")


def hflip(image: np.ndarray) -> np.ndarray:
    """Mirror left-right."""
    return np.ascontiguousarray(image[:, ::-1])


def random_resized_crop(
    image: np.ndarray,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.7, 1.15),
    ratio: tuple[float, float] = (0.85, 1.18),
    keep: float = 0.6,
) -> np.ndarray:
    """Crop a random window that contains the central ``keep`` box and resize it back to the input size.

    Args:
        image: uint8 image.
        rng: random source.
        scale: window area over image area (values > 1 zoom out with a reflected border).
        ratio: window aspect relative to the image aspect (log-uniform).
        keep: the window always contains the central ``keep``×``keep`` part of the image.
    """
    h, w = image.shape[:2]
    area = float(rng.uniform(*scale))
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    cw = float(np.clip(w * math.sqrt(area * aspect), keep * w, 1.5 * w))
    ch = float(np.clip(h * math.sqrt(area / aspect), keep * h, 1.5 * h))
    # window [x0, x0 + cw] must cover the central [(1-keep)/2, (1+keep)/2] * w
    lo_x, hi_x = (1 + keep) / 2 * w - cw, (1 - keep) / 2 * w
    lo_y, hi_y = (1 + keep) / 2 * h - ch, (1 - keep) / 2 * h
    if cw <= w:
        lo_x, hi_x = max(lo_x, 0.0), min(hi_x, w - cw)
    if ch <= h:
        lo_y, hi_y = max(lo_y, 0.0), min(hi_y, h - ch)
    x0 = float(rng.uniform(lo_x, hi_x)) if hi_x > lo_x else (w - cw) / 2
    y0 = float(rng.uniform(lo_y, hi_y)) if hi_y > lo_y else (h - ch) / 2
    # affine map window -> full output
    m = np.array([[w / cw, 0.0, -x0 * w / cw], [0.0, h / ch, -y0 * h / ch]], np.float64)
    shrinking = cw > w or ch > h
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.warpAffine(image, m, (w, h), flags=interp, borderMode=_BORDER)


def rotate(image: np.ndarray, angle: float) -> np.ndarray:
    """Rotate by ``angle`` degrees about the centre (reflected border, same size)."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), float(angle), 1.0)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=_BORDER)


def downscale(image: np.ndarray, short_side: float) -> np.ndarray:
    """Shrink so the shorter side is ``short_side`` px (area), then enlarge back (linear), same shape.

    An image whose shorter side is already at most ``short_side`` is returned unchanged (a copy).
    """
    h, w = image.shape[:2]
    s = float(short_side) / min(h, w)
    if s >= 1.0:
        return image.copy()
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).reshape(image.shape)


def adjust_color(
    image: np.ndarray, *, brightness: float = 0.0, contrast: float = 1.0, saturation: float = 1.0
) -> np.ndarray:
    """``(x - mean) * contrast + mean + brightness*255``, then saturation scaling (colour images only)."""
    x = image.astype(np.float32)
    mean = float(x.mean())
    x = (x - mean) * contrast + mean + brightness * 255.0
    if image.ndim == 3 and saturation != 1.0:
        gray = x @ np.array([0.114, 0.587, 0.299], np.float32)  # BGR luma
        x = gray[..., None] + (x - gray[..., None]) * saturation
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def adjust_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """Apply ``255 * (x/255) ** gamma``; ``gamma > 1`` darkens (low light)."""
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** float(gamma) + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(image, lut)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with the given sigma (kernel ~ 6 sigma)."""
    k = max(3, int(2 * math.ceil(3 * sigma) + 1))
    return cv2.GaussianBlur(image, (k, k), sigmaX=float(sigma), borderType=_BORDER)


def motion_blur(image: np.ndarray, length: int, angle: float) -> np.ndarray:
    """Linear motion blur: a line kernel of ``length`` pixels at ``angle`` degrees."""
    length = max(3, int(length) | 1)
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    m = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), float(angle), 1.0)
    kernel = np.asarray(cv2.warpAffine(kernel, m, (length, length)), np.float32)
    total = float(kernel.sum())
    if total <= 0:
        kernel[length // 2, :] = 1.0
        total = float(length)
    return cv2.filter2D(image, -1, kernel / total, borderType=_BORDER)


def jpeg_reencode(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode to JPEG at ``quality`` and decode again (blocking and ringing artefacts)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 images
        return image
    flag = cv2.IMREAD_GRAYSCALE if image.ndim == 2 else cv2.IMREAD_COLOR
    out = cv2.imdecode(buf, flag)
    if out is None:  # pragma: no cover - decoding what OpenCV just encoded
        return image
    return out.reshape(image.shape)


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """Drop colour, keeping the shape (a 3-channel image stays 3-channel)."""
    if image.ndim == 2:
        return image.copy()
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def augment(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Apply the configured random augmentation chain to one image.

    Order: geometry (flip, crop, rotation), resolution (downscale), photometric (colour, low light, grayscale), then
    degradations (blur, motion blur, JPEG), as a camera would produce them.

    Args:
        image: uint8 H×W×3 (BGR) or H×W image.
        rng: seeded generator; the same seed gives the same output.
        cfg: probabilities and ranges.

    Returns:
        A new uint8 image with the input's shape.
    """
    _check(image)
    out = image
    if not cfg.enabled:
        return out.copy()
    if rng.random() < cfg.hflip:
        out = hflip(out)
    if rng.random() < cfg.crop:
        out = random_resized_crop(out, rng, cfg.crop_scale, cfg.crop_ratio, cfg.crop_keep)
    if rng.random() < cfg.rotate:
        out = rotate(out, rng.uniform(-cfg.max_rotate, cfg.max_rotate))
    # drawn only when enabled, so configs without it keep their exact augmentation stream
    if cfg.downscale > 0 and rng.random() < cfg.downscale:
        out = downscale(out, rng.uniform(*cfg.downscale_px))
    if rng.random() < cfg.color:
        out = adjust_color(
            out,
            brightness=float(rng.uniform(-cfg.brightness, cfg.brightness)),
            contrast=float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)),
            saturation=float(rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)),
        )
    if rng.random() < cfg.low_light:
        out = adjust_gamma(out, rng.uniform(*cfg.gamma))
    if rng.random() < cfg.grayscale:
        out = to_grayscale(out)
    if rng.random() < cfg.blur:
        out = gaussian_blur(out, rng.uniform(*cfg.blur_sigma))
    if rng.random() < cfg.motion_blur:
        out = motion_blur(
            out, int(rng.integers(cfg.motion_kernel[0], cfg.motion_kernel[1] + 1)), rng.uniform(0, 180)
        )
    if rng.random() < cfg.jpeg:
        out = jpeg_reencode(out, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    if out is image:
        out = image.copy()
    return out
