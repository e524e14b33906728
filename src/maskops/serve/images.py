"""Turning uploaded bytes into a BGR image, refusing what must not be decoded.

Order matters: the byte size is checked first, then the type is sniffed from the magic numbers
(not the file name or the declared content type), then the pixel count is read from the header
(PIL parses headers lazily, without decoding), and only then is the image decoded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from maskops.data.images import ImageReadError, load_image_bytes, sniff_format, to_bgr, truncation_reason

# our own pixel limit is checked before PIL's; PIL's warning would only be noise
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageRejected(ValueError):
    """An upload that cannot be used; ``status`` and ``code`` say how the API answers it."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, object] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


@dataclass(frozen=True)
class DecodedImage:
    image: np.ndarray  # BGR uint8
    name: str
    format: str
    width: int
    height: int


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image header without decoding the pixels, or ``None``."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError:
        raise
    except Exception:  # PIL raises many types for unreadable headers; the decoder gives the reason
        return None


def decode_upload(data: bytes, name: str, *, max_bytes: int, max_pixels: int) -> DecodedImage:
    """Check and decode one uploaded image.

    Args:
        data: the uploaded bytes.
        name: the client's file name (messages only).
        max_bytes: byte limit of one image.
        max_pixels: width x height limit.

    Raises:
        ImageRejected: 413 (too many bytes or pixels), 415 (not an image), 422 (empty, truncated
            or corrupt, with the reason).
    """
    if len(data) > max_bytes:
        raise ImageRejected(
            413,
            "image_too_large",
            f"{name}: {len(data)} bytes is over the limit of {max_bytes} bytes",
            {"bytes": len(data), "max_bytes": max_bytes},
        )
    if not data:
        raise ImageRejected(422, "invalid_image", f"{name}: empty file")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected(
            415,
            "unsupported_media_type",
            f"{name}: not an image (supported: JPEG, PNG, GIF, WEBP, BMP, TIFF)",
            {"magic": data[:8].hex()},
        )
    reason = truncation_reason(data, fmt)
    if reason:
        raise ImageRejected(422, "invalid_image", f"{name}: {reason}", {"format": fmt})
    try:
        size = header_size(data)
    except Image.DecompressionBombError:
        raise ImageRejected(
            413,
            "image_too_large",
            f"{name}: the header declares more pixels than allowed ({max_pixels})",
            {"max_pixels": max_pixels},
        ) from None
    if size is None:
        # never hand a header nobody could read to the decoder: its pixel count is unknown
        raise ImageRejected(422, "invalid_image", f"{name}: unreadable {fmt} header", {"format": fmt})
    if size[0] * size[1] > max_pixels:
        raise ImageRejected(
            413,
            "image_too_large",
            f"{name}: {size[0]}x{size[1]} = {size[0] * size[1]} pixels is over the limit of {max_pixels}",
            {"width": size[0], "height": size[1], "max_pixels": max_pixels},
        )
    try:
        loaded = load_image_bytes(data, name)
    except ImageReadError as exc:
        raise ImageRejected(422, "invalid_image", f"{name}: {exc.reason}", {"format": fmt}) from None
    image = to_bgr(loaded.image)
    h, w = image.shape[:2]
    return DecodedImage(image=image, name=name, format=loaded.format, width=w, height=h)
