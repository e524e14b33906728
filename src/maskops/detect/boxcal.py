"""Box calibration: correct the systematic framing difference between a face detector and the annotations.

YuNet frames a face from the eyebrows to the chin; the facemask-voc boxes sit lower (they include the
whole mask and chin) and are a little wider and shorter. A ``BoxCalibration`` holds, per size bucket of
the *detector* box (shorter side, pixels), a centre shift and a scale relative to the box size:

    cx' = cx + dx * w      cy' = cy + dy * h      w' = w * sx      h' = h * sy

It is fitted on matched (detector box, true box) pairs of the ``train`` split only
(``maskops.train.boxcal_fit.fit_box_calibration``; ``bench/fit_boxcal.py`` runs the fit and writes the
JSON), saved as a small JSON beside this module (``data/boxcal_<detector>.json``), and applied by ``CalibratedDetector``, which
is registered as ``<detector>_cal`` (e.g. ``yunet_cal``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskops.detect.base import FaceDetector
from maskops.detect.registry import create_detector, register_detector
from maskops.types import Detections

logger = logging.getLogger(__name__)

__all__ = [
    "CALIBRATION_DIR",
    "BoxCalibration",
    "BoxCorrection",
    "CalibratedDetector",
    "calibration_path",
    "load_calibration",
]

CALIBRATION_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class BoxCorrection:
    """One bucket's correction: centre shift (fraction of the box size) and scale, and its support.

    Attributes:
        dx, dy: centre shift as a fraction of the detector box's width / height.
        sx, sy: width / height scale.
        n: matched pairs the values were fitted on (0: identity or inherited).
    """

    dx: float = 0.0
    dy: float = 0.0
    sx: float = 1.0
    sy: float = 1.0
    n: int = 0


@dataclass(frozen=True)
class BoxCalibration:
    """Per-size-bucket box corrections of one detector.

    Attributes:
        corrections: ``len(edges) + 1`` corrections, bucket ``k`` covers shorter sides in
            ``[edges[k-1], edges[k])``.
        edges: bucket edges in pixels on the detector box's shorter side; empty = one global correction.
        detector: the detector the calibration was fitted for.
        method: ``median`` or ``mean`` (least squares on the offsets and log scales).
        fitted_on: description of the fitting data (dataset, split, pairs, IoU rule).
        stats: extra figures of the fit (mean IoU before/after …).
    """

    corrections: tuple[BoxCorrection, ...]
    edges: tuple[float, ...] = ()
    detector: str = ""
    method: str = "median"
    fitted_on: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.corrections) != len(self.edges) + 1:
            raise ValueError(
                f"a calibration with {len(self.edges)} edges needs {len(self.edges) + 1} corrections, "
                f"got {len(self.corrections)}"
            )
        if list(self.edges) != sorted(self.edges):
            raise ValueError(f"edges must be increasing, got {list(self.edges)}")
        for k, c in enumerate(self.corrections):
            if not (c.sx > 0 and c.sy > 0):
                raise ValueError(f"corrections[{k}]: sx and sy must be > 0, got {c.sx}, {c.sy}")

    @classmethod
    def identity(cls) -> BoxCalibration:
        return cls((BoxCorrection(),))

    def bucket(self, xyxy: np.ndarray) -> np.ndarray:
        side = np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
        return np.digitize(side, list(self.edges)) if self.edges else np.zeros(len(xyxy), np.int64)

    def apply(self, xyxy: Any, width: float | None = None, height: float | None = None) -> np.ndarray:
        """Corrected (n, 4) float32 boxes, clipped to ``[0, width] x [0, height]`` when given."""
        b = np.asarray(xyxy, np.float64).reshape(-1, 4)
        if b.shape[0] == 0:
            return np.zeros((0, 4), np.float32)
        k = self.bucket(b)
        p = np.array([[c.dx, c.dy, c.sx, c.sy] for c in self.corrections], np.float64)[k]
        w = b[:, 2] - b[:, 0]
        h = b[:, 3] - b[:, 1]
        cx = (b[:, 0] + b[:, 2]) / 2 + p[:, 0] * w
        cy = (b[:, 1] + b[:, 3]) / 2 + p[:, 1] * h
        w2 = w * p[:, 2] / 2
        h2 = h * p[:, 3] / 2
        out = np.stack([cx - w2, cy - h2, cx + w2, cy + h2], 1)
        if width is not None:
            out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
        if height is not None:
            out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
        return out.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "method": self.method,
            "fitted_on": self.fitted_on,
            "edges": list(self.edges),
            "corrections": [asdict(c) for c in self.corrections],
            "stats": self.stats,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "calibration") -> BoxCalibration:
        try:
            corrections = tuple(BoxCorrection(**c) for c in data["corrections"])
            return cls(
                corrections=corrections,
                edges=tuple(float(e) for e in data.get("edges", ())),
                detector=str(data.get("detector", "")),
                method=str(data.get("method", "median")),
                fitted_on=str(data.get("fitted_on", "")),
                stats=dict(data.get("stats", {})),
            )
        except KeyError as exc:
            raise ValueError(f"{where}: missing field {exc.args[0]!r}") from exc
        except TypeError as exc:
            raise ValueError(
                f"{where}: field 'corrections' must be a list of {{dx, dy, sx, sy, n}} objects: {exc}"
            ) from exc

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> BoxCalibration:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"box calibration not found: {path} (fit it with `python bench/fit_boxcal.py`)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        return cls.from_dict(data, where=str(path))


def calibration_path(detector: str) -> Path:
    """The packaged calibration file of ``detector``."""
    return CALIBRATION_DIR / f"boxcal_{detector}.json"


def load_calibration(detector: str, path: str | Path | None = None) -> BoxCalibration:
    """The calibration at ``path``, or the packaged one of ``detector``."""
    return BoxCalibration.load(path or calibration_path(detector))


class CalibratedDetector(FaceDetector):
    """A face detector whose boxes are moved and scaled onto the annotation convention.

    Args:
        base: the detector to wrap.
        calibration: the corrections to apply to its boxes (landmarks are left as detected).
    """

    def __init__(self, base: FaceDetector, calibration: BoxCalibration) -> None:
        self.base = base
        self.calibration = calibration
        self.name = f"{getattr(base, 'name', '') or 'detector'}_cal"

    def detect(self, image_bgr: np.ndarray) -> Detections:
        faces = self.base.detect(image_bgr)
        if not len(faces):
            return faces
        h, w = image_bgr.shape[:2]
        return faces.replace(xyxy=self.calibration.apply(faces.xyxy, w, h))


def _calibrated(base_name: str) -> Any:
    def factory(calibration_file: str | Path | None = None, **kwargs: Any) -> CalibratedDetector:
        cal = load_calibration(base_name, calibration_file)
        det = CalibratedDetector(create_detector(base_name, **kwargs), cal)
        det.name = f"{base_name}_cal"
        return det

    factory.__doc__ = f"``{base_name}`` with its box calibration (``data/boxcal_{base_name}.json``)."
    return factory


register_detector("yunet_cal")(_calibrated("yunet"))
