"""Reading images by their content: type sniffing, truncation checks, decoding, colour modes.

The raw datasets carry odd suffixes (``.jpg_1088Wx1632H``), webp files named ``.jpg`` and RGBA
PNGs, so the suffix is never trusted: the type comes from the magic numbers at the start of the
bytes, and decoding goes through ``cv2.imdecode`` on those bytes.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# Magic numbers (offset 0 unless noted).
_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"
_GIF = (b"GIF87a", b"GIF89a")
_TIFF = (b"II*\x00", b"MM\x00*")
_BMP = b"BM"

# A JPEG's EOI marker must sit near the end; trailing padding after it is common, so look at a
# short tail only (an EXIF thumbnail earlier in the file has its own EOI, which must not count).
_JPEG_TAIL = 4096
_PNG_IEND = b"IEND\xaeB`\x82"

IMAGE_FORMATS = ("jpeg", "png", "gif", "webp", "bmp", "tiff")


class ImageReadError(ValueError):
    """An image file that cannot be used: not an image, truncated, or undecodable."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def sniff_format(data: bytes) -> str | None:
    """The image format from the leading bytes, or ``None`` when no known magic number matches.

    Args:
        data: the file content (only the first 12 bytes are looked at).

    Returns:
        One of ``IMAGE_FORMATS`` or ``None``.
    """
    if data.startswith(_JPEG):
        return "jpeg"
    if data.startswith(_PNG):
        return "png"
    if data[:6] in _GIF:
        return "gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in _TIFF:
        return "tiff"
    if data.startswith(_BMP) and len(data) >= 14:
        return "bmp"
    return None


def truncation_reason(data: bytes, fmt: str) -> str | None:
    """Why the bytes of a ``fmt`` image look cut short, or ``None`` when the end marker is there.

    Checks: JPEG ends with the EOI marker ``FFD9`` (within the last 4 KiB), PNG has its ``IEND``
    chunk, GIF ends with the ``;`` trailer, WEBP/BMP are at least as long as their header says.
    """
    if fmt == "jpeg":
        if data.rfind(b"\xff\xd9", max(0, len(data) - _JPEG_TAIL)) < 0:
            return "truncated JPEG: no end-of-image marker (FFD9)"
    elif fmt == "png":
        if data.rfind(_PNG_IEND, max(0, len(data) - 64)) < 0:
            return "truncated PNG: no IEND chunk"
    elif fmt == "gif":
        if not data.rstrip(b"\x00").endswith(b";"):
            return "truncated GIF: no trailer byte"
    elif fmt == "webp":
        declared = struct.unpack("<I", data[4:8])[0] + 8
        if len(data) < declared:
            return f"truncated WEBP: {len(data)} bytes, header declares {declared}"
    elif fmt == "bmp":
        declared = struct.unpack("<I", data[2:6])[0]
        if len(data) < declared:
            return f"truncated BMP: {len(data)} bytes, header declares {declared}"
    return None


def png_colour_mode(data: bytes) -> str | None:
    """Colour mode declared in a PNG's IHDR chunk (``L``, ``LA``, ``RGB``, ``RGBA``, ``P``)."""
    if len(data) < 26 or not data.startswith(_PNG):
        return None
    return {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}.get(data[25])


def colour_mode(image: np.ndarray) -> str:
    """Colour mode of a decoded array: ``L`` (one channel), ``RGB``, ``RGBA``."""
    if image.ndim == 2 or image.shape[2] == 1:
        return "L"
    return "RGBA" if image.shape[2] == 4 else "RGB"


def decode_raw(data: bytes, fmt: str) -> np.ndarray | None:
    """Decode bytes keeping channels (gray stays gray, alpha is kept), or ``None`` on failure.

    JPEG and TIFF are decoded with EXIF orientation applied (they never carry alpha); the other
    formats keep every channel.
    """
    buf = np.frombuffer(data, np.uint8)
    flags = cv2.IMREAD_ANYCOLOR if fmt in ("jpeg", "tiff") else cv2.IMREAD_UNCHANGED
    try:
        image: np.ndarray | None = cv2.imdecode(buf, flags)
    except cv2.error:
        return None
    if image is None or image.size == 0:
        return None
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        # OpenCV takes dst=None (a new array); its type stub does not say so
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)  # type: ignore[call-overload]
    return image


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Any decoded array -> 3-channel BGR uint8; transparent pixels are composited over white."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        rgb = image[:, :, :3].astype(np.float32)
        return np.clip(rgb * alpha + 255.0 * (1.0 - alpha) + 0.5, 0, 255).astype(np.uint8)
    return image


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image with what was learnt reading it."""

    image: np.ndarray  # as decoded: gray, BGR or BGRA
    format: str
    mode: str
    sha256: str


def load_image_bytes(data: bytes, path: str | Path = "<bytes>") -> LoadedImage:
    """Sniff, check and decode image bytes.

    Args:
        data: file content.
        path: used in error messages only.

    Returns:
        The decoded image, its format, colour mode and sha256.

    Raises:
        ImageReadError: empty, not an image, truncated, or undecodable (``.reason`` says which).
    """
    if not data:
        raise ImageReadError(path, "empty file")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageReadError(path, f"not an image (unknown magic bytes {data[:8].hex()})")
    reason = truncation_reason(data, fmt)
    if reason:
        raise ImageReadError(path, reason)
    image = decode_raw(data, fmt)
    if image is None:
        raise ImageReadError(path, f"{fmt} data could not be decoded")
    mode = (png_colour_mode(data) if fmt == "png" else None) or colour_mode(image)
    return LoadedImage(image=image, format=fmt, mode=mode, sha256=hashlib.sha256(data).hexdigest())


def load_image(path: str | Path) -> LoadedImage:
    """Read and decode an image file by its content (see ``load_image_bytes``).

    Raises:
        ImageReadError: unreadable file, not an image, truncated, or undecodable.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageReadError(path, f"cannot read file: {exc.strerror or exc}") from exc
    return load_image_bytes(data, path)


def read_bgr(path: str | Path) -> np.ndarray:
    """Read an image file as 3-channel BGR uint8 (alpha composited over white).

    Raises:
        ImageReadError: see ``load_image``.
    """
    return to_bgr(load_image(path).image)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
