"""Building the record of one served image from the face pipeline's result.

Used by the service (one record per request or stream frame) and by ``watch``/``detect`` with
``--log-to``. Only numbers leave here: no image or face pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from maskops.monitor.records import FaceRecord, PredictionRecord
from maskops.types import Detections

UNCERTAIN = "uncertain"


class FacesLike(Protocol):
    """What a face result gives (``maskops.detect.pipeline.FaceResult``)."""

    detections: Detections
    probs: np.ndarray
    reasons: Sequence[str | None]


def face_records(result: FacesLike, class_names: Sequence[str]) -> tuple[FaceRecord, ...]:
    """One ``FaceRecord`` per face, in answer order (class id -1 is ``uncertain``)."""
    det = result.detections
    faces = []
    for i in range(len(det)):
        cid = int(det.class_id[i])
        faces.append(
            FaceRecord(
                box=tuple(round(float(v), 1) for v in det.xyxy[i]),  # type: ignore[arg-type]
                face_score=None if det.face_score is None else round(float(det.face_score[i]), 4),
                probabilities={
                    c: round(float(p), 4) for c, p in zip(class_names, result.probs[i], strict=True)
                },
                label=class_names[cid] if 0 <= cid < len(class_names) else UNCERTAIN,
                uncertain_reason=result.reasons[i] if i < len(result.reasons) else None,
            )
        )
    return tuple(faces)


def build_record(
    result: FacesLike,
    class_names: Sequence[str],
    *,
    request_id: str,
    source: str,
    width: int,
    height: int,
    latency_ms: float,
    stages_ms: Mapping[str, float] | None = None,
    quality: Mapping[str, float] | None = None,
    site: str | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    detector: str | None = None,
    detector_version: str | None = None,
    created_at: datetime | None = None,
) -> PredictionRecord:
    """The record of one image (see ``PredictionRecord`` for the fields)."""
    return PredictionRecord(
        request_id=request_id,
        created_at=created_at or datetime.now(UTC),
        source=source,
        latency_ms=round(float(latency_ms), 3),
        width=int(width),
        height=int(height),
        site=site or None,
        model_name=model_name,
        model_version=model_version,
        detector=detector,
        detector_version=detector_version,
        stages_ms={k: round(float(v), 3) for k, v in (stages_ms or {}).items()},
        quality={k: round(float(v), 5) for k, v in (quality or {}).items()},
        faces=face_records(result, class_names),
    )
