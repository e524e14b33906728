"""Pure box maths on ``x1, y1, x2, y2`` pixel boxes: IoU, non-maximum suppression, expand and clip.

Every layer may import this module (it depends on numpy and ``maskops.types`` only). Conventions:
boxes are continuous pixel coordinates, area is ``(x2-x1)*(y2-y1)`` (no VOC "+1"), as COCO and
supervision do; empty inputs give empty outputs of the right shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from maskops.types import Detections

__all__ = ["as_boxes", "box_iou", "clip_boxes", "expand_box", "nested_mask", "nms", "nms_indices"]


def as_boxes(x: Any, name: str = "boxes") -> np.ndarray:
    """``x`` (boxes or ``Detections``) as an (n, 4) float64 array; empty input gives shape (0, 4).

    Raises:
        ValueError: not (n, 4).
    """
    arr = np.asarray(x.xyxy if isinstance(x, Detections) else x, np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (n, 4), got {arr.shape}")
    return arr


def box_iou(a: Any, b: Any) -> np.ndarray:
    """Pairwise intersection over union.

    Args:
        a: (n, 4) xyxy boxes (or ``Detections``).
        b: (m, 4) xyxy boxes (or ``Detections``).

    Returns:
        (n, m) float64 IoU; an empty (0, m) / (n, 0) array when either side is empty. Pairs whose union
        has zero area get IoU 0.
    """
    a = as_boxes(a, "a")
    b = as_boxes(b, "b")
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]), np.float64)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def nms_indices(xyxy: Any, scores: Any, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first.

    Ties keep input order (stable sort). A box is suppressed when its IoU with a kept, better box is
    above ``iou_threshold``.

    Returns:
        (k,) int64 indices into ``xyxy``; empty for empty input.
    """
    boxes = as_boxes(xyxy, "xyxy")
    s = np.asarray(scores, np.float64).reshape(-1)
    if s.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores must have one value per box, got {s.shape[0]} for {boxes.shape[0]} boxes")
    order = np.argsort(-s, kind="stable")
    iou = box_iou(boxes, boxes)
    suppressed = np.zeros(len(boxes), bool)
    keep: list[int] = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= iou[i] > iou_threshold
    return np.asarray(keep, np.int64)


def nms(faces: Detections, iou_threshold: float) -> Detections:
    """Greedy non-maximum suppression of ``Detections`` by ``confidence`` (stable for ties)."""
    if len(faces) <= 1:
        return faces
    return faces[nms_indices(faces.xyxy, faces.confidence, iou_threshold)]


def clip_boxes(xyxy: Any, width: float, height: float) -> np.ndarray:
    """(n, 4) float32 copy of ``xyxy`` with x clipped to ``[0, width]`` and y to ``[0, height]``."""
    out = np.array(xyxy, np.float32).reshape(-1, 4)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    return out


def expand_box(box: Sequence[float], margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Grow a box by ``margin`` x its size on every side, round outwards and clip to the image.

    Args:
        box: ``(x1, y1, x2, y2)`` in pixels.
        margin: fraction of the box width (x) / height (y) added per side.
        width, height: image size.

    Returns:
        Integer ``(x1, y1, x2, y2)`` with ``0 <= x1 < x2 <= width`` when the box overlaps the image.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    return (
        max(0, math.floor(x1 - dx)),
        max(0, math.floor(y1 - dy)),
        min(width, math.ceil(x2 + dx)),
        min(height, math.ceil(y2 + dy)),
    )


def nested_mask(
    xyxy: Any, scores: Any | None = None, overlap: float = 0.75, min_area_ratio: float = 2.0
) -> np.ndarray:
    """Which boxes lie nested inside a larger, at least as confident one.

    A box is nested when at least ``overlap`` of its own area lies inside another box whose area is at
    least ``min_area_ratio`` times its own and whose score (when ``scores`` are given) is at least its
    own: a detector's hit on part of a face (an eye, the mouth) that is also found whole, and found
    more surely. Two faces side by side, or one partly in front of another, overlap far less; a
    small true face inside a large, weak false box is kept.

    Returns:
        (n,) bool, True for the nested boxes; all False for fewer than two boxes.
    """
    b = as_boxes(xyxy, "xyxy").astype(np.float64)
    if len(b) < 2:
        return np.zeros(len(b), bool)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(b[:, None, :2], b[None, :, :2])
    rb = np.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    share = np.zeros_like(inter)
    np.divide(inter, area[:, None], out=share, where=area[:, None] > 0)
    outer = area[None, :] >= min_area_ratio * area[:, None]
    if scores is not None:
        s = np.asarray(scores, np.float64).reshape(-1)
        if s.shape[0] != len(b):
            raise ValueError(f"scores must have one value per box, got {s.shape[0]} for {len(b)} boxes")
        outer &= s[None, :] >= s[:, None]
    np.fill_diagonal(outer, False)
    return np.asarray(((share >= overlap) & outer).any(axis=1))
