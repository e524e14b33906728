"""Generators for the data-stage tests: small images and VOC xml."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def pattern_image(seed: int, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A smooth random BGR image; different seeds give visibly different images."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, size=(6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)


def write_image(path: Path, image: np.ndarray, ext: str = ".png") -> Path:
    """Encode ``image`` as ``ext`` and write it to ``path`` (whatever the path's suffix)."""
    ok, buf = cv2.imencode(ext, image)
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
    return path


def voc_xml(
    filename: str, width: int, height: int, objects: Sequence[tuple[str, float, float, float, float]]
) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for n, x1, y1, x2, y2 in objects
    )
    return (
        f"<annotation><folder>images</folder><filename>{filename}</filename>"
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>{objs}</annotation>"
    )
