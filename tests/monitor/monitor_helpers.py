"""Helpers for the store tests (imported by name: tests/ is not a package)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from maskops.monitor.capture import HardCasePolicy, build_record
from maskops.monitor.records import FaceRecord, PredictionRecord
from maskops.types import Detections

T0 = datetime(2026, 12, 1, 9, 0, 0)
PROBS = {
    "with_mask": {"with_mask": 0.9, "without_mask": 0.07, "mask_weared_incorrect": 0.03},
    "without_mask": {"with_mask": 0.05, "without_mask": 0.9, "mask_weared_incorrect": 0.05},
    "mask_weared_incorrect": {"with_mask": 0.2, "without_mask": 0.1, "mask_weared_incorrect": 0.7},
    "uncertain": {"with_mask": 0.4, "without_mask": 0.35, "mask_weared_incorrect": 0.25},
}


def make_record(
    request_id: str,
    labels: tuple[str, ...] = ("with_mask",),
    *,
    created_at: datetime = T0,
    site: str | None = None,
    source: str = "api",
    latency_ms: float = 20.0,
) -> PredictionRecord:
    """A record with one face per label (``uncertain`` faces get a reason)."""
    faces = tuple(
        FaceRecord(
            box=(10.0 * i, 5.0, 10.0 * i + 40.0, 55.0),
            face_score=0.9,
            probabilities=PROBS[label],
            label=label,
            uncertain_reason="low_confidence" if label == "uncertain" else None,
        )
        for i, label in enumerate(labels)
    )
    return PredictionRecord(
        request_id=request_id,
        created_at=created_at,
        source=source,
        latency_ms=latency_ms,
        width=640,
        height=480,
        site=site,
        model_name="facemask",
        model_version="abc123",
        detector="yunet_cal",
        detector_version="def456",
        stages_ms={"decode": 1.0, "detect": 5.0, "classify": 2.0},
        quality={"brightness": 0.5, "contrast": 0.2, "sharpness": 100.0, "saturation": 0.3},
        faces=faces,
    )


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


# ---- hard cases: three faces of a noise image, the last two hard

NAMES = ["with_mask", "without_mask", "mask_weared_incorrect"]


@dataclass
class Result:
    detections: Detections
    probs: np.ndarray
    reasons: list


def three_faces() -> Result:
    det = Detections(
        xyxy=[[10, 10, 50, 60], [60, 10, 100, 60], [110, 10, 150, 60]],
        confidence=[0.95, 0.5, 0.4],
        class_id=[0, 1, -1],
        face_score=[0.9, 0.9, 0.9],
    )
    probs = np.array([[0.95, 0.03, 0.02], [0.3, 0.5, 0.2], [0.4, 0.35, 0.25]], np.float32)
    return Result(det, probs, [None, None, "low_confidence"])


def image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (80, 160, 3), dtype=np.uint8)


def record(rid: str, policy: HardCasePolicy | None, seed: int = 0) -> PredictionRecord:
    return build_record(
        three_faces(),
        NAMES,
        request_id=rid,
        source="api",
        width=160,
        height=80,
        latency_ms=5,
        image=image(seed),
        hard_cases=policy,
    )
