"""What one served request records: a ``PredictionRecord`` with its ``FaceRecord`` list.

Plain dataclasses with a JSON form (``to_json`` / ``from_json``): the writer queues them, the
spool stores them one per line, and the store turns them into rows. No pixels: a face is its box,
scores and labels, plus an optional compact embedding.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import numpy as np

from maskops.inference.projection import embedding_from_bytes

Source = Literal["api", "batch", "stream", "watch", "detect", "classify"]
SOURCES: tuple[str, ...] = get_args(Source)
MAX_ID = 80  # a request id (64) plus a batch image's or a stream frame's suffix


def utc_naive(ts: datetime) -> datetime:
    """``ts`` in UTC without tzinfo: the store keeps every time as naive UTC, on both databases."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts


@dataclass(frozen=True)
class FaceRecord:
    """One face of a request.

    Attributes:
        box: (x1, y1, x2, y2) in pixels of the original image.
        face_score: the face detector's score.
        probabilities: calibrated class probabilities by class name.
        label: the answered label (a class name, or ``uncertain``).
        uncertain_reason: why the face was answered ``uncertain`` (None otherwise).
        embedding: compact embedding (float16 bytes) when the classifier exports one.
        crop: JPEG of the face, kept for hard cases only when ``MASKOPS_STORE_FACES=hard``.
    """

    box: tuple[float, float, float, float]
    face_score: float | None
    probabilities: dict[str, float]
    label: str
    uncertain_reason: str | None = None
    embedding: bytes | None = None
    crop: bytes | None = None

    @property
    def size(self) -> float:
        """The box's shorter side in pixels."""
        x1, y1, x2, y2 = self.box
        return float(min(x2 - x1, y2 - y1))

    @property
    def confidence(self) -> float:
        """The top calibrated probability (0 when there are none)."""
        return float(max(self.probabilities.values(), default=0.0))

    def embedding_values(self) -> np.ndarray | None:
        """The embedding as a float16 array (None when the face has none)."""
        return None if self.embedding is None else embedding_from_bytes(self.embedding)


@dataclass(frozen=True)
class PredictionRecord:
    """Everything one served request records, once (``request_id`` is the primary key).

    Attributes:
        request_id: the request's id (``X-Request-ID``); a replay with the same id is ignored.
        created_at: when the request was served (stored as naive UTC).
        source: ``api`` (one image), ``batch``, ``stream``, ``watch``, ``detect`` or ``classify``
            (a whole image through one classifier, no detection).
        site: optional site or camera tag.
        model_name / model_version: the face classifier and its card hash.
        detector / detector_version: the face detector's name and version.
        latency_ms: processing time of the request.
        stages_ms: per-stage latency (decode, detect, classify, ...).
        width / height: image size in pixels.
        quality: image quality features (``maskops.monitor.features.image_quality``).
        faces: the faces found, in answer order (the face index is the position).
    """

    request_id: str
    created_at: datetime
    source: str
    latency_ms: float
    width: int
    height: int
    site: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    detector: str | None = None
    detector_version: str | None = None
    stages_ms: dict[str, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)
    faces: tuple[FaceRecord, ...] = ()

    def __post_init__(self) -> None:
        if not self.request_id or len(self.request_id) > MAX_ID:
            raise ValueError(f"request_id must be 1-{MAX_ID} characters, got {self.request_id!r}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.site is not None and len(self.site) > 64:
            raise ValueError(f"site must be at most 64 characters, got {len(self.site)}")
        object.__setattr__(self, "created_at", utc_naive(self.created_at))
        object.__setattr__(self, "faces", tuple(self.faces))

    def to_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        for face in data["faces"]:
            for key in ("embedding", "crop"):
                if face[key] is not None:
                    face[key] = base64.b64encode(face[key]).decode("ascii")
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PredictionRecord:
        """Parse ``to_json`` output.

        Raises:
            ValueError: not a record (bad JSON or fields).
        """
        try:
            data = json.loads(text)
            faces = tuple(
                FaceRecord(
                    box=tuple(f["box"]),
                    face_score=f["face_score"],
                    probabilities=f["probabilities"],
                    label=f["label"],
                    uncertain_reason=f.get("uncertain_reason"),
                    embedding=None if f.get("embedding") is None else base64.b64decode(f["embedding"]),
                    crop=None if f.get("crop") is None else base64.b64decode(f["crop"]),
                )
                for f in data.pop("faces")
            )
            data["created_at"] = datetime.fromisoformat(data["created_at"])
            return cls(**data, faces=faces)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a prediction record: {exc}") from exc
