"""Box calibration: correct the systematic framing difference between a face detector and the annotations.

YuNet frames a face from the eyebrows to the chin; the facemask-voc boxes sit lower (they include the
whole mask and chin) and are a little wider and shorter. A ``BoxCalibration`` holds, per size bucket of
the *detector* box (shorter side, pixels), a centre shift and a scale relative to the box size:

    cx' = cx + dx * w      cy' = cy + dy * h      w' = w * sx      h' = h * sy

It is fitted on matched (detector box, true box) pairs of the ``train`` split only
(``fit_box_calibration``; ``bench/fit_boxcal.py`` runs the fit and writes the JSON), saved as a small
JSON beside this module (``data/boxcal_<detector>.json``), and applied by ``CalibratedDetector``, which
is registered as ``<detector>_cal`` (e.g. ``yunet_cal``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskops.boxes import box_iou
from maskops.detect.base import FaceDetector
from maskops.detect.registry import create_detector, register_detector
from maskops.types import Detections

logger = logging.getLogger(__name__)

__all__ = [
    "CALIBRATION_DIR",
    "BoxCalibration",
    "BoxCorrection",
    "CalibratedDetector",
    "box_offsets",
    "calibration_path",
    "fit_box_calibration",
    "load_calibration",
    "matched_pairs",
]

CALIBRATION_DIR = Path(__file__).resolve().parent / "data"
METHODS = ("median", "mean")


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


def box_offsets(pred: Any, gt: Any) -> np.ndarray:
    """(n, 4) ``[dx, dy, log sx, log sy]`` taking each predicted box onto its paired true box.

    Raises:
        ValueError: shapes differ or a predicted box has zero width or height.
    """
    p = np.asarray(pred, np.float64).reshape(-1, 4)
    g = np.asarray(gt, np.float64).reshape(-1, 4)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must pair up, got {p.shape[0]} and {g.shape[0]} boxes")
    w, h = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    if np.any(w <= 0) or np.any(h <= 0) or np.any(gw <= 0) or np.any(gh <= 0):
        raise ValueError("boxes must have positive width and height")
    dx = ((g[:, 0] + g[:, 2]) - (p[:, 0] + p[:, 2])) / 2 / w
    dy = ((g[:, 1] + g[:, 3]) - (p[:, 1] + p[:, 3])) / 2 / h
    return np.stack([dx, dy, np.log(gw / w), np.log(gh / h)], 1)


def matched_pairs(
    faces: Sequence[Detections],
    gts: Sequence[Detections],
    *,
    min_iou: float = 0.3,
    min_score: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one (detector box, true box) pairs over many images, for fitting.

    Matching is greedy by face score, class-agnostic, with IoU >= ``min_iou`` (lower than 0.5 on purpose:
    the badly framed faces are the ones to learn from); faces under ``min_score`` are ignored.

    Returns:
        ``(pred_xyxy, gt_xyxy)``, both (k, 4) float64.
    """
    from maskops.evaluate.detection import match_detections

    ps, gs = [], []
    for f, g in zip(faces, gts, strict=True):
        score = f.face_score if f.face_score is not None else f.confidence
        f = f[score >= min_score]
        if not len(f) or not len(g):
            continue
        f = f.replace(
            class_id=np.zeros(len(f), np.int64),
            confidence=f.face_score if f.face_score is not None else f.confidence,
        )
        sizes_ok = (f.xyxy[:, 2] > f.xyxy[:, 0]) & (f.xyxy[:, 3] > f.xyxy[:, 1])
        f = f[sizes_ok]
        m = match_detections(f, g, min_iou, class_aware=False)
        ok = m.tp
        ps.append(f.xyxy[ok])
        gs.append(g.xyxy[m.matched_gt[ok]])
    if not ps:
        return np.zeros((0, 4)), np.zeros((0, 4))
    return np.concatenate(ps).astype(np.float64), np.concatenate(gs).astype(np.float64)


def _summary(v: np.ndarray, method: str, n: int) -> BoxCorrection:
    c = np.median(v, 0) if method == "median" else np.mean(v, 0)
    return BoxCorrection(
        dx=round(float(c[0]), 5),
        dy=round(float(c[1]), 5),
        sx=round(float(np.exp(c[2])), 5),
        sy=round(float(np.exp(c[3])), 5),
        n=n,
    )


def fit_box_calibration(
    pred: Any,
    gt: Any,
    *,
    edges: Sequence[float] = (),
    method: str = "median",
    min_count: int = 30,
    detector: str = "",
    fitted_on: str = "",
) -> BoxCalibration:
    """Fit per-bucket corrections from paired boxes.

    ``median`` takes the median offset and log scale (robust to the odd wrong pair); ``mean`` is the
    least-squares fit of the same four numbers. A bucket with fewer than ``min_count`` pairs gets the
    global correction.

    Args:
        pred: (k, 4) detector boxes.
        gt: (k, 4) their true boxes.
        edges: size bucket edges (shorter side of the detector box, px).
        method: ``median`` or ``mean``.
        min_count: minimum pairs for a bucket of its own.
        detector, fitted_on: recorded in the calibration.

    Raises:
        ValueError: unknown method, or fewer than ``min_count`` pairs overall.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    v = box_offsets(pred, gt)
    if v.shape[0] < min_count:
        raise ValueError(f"need at least {min_count} matched boxes to fit a calibration, got {v.shape[0]}")
    glob = _summary(v, method, int(v.shape[0]))
    cal = BoxCalibration((glob,), (), detector, method, fitted_on)
    if edges:
        p = np.asarray(pred, np.float64).reshape(-1, 4)
        probe = BoxCalibration(
            tuple(BoxCorrection() for _ in range(len(edges) + 1)), tuple(float(e) for e in edges)
        )
        k = probe.bucket(p)
        corr = []
        for b in range(len(edges) + 1):
            sel = k == b
            corr.append(_summary(v[sel], method, int(sel.sum())) if sel.sum() >= min_count else glob)
        cal = BoxCalibration(tuple(corr), tuple(float(e) for e in edges), detector, method, fitted_on)
    before = np.diag(box_iou(pred, gt)) if len(v) else np.zeros(0)
    after = np.diag(box_iou(cal.apply(pred), gt)) if len(v) else np.zeros(0)
    stats = {
        "pairs": int(v.shape[0]),
        "mean_iou_before": round(float(before.mean()), 4),
        "mean_iou_after": round(float(after.mean()), 4),
        "iou50_before": round(float((before >= 0.5).mean()), 4),
        "iou50_after": round(float((after >= 0.5).mean()), 4),
        "median_offsets": {
            k: round(float(x), 4)
            for k, x in zip(("dx", "dy", "log_sx", "log_sy"), np.median(v, 0), strict=True)
        },
        "iqr_offsets": {
            k: round(float(x), 4)
            for k, x in zip(
                ("dx", "dy", "log_sx", "log_sy"),
                np.percentile(v, 75, 0) - np.percentile(v, 25, 0),
                strict=True,
            )
        },
    }
    return BoxCalibration(cal.corrections, cal.edges, detector, method, fitted_on, stats)


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
