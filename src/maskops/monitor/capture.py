"""Building the record of one served image from the face pipeline's result.

Used by the service (one record per request or stream frame) and by ``watch``/``detect`` with
``--log-to``. Only numbers leave here (the compact face embedding is float16 numbers too), unless a ``HardCasePolicy`` is given
(``MASKOPS_STORE_FACES=hard``): then hard faces carry a small JPEG crop for review.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from maskops.inference.projection import embedding_bytes
from maskops.monitor.records import FaceRecord, PredictionRecord
from maskops.types import Detections

UNCERTAIN = "uncertain"


class FacesLike(Protocol):
    """What a face result gives (``maskops.detect.pipeline.FaceResult``)."""

    detections: Detections
    probs: np.ndarray
    reasons: Sequence[str | None]


def face_records(result: FacesLike, class_names: Sequence[str]) -> tuple[FaceRecord, ...]:
    """One ``FaceRecord`` per face, in answer order (class id -1 is ``uncertain``); a result with
    ``embeddings`` (the classifier's compact embedding) stores each as float16 bytes."""
    det = result.detections
    embeddings = getattr(result, "embeddings", None)
    if embeddings is not None and len(embeddings) != len(det):
        embeddings = None  # not one per face: never store an embedding under the wrong face
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
                embedding=None if embeddings is None else embedding_bytes(embeddings[i]),
            )
        )
    return tuple(faces)


def detector_version(name: str | None, yunet_path: Path | None) -> str | None:
    """The face detector's weights version: the sha256 prefix of the YuNet file for YuNet-based
    detectors, else OpenCV's version (the Haar cascades ship inside OpenCV)."""
    from maskops.data.images import sha256_file

    if not name:
        return None
    if name.startswith("yunet"):
        return sha256_file(yunet_path)[:12] if yunet_path is not None and Path(yunet_path).is_file() else None
    return f"opencv-{cv2.__version__}"


CROP_MARGIN = 0.2  # context around the box, per side, as a share of its size
CROP_SIDE = 160  # longer side of a stored crop, px


@dataclass(frozen=True)
class HardCasePolicy:
    """Which faces keep a crop (``MASKOPS_STORE_FACES=hard``): those answered ``uncertain`` or
    whose top probability is below ``confidence``, sampled at ``rate``."""

    confidence: float = 0.6
    rate: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rng", random.Random(self.seed))

    def is_hard(self, label: str, top: float) -> bool:
        return label == UNCERTAIN or top < self.confidence

    def keep(self) -> bool:
        return self.rate >= 1.0 or self._rng.random() < self.rate  # type: ignore[attr-defined]


def face_crop_jpeg(image: np.ndarray, box: Sequence[float], quality: int = 90) -> bytes | None:
    """The face with ``CROP_MARGIN`` around it, longer side at most ``CROP_SIDE``, as JPEG."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * CROP_MARGIN, (y2 - y1) * CROP_MARGIN
    a, b = max(0, int(x1 - mx)), max(0, int(y1 - my))
    c, d = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
    if c <= a or d <= b:
        return None
    crop = image[b:d, a:c]
    scale = CROP_SIDE / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(
            crop,
            (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
            interpolation=cv2.INTER_AREA,
        )
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else None


def with_hard_case_crops(
    faces: tuple[FaceRecord, ...], image: np.ndarray, policy: HardCasePolicy
) -> tuple[FaceRecord, ...]:
    """``faces`` with a ``crop`` on the hard cases the policy keeps."""
    out = []
    for f in faces:
        if policy.is_hard(f.label, f.confidence) and policy.keep():
            f = replace(f, crop=face_crop_jpeg(image, f.box))
        out.append(f)
    return tuple(out)


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
    image: np.ndarray | None = None,
    hard_cases: HardCasePolicy | None = None,
) -> PredictionRecord:
    """The record of one image (see ``PredictionRecord`` for the fields).

    With ``hard_cases`` and the ``image`` (BGR), hard faces keep a JPEG crop; otherwise no pixels.
    """
    faces = face_records(result, class_names)
    if hard_cases is not None and image is not None:
        faces = with_hard_case_crops(faces, image, hard_cases)
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
        faces=faces,
    )
