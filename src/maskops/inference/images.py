"""From image bytes (an upload, a file) to a checked BGR image: the one loader of the API and the CLI.

Order matters, and each step runs once: the byte size is checked first, then the type is sniffed
from the magic numbers (never the file name or a declared content type), then the file is checked
for truncation, then the pixel count is read from the header (PIL parses headers lazily, without
decoding), and only then is the image decoded (EXIF orientation applied) and turned into BGR.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from maskops.data.images import (
    colour_mode,
    decode_raw,
    png_colour_mode,
    sniff_format,
    to_bgr,
    truncation_reason,
)

# our own pixel limit is checked before PIL's; PIL's warning would only be noise
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

SUPPORTED = "JPEG, PNG, GIF, WEBP, BMP, TIFF"


class ImageRejected(ValueError):
    """Bytes that are not a usable image.

    Attributes:
        code: ``image_too_large`` (bytes or pixels over a limit), ``unsupported_media_type`` (not an
            image) or ``invalid_image`` (empty, truncated, unreadable or undecodable).
        reason: what is wrong, without the name.
        message: ``"<name>: <reason>"``.
        details: figures behind the reason (sizes, limits, format).
    """

    def __init__(self, code: str, name: str, reason: str, details: dict[str, object] | None = None) -> None:
        super().__init__(f"{name}: {reason}")
        self.code = code
        self.name = name
        self.reason = reason
        self.message = f"{name}: {reason}"
        self.details = details or {}


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image and what was learnt reading it."""

    image: np.ndarray  # BGR uint8, EXIF orientation applied
    name: str
    format: str  # from the content: jpeg, png, gif, webp, bmp, tiff
    mode: str  # colour mode of the file: L, LA, RGB, RGBA, P
    width: int
    height: int


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image header without decoding the pixels, or ``None``.

    Raises:
        PIL.Image.DecompressionBombError: the header declares far more pixels than PIL allows.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError:
        raise
    except Exception:  # PIL raises many types for unreadable headers; the decoder gives the reason
        return None


def decode_image(
    data: bytes, name: str = "<bytes>", *, max_bytes: int | None = None, max_pixels: int | None = None
) -> DecodedImage:
    """Check and decode image bytes into BGR.

    Args:
        data: the file's bytes.
        name: the file or upload name (messages only).
        max_bytes: byte limit (``None``: none).
        max_pixels: width x height limit, checked from the header before decoding (``None``: none).

    Raises:
        ImageRejected: over a limit, not an image, empty, truncated, or undecodable (``.code`` says
            which, ``.reason`` why).
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageRejected(
            "image_too_large",
            name,
            f"{len(data)} bytes is over the limit of {max_bytes} bytes",
            {"bytes": len(data), "max_bytes": max_bytes},
        )
    if not data:
        raise ImageRejected("invalid_image", name, "empty file")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected(
            "unsupported_media_type",
            name,
            f"not an image (supported: {SUPPORTED})",
            {"magic": data[:8].hex()},
        )
    reason = truncation_reason(data, fmt)
    if reason:
        raise ImageRejected("invalid_image", name, reason, {"format": fmt})
    if max_pixels is not None:
        _check_pixels(data, name, fmt, max_pixels)
    raw = decode_raw(data, fmt)
    if raw is None:
        raise ImageRejected("invalid_image", name, f"{fmt} data could not be decoded", {"format": fmt})
    mode = (png_colour_mode(data) if fmt == "png" else None) or colour_mode(raw)
    image = to_bgr(raw)
    h, w = image.shape[:2]
    return DecodedImage(image=image, name=name, format=fmt, mode=mode, width=w, height=h)


def _check_pixels(data: bytes, name: str, fmt: str, max_pixels: int) -> None:
    try:
        size = header_size(data)
    except Image.DecompressionBombError:
        raise ImageRejected(
            "image_too_large",
            name,
            f"the header declares more pixels than allowed ({max_pixels})",
            {"max_pixels": max_pixels},
        ) from None
    if size is None:
        # never hand a header nobody could read to the decoder: its pixel count is unknown
        raise ImageRejected("invalid_image", name, f"unreadable {fmt} header", {"format": fmt})
    if size[0] * size[1] > max_pixels:
        raise ImageRejected(
            "image_too_large",
            name,
            f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels is over the limit of {max_pixels}",
            {"width": size[0], "height": size[1], "max_pixels": max_pixels},
        )


def load_image_file(
    path: str | Path, *, max_bytes: int | None = None, max_pixels: int | None = None
) -> DecodedImage:
    """Read a file and decode it with ``decode_image`` (named by its path).

    Raises:
        ImageRejected: the file cannot be read (``invalid_image``), or see ``decode_image``.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageRejected("invalid_image", str(path), f"cannot read file: {exc.strerror or exc}") from exc
    return decode_image(data, str(path), max_bytes=max_bytes, max_pixels=max_pixels)
