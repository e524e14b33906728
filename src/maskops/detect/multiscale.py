"""Multi-scale (and flipped) YuNet: run the detector on several enlargements, merge with NMS or WBF.

Small faces in crowds are the faces YuNet misses at one scale; running it on the image enlarged 1.5x and
3x (and, optionally, mirrored) finds most of them, and merging the views gives one box per face.

Registered as ``yunet_ms`` (scales 1.5 and 3, NMS) and ``yunet_ms_cal`` (the same with its box
calibration). Scales are relative to the input image; the longer side of a view is capped at
``max_side`` so large frames are not blown up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskops.boxes import box_iou, nested_mask, nms
from maskops.detect.base import FaceDetector
from maskops.detect.boxcal import CalibratedDetector, load_calibration
from maskops.detect.detectors import YuNetDetector, _as_bgr
from maskops.detect.registry import register_detector
from maskops.types import UNCLASSIFIED, Detections

logger = logging.getLogger(__name__)

__all__ = ["MERGES", "MultiScaleYuNet", "flip_detections", "merge_views", "weighted_box_fusion"]

MERGES = ("nms", "wbf")
# YuNet's landmarks: right eye, left eye, nose tip, right and left mouth corners; a mirror swaps sides
_FLIP_LANDMARKS = [1, 0, 2, 4, 3]


def weighted_box_fusion(faces: Detections, iou_threshold: float, num_views: int) -> Detections:
    """Weighted box fusion: each cluster (around its best box) becomes the score-weighted mean box.

    The fused score is the sum of the cluster's scores over ``max(num_views, cluster size)``, so a face
    seen in every view keeps its score and a face seen in one view of three is down-weighted.
    Landmarks are fused the same way when present.
    """
    if len(faces) == 0:
        return faces
    order = np.argsort(-faces.confidence, kind="stable")
    iou = box_iou(faces.xyxy, faces.xyxy)
    used = np.zeros(len(faces), bool)
    boxes, scores, marks = [], [], []
    for i in order:
        if used[i]:
            continue
        group = np.flatnonzero((iou[i] > iou_threshold) & ~used)
        used[group] = True
        w = faces.confidence[group].astype(np.float64)
        w_sum = max(float(w.sum()), 1e-12)
        boxes.append((faces.xyxy[group] * w[:, None]).sum(0) / w_sum)
        scores.append(w_sum / max(num_views, len(group)))
        if faces.landmarks is not None:
            marks.append((faces.landmarks[group] * w[:, None, None]).sum(0) / w_sum)
    s = np.asarray(scores, np.float32)
    return Detections(
        xyxy=np.asarray(boxes, np.float32),
        confidence=s,
        class_id=np.full(len(s), UNCLASSIFIED, np.int64),
        face_score=s,
        landmarks=np.asarray(marks, np.float32) if marks else None,
    )


def merge_views(faces: Detections, method: str, iou_threshold: float, num_views: int) -> Detections:
    """Merge the faces of several views with ``nms`` or ``wbf``."""
    if method == "nms":
        return nms(faces, iou_threshold)
    if method == "wbf":
        return weighted_box_fusion(faces, iou_threshold, num_views)
    raise ValueError(f"unknown merge {method!r}; valid: {', '.join(MERGES)}")


def flip_detections(faces: Detections, width: float) -> Detections:
    """Faces found on a horizontally mirrored image, mapped back to the original image."""
    if not len(faces):
        return faces
    b = faces.xyxy
    xyxy = np.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], 1)
    lm = None
    if faces.landmarks is not None:
        lm = faces.landmarks.copy()
        lm[:, :, 0] = width - lm[:, :, 0]
        if lm.shape[1] == len(_FLIP_LANDMARKS):
            lm = lm[:, _FLIP_LANDMARKS]
    return faces.replace(xyxy=xyxy, landmarks=lm)


class MultiScaleYuNet(FaceDetector):
    """YuNet on several scales (and optionally mirrored), merged into one set of faces.

    Args:
        scales: enlargement factors relative to the input image.
        flip: also run each scale on the mirrored image.
        merge: ``nms`` or ``wbf``.
        merge_iou: IoU above which boxes of different views are the same face.
        max_side: cap on the longer side of a view (pixels).
        score_threshold: minimum face score per view.
        model_path: YuNet weights (default ``MASKOPS_YUNET_PATH``).
        nms_threshold: YuNet's own NMS within a view.
        closeup_side, nested_overlap: YuNet's close-up pass per view and its nested-box suppression,
            which is applied again after the views are merged (``YuNetDetector``).
    """

    name = "yunet_ms"

    def __init__(
        self,
        scales: Sequence[float] = (1.5, 3.0),
        flip: bool = False,
        merge: str = "nms",
        merge_iou: float = 0.4,
        max_side: int = 1920,
        score_threshold: float = 0.6,
        model_path: str | Path | None = None,
        nms_threshold: float = 0.3,
        closeup_side: int = 192,
        nested_overlap: float = 0.75,
    ) -> None:
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"scales must be positive factors, got {list(scales)}")
        if merge not in MERGES:
            raise ValueError(f"unknown merge {merge!r}; valid: {', '.join(MERGES)}")
        self.scales = tuple(float(s) for s in scales)
        self.flip = flip
        self.merge = merge
        self.merge_iou = merge_iou
        self.max_side = max_side
        self.score_threshold = score_threshold
        self.nested_overlap = float(nested_overlap)
        self._yunet = YuNetDetector(
            model_path=model_path,
            score_threshold=score_threshold,
            nms_threshold=nms_threshold,
            upscale=1.0,
            closeup_side=closeup_side,
            nested_overlap=nested_overlap,
        )

    def _view_scales(self, width: int, height: int) -> list[float]:
        longer = max(width, height)
        out: list[float] = []
        for s in self.scales:
            eff = min(s, self.max_side / longer) if longer * s > self.max_side else s
            if all(abs(eff - o) > 1e-3 for o in out):
                out.append(eff)
        return out

    def _detect_at(self, image: np.ndarray, scale: float) -> Detections:
        h, w = image.shape[:2]
        if scale != 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            interp = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
            image = cv2.resize(image, size, interpolation=interp)
        faces = self._yunet.detect(image)
        if not len(faces) or scale == 1.0:
            return faces
        sx, sy = image.shape[1] / w, image.shape[0] / h
        xyxy = faces.xyxy / np.array([sx, sy, sx, sy], np.float32)
        lm = None if faces.landmarks is None else faces.landmarks / np.array([sx, sy], np.float32)
        return faces.replace(xyxy=np.clip(xyxy, 0, [w, h, w, h]).astype(np.float32), landmarks=lm)

    def views(self, image_bgr: np.ndarray) -> list[Detections]:
        """The faces of every view, in input-image pixels, before merging."""
        image = _as_bgr(image_bgr)
        h, w = image.shape[:2]
        out = []
        mirrored = np.ascontiguousarray(image[:, ::-1]) if self.flip else None
        for s in self._view_scales(w, h):
            out.append(self._detect_at(image, s))
            if mirrored is not None:
                out.append(flip_detections(self._detect_at(mirrored, s), w))
        return out

    def detect(self, image_bgr: np.ndarray) -> Detections:
        views = self.views(image_bgr)
        faces = Detections.concat(views)
        if not len(faces):
            return Detections.empty(with_face_score=True).replace(landmarks=np.zeros((0, 5, 2), np.float32))
        merged = merge_views(faces, self.merge, self.merge_iou, len(views))
        if self.nested_overlap < 1.0 and len(merged) > 1:
            merged = merged[~nested_mask(merged.xyxy, merged.confidence, self.nested_overlap)]
        return merged


@register_detector("yunet_ms")
def _yunet_ms(**kwargs: Any) -> MultiScaleYuNet:
    return MultiScaleYuNet(**kwargs)


@register_detector("yunet_ms_cal")
def _yunet_ms_cal(calibration_file: str | Path | None = None, **kwargs: Any) -> FaceDetector:
    det = CalibratedDetector(MultiScaleYuNet(**kwargs), load_calibration("yunet_ms", calibration_file))
    det.name = "yunet_ms_cal"
    return det
