"""Face crops: box strings, a pixel-content hash, and atomic, resumable PNG writing.

A crop's identity is ``pixel_sha256`` of its decoded pixels, not the sha256 of the PNG bytes: PNG is
lossless, but the bytes an encoder writes change between OpenCV/libpng versions, and the manifest's
content hash must only change when the data does.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def box_to_str(box: Sequence[float]) -> str:
    """``"x1,y1,x2,y2"`` with at most one decimal (integers stay integers)."""
    return ",".join(f"{round(float(v), 1):g}" for v in box)


def box_from_str(text: str) -> tuple[float, float, float, float] | None:
    """Inverse of ``box_to_str``; ``""`` gives ``None``.

    Raises:
        ValueError: not four comma-separated numbers.
    """
    if not text:
        return None
    parts = text.split(",")
    if len(parts) != 4:
        raise ValueError(f"box must be 'x1,y1,x2,y2', got {text!r}")
    x1, y1, x2, y2 = (float(p) for p in parts)
    return x1, y1, x2, y2


def safe_stem(name: str, limit: int = 60) -> str:
    """A file-name-safe version of ``name`` (ASCII letters, digits, ``._-``)."""
    return (re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "img")[:limit]


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an image (deterministic for a given OpenCV build).

    Raises:
        ValueError: the image cannot be encoded.
    """
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"could not encode a {image.shape} image as PNG")
    return buf.tobytes()


def pixel_sha256(image: np.ndarray) -> str:
    """sha256 over an image's shape, dtype and raw pixels (independent of any file encoding)."""
    a = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{a.dtype.str}:{'x'.join(map(str, a.shape))}:".encode())
    h.update(a.data)
    return h.hexdigest()


def png_pixel_sha256(path: str | Path) -> str | None:
    """``pixel_sha256`` of a PNG file as decoded unchanged; ``None`` when it cannot be read."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    return None if image is None else pixel_sha256(image)


def write_atomic(path: str | Path, data: bytes) -> str:
    """Write bytes through a temporary file and rename (an interrupted run leaves no half file).

    Returns:
        The sha256 of ``data``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()
