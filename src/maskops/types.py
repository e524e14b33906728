"""The core types that flow through every stage: ``Detections`` and ``ModelSpec``.

``Detections`` follows the supervision convention: parallel numpy arrays, checked when built,
and every operation returns a new object. Ground truth and predictions use the same type.
``ModelSpec`` is the model card saved as JSON beside every exported model; everything that runs
a model reads its preprocessing from it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


class MaskClass(StrEnum):
    """The face-mask classes, in class-id order."""

    WITH_MASK = "with_mask"
    WITHOUT_MASK = "without_mask"
    MASK_WEARED_INCORRECT = "mask_weared_incorrect"

    @classmethod
    def names(cls) -> list[str]:
        return [m.value for m in cls]


def _as_array(value: Any, dtype: npt.DTypeLike, name: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be convertible to a {np.dtype(dtype).name} array: {exc}") from exc


# class ids that are not classes: a face judged too hard to call (the API's class id -1), and a face
# no classifier has looked at yet (what a face detector returns)
UNCERTAIN = -1
UNCLASSIFIED = -2


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes with class and confidence, as parallel arrays of length ``n``.

    Attributes:
        xyxy: (n, 4) float32 boxes in pixels, ``x1 <= x2`` and ``y1 <= y2``.
        confidence: (n,) float32 classifier (or ground-truth: 1.0) confidence.
        class_id: (n,) int64 class index; ``UNCERTAIN`` (-1) for a face classified but too hard to
            judge, ``UNCLASSIFIED`` (-2) for a face not classified yet (a detector's output).
        face_score: optional (n,) float32 face-detector score.
        landmarks: optional (n, 5, 2) float32 facial landmarks.
        track_id: optional (n,) int64 track ids (-1 for untracked).
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    face_score: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    track_id: np.ndarray | None = None

    def __post_init__(self) -> None:
        xyxy = _as_array(self.xyxy, np.float32, "xyxy")
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must be a 2D array with shape (n, 4), but got shape {xyxy.shape}")
        n = xyxy.shape[0]
        if not np.all(np.isfinite(xyxy)):
            raise ValueError("xyxy must hold finite numbers only")
        if n and (np.any(xyxy[:, 2] < xyxy[:, 0]) or np.any(xyxy[:, 3] < xyxy[:, 1])):
            raise ValueError("xyxy boxes must have x1 <= x2 and y1 <= y2")
        object.__setattr__(self, "xyxy", xyxy)
        self._set_vector("confidence", np.float32, n, required=True)
        self._set_vector("class_id", np.int64, n, required=True)
        self._set_vector("face_score", np.float32, n, required=False)
        self._set_vector("track_id", np.int64, n, required=False)
        if self.landmarks is not None:
            lm = _as_array(self.landmarks, np.float32, "landmarks")
            if lm.size == 0:
                lm = lm.reshape(0, 5, 2)
            if lm.ndim != 3 or lm.shape[0] != n or lm.shape[2] != 2:
                raise ValueError(f"landmarks must have shape ({n}, k, 2), but got shape {lm.shape}")
            object.__setattr__(self, "landmarks", lm)

    def _set_vector(self, name: str, dtype: npt.DTypeLike, n: int, *, required: bool) -> None:
        value = getattr(self, name)
        if value is None:
            if required:
                raise ValueError(f"{name} is required")
            return
        arr = (
            _as_array(value, dtype, name).reshape(-1)
            if np.ndim(value) == 0 and n == 1
            else _as_array(value, dtype, name)
        )
        if arr.ndim != 1 or arr.shape[0] != n:
            raise ValueError(f"{name} must be a 1D array with shape ({n},), but got shape {arr.shape}")
        object.__setattr__(self, name, arr)

    @classmethod
    def empty(cls, *, with_face_score: bool = False) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros(0, np.float32),
            class_id=np.zeros(0, np.int64),
            face_score=np.zeros(0, np.float32) if with_face_score else None,
        )

    @classmethod
    def from_lists(
        cls,
        xyxy: Sequence[Sequence[float]],
        class_id: Sequence[int],
        confidence: Sequence[float] | None = None,
    ) -> Detections:
        """Build from plain lists; ``confidence`` defaults to 1.0 (ground truth)."""
        conf = [1.0] * len(class_id) if confidence is None else confidence
        return cls(
            xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4),
            confidence=_as_array(conf, np.float32, "confidence"),
            class_id=_as_array(class_id, np.int64, "class_id"),
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: Any) -> Detections:
        """Index with a boolean mask, an int array, a slice or an int; returns new ``Detections``."""
        if isinstance(index, int | np.integer):
            index = [int(index)]
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            face_score=None if self.face_score is None else self.face_score[index],
            landmarks=None if self.landmarks is None else self.landmarks[index],
            track_id=None if self.track_id is None else self.track_id[index],
        )

    def __iter__(self) -> Iterator[Detections]:
        for i in range(len(self)):
            yield self[i]

    def replace(self, **changes: Any) -> Detections:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Detections(**values)

    @property
    def area(self) -> np.ndarray:
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])

    @staticmethod
    def concat(items: Sequence[Detections]) -> Detections:
        if not items:
            return Detections.empty()

        def cat(name: str) -> np.ndarray | None:
            values = [getattr(d, name) for d in items]
            if any(v is None for v in values):
                return None
            return np.concatenate(values)

        return Detections(
            xyxy=np.concatenate([d.xyxy for d in items]),
            confidence=np.concatenate([d.confidence for d in items]),
            class_id=np.concatenate([d.class_id for d in items]),
            face_score=cat("face_score"),
            landmarks=cat("landmarks"),
            track_id=cat("track_id"),
        )

    def to_records(self, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One JSON-ready dict per detection."""
        out: list[dict[str, Any]] = []
        for i in range(len(self)):
            cid = int(self.class_id[i])
            rec: dict[str, Any] = {
                "box": [round(float(v), 2) for v in self.xyxy[i]],
                "class_id": cid,
                "confidence": round(float(self.confidence[i]), 6),
            }
            if class_names is not None:
                rec["label"] = (
                    class_names[cid]
                    if 0 <= cid < len(class_names)
                    else "unclassified"
                    if cid == UNCLASSIFIED
                    else "uncertain"
                )
            if self.face_score is not None:
                rec["face_score"] = round(float(self.face_score[i]), 6)
            if self.landmarks is not None:
                rec["landmarks"] = [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks[i]]
            if self.track_id is not None:
                rec["track_id"] = int(self.track_id[i])
            out.append(rec)
        return out


@dataclass
class ModelSpec:
    """The model card: everything needed to run and judge a model, saved beside it as JSON.

    Attributes:
        task: task name (``facemask``, ``malaria``).
        class_names: output classes in logit order.
        input_size: (height, width) of the network input.
        mean, std: per-channel normalisation applied to RGB pixels in 0..255: ``(x - mean) / std``.
        temperature: divides the logits before softmax (calibration; 1.0 = none).
        thresholds: named decision thresholds (e.g. ``min_confidence``, ``min_face_px``).
        metrics: test metrics at export time.
        manifest_hash: content hash of the data manifest the model was trained on.
    """

    task: str
    class_names: list[str]
    input_size: tuple[int, int]
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    architecture: str = "efficientnet_lite0"
    color: str = "rgb"
    temperature: float = 1.0
    thresholds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    manifest_hash: str = ""
    git_commit: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    format: str = "onnx"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.class_names:
            raise ValueError("class_names must not be empty")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be unique, got {self.class_names}")
        size = tuple(int(v) for v in self.input_size)
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(
                f"input_size must be (height, width) with positive values, got {self.input_size}"
            )
        self.input_size = (size[0], size[1])
        for name in ("mean", "std"):
            vals = tuple(float(v) for v in getattr(self, name))
            if len(vals) != 3:
                raise ValueError(f"{name} must have 3 values (one per channel), got {vals}")
            setattr(self, name, vals)
        if any(v == 0 for v in self.std):
            raise ValueError("std must not contain zeros")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model card fields {unknown}; expected some of {sorted(known)}")
        missing = [n for n in ("task", "class_names", "input_size") if n not in data]
        if missing:
            raise ValueError(f"model card is missing required fields {missing}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"model card is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("model card must be a JSON object")
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model card not found: {path}")
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    @staticmethod
    def card_path(model_path: str | Path) -> Path:
        """The card lives beside the model: ``model.onnx`` -> ``model.json``."""
        return Path(model_path).with_suffix(".json")
