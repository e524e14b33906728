"""The current window of the prediction store, as drift features, and its drift report.

A window is either every request since a time (``since``) or the requests behind the latest ``last``
faces. Its features carry the names a reference profile uses:

- per face: ``confidence`` (top calibrated probability), ``face_size`` (shorter box side, px),
  ``face_score`` (the detector's score; faces without one are left out), and the class mix
  ``label`` (the class names and ``uncertain``);
- feedback: the true label of a face that has one (for the measured accuracy beside the estimate);
- per request: the image quality features ``brightness``, ``contrast``, ``sharpness``,
  ``saturation`` and ``face_count``.

Embeddings are not logged by the service yet, so a window has none and the embedding test is
skipped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, and_, select

from maskops.inference.projection import embedding_from_bytes
from maskops.monitor.drift import get_drift_test
from maskops.monitor.estimate import PerformanceEstimate, estimate_performance
from maskops.monitor.records import utc_naive
from maskops.monitor.reference import FeatureDrift, ReferenceProfile, compare_to_reference
from maskops.monitor.schema import FaceRow, FeedbackRow, RequestRow
from maskops.types import MaskClass

FACE_FEATURES = ("confidence", "face_size", "face_score")
IMAGE_FEATURES = ("brightness", "contrast", "sharpness", "saturation", "face_count")
CLASS_MIX = "label"


@dataclass(frozen=True)
class FaceWindow:
    """The features of one window (see the module docstring)."""

    start: datetime | None
    end: datetime | None
    n_requests: int
    n_faces: int
    numeric: dict[str, np.ndarray]
    categorical: dict[str, list[str]]
    probabilities: np.ndarray
    class_names: list[str]
    true_labels: list[str | None]
    embeddings: np.ndarray | None = None

    def label_ids(self) -> np.ndarray:
        """The feedback per face as class ids: -1 without feedback or with a non-class answer
        (``not_a_face``)."""
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.array([index.get(t, -1) if t else -1 for t in self.true_labels], dtype=np.int64)


def _floats(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def load_window(
    engine: Engine, *, since: datetime | None = None, last: int | None = None, site: str | None = None
) -> FaceWindow:
    """Read a window of the store.

    Args:
        engine: the store.
        since: the window holds the requests served at or after this (naive UTC or aware) time.
        last: the window holds the latest ``last`` faces and their requests.
        site: only requests tagged with this site.

    Raises:
        ValueError: neither or both of ``since`` and ``last``, or ``last`` < 1.
    """
    if (since is None) == (last is None):
        raise ValueError("give exactly one of since (a time) or last (a number of faces)")
    if last is not None and last < 1:
        raise ValueError(f"last must be >= 1, got {last}")
    names = MaskClass.names()
    site_filter = [RequestRow.site == site] if site is not None else []
    req_cols = (
        RequestRow.created_at,
        RequestRow.n_faces,
        RequestRow.brightness,
        RequestRow.contrast,
        RequestRow.sharpness,
        RequestRow.saturation,
    )
    face_cols = (
        FaceRow.request_id,
        FaceRow.confidence,
        FaceRow.size,
        FaceRow.face_score,
        FaceRow.label,
        FaceRow.embedding,
    )
    with engine.connect() as conn:
        if since is not None:
            since = utc_naive(since)
            req_query = select(*req_cols).where(RequestRow.created_at >= since, *site_filter)
            reqs = list(conn.execute(req_query).all())
            faces = conn.execute(
                _with_feedback(select(*face_cols, FaceRow.probabilities, FeedbackRow.true_label))
                .join(RequestRow, RequestRow.request_id == FaceRow.request_id)
                .where(RequestRow.created_at >= since, *site_filter)
            ).all()
        else:
            faces = conn.execute(
                _with_feedback(select(*face_cols, FaceRow.probabilities, FeedbackRow.true_label))
                .join(RequestRow, RequestRow.request_id == FaceRow.request_id)
                .where(*site_filter)
                .order_by(RequestRow.created_at.desc(), FaceRow.request_id, FaceRow.face_index)
                .limit(last)
            ).all()
            ids = sorted({f.request_id for f in faces})
            reqs = []
            for i in range(0, len(ids), 500):  # bounded IN lists
                chunk = ids[i : i + 500]
                reqs += conn.execute(select(*req_cols).where(RequestRow.request_id.in_(chunk))).all()
    numeric = {
        "confidence": _floats([f.confidence for f in faces]),
        "face_size": _floats([f.size for f in faces]),
        "face_score": _floats([f.face_score for f in faces]),
        **{q: _floats([getattr(r, q) for r in reqs]) for q in IMAGE_FEATURES if q != "face_count"},
        "face_count": _floats([r.n_faces for r in reqs]),
    }
    probs = np.array([[float(f.probabilities.get(c, 0.0)) for c in names] for f in faces], dtype=np.float64)
    times = [r.created_at for r in reqs]
    return FaceWindow(
        start=min(times) if times else None,
        end=max(times) if times else None,
        n_requests=len(reqs),
        n_faces=len(faces),
        numeric=numeric,
        categorical={CLASS_MIX: [f.label for f in faces]},
        probabilities=probs.reshape(-1, len(names)),
        class_names=names,
        true_labels=[f.true_label for f in faces],
        embeddings=_embeddings([f.embedding for f in faces]),
    )


def _embeddings(blobs: list[bytes | None]) -> np.ndarray | None:
    """The logged embeddings as (faces, dims) float32 rows; faces without one, or with another width
    than the most common (a model change inside the window), are left out. None when no face has one."""
    arrays = [embedding_from_bytes(b) for b in blobs if b]
    if not arrays:
        return None
    width = Counter(len(a) for a in arrays).most_common(1)[0][0]
    return np.stack([a for a in arrays if len(a) == width]).astype(np.float32)


def _with_feedback(query: Any) -> Any:
    # the latest feedback answer is the only row per face (feedback's primary key is the face)
    on = and_(FeedbackRow.request_id == FaceRow.request_id, FeedbackRow.face_index == FaceRow.face_index)
    return query.select_from(FaceRow).outerjoin(FeedbackRow, on)


@dataclass(frozen=True)
class DriftReport:
    """Drift of a window against the reference, and the label-free estimate beside it.

    Attributes:
        drifted: the features whose test crossed its threshold.
        reference_accuracy: the measured accuracy stored in the reference profile.
    """

    window: FaceWindow
    features: list[FeatureDrift]
    estimate: PerformanceEstimate | None
    reference_accuracy: float | None

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.result.drifted]

    def to_dict(self) -> dict[str, Any]:
        w = self.window
        return {
            "window": {
                "start": w.start.isoformat() if w.start else None,
                "end": w.end.isoformat() if w.end else None,
                "requests": w.n_requests,
                "faces": w.n_faces,
            },
            "drifted": self.drifted,
            "features": [{"feature": f.feature, "kind": f.kind, **_result_dict(f)} for f in self.features],
            "estimate": None if self.estimate is None else vars(self.estimate),
            "reference_accuracy": self.reference_accuracy,
        }


def _result_dict(f: FeatureDrift) -> dict[str, Any]:
    r = f.result
    return {
        "test": r.test,
        "score": r.score,
        "threshold": r.threshold,
        "drifted": r.drifted,
        "statistic": r.statistic,
        "n_reference": r.n_reference,
        "n_current": r.n_current,
        "note": r.note,
    }


def drift_report(
    engine: Engine,
    profile: ReferenceProfile,
    *,
    since: datetime | None = None,
    last: int | None = None,
    site: str | None = None,
    tests: dict[str, str] | None = None,
) -> DriftReport:
    """Load a window (``load_window``) and test each feature against the reference profile.

    Raises:
        ValueError: a bad window (see ``load_window``).
        UnknownDriftTestError: an unknown test name in ``tests``.
    """
    window = load_window(engine, since=since, last=last, site=site)
    features = compare_to_reference(
        profile,
        numeric=window.numeric,
        categorical=window.categorical,
        embeddings=window.embeddings,
        tests=tests,
    )
    estimate = None
    if window.n_faces:
        try:
            estimate = estimate_performance(window.probabilities, window.class_names, window.label_ids())
        except ValueError:
            estimate = None  # faces logged without full probabilities: no estimate
    return DriftReport(window, features, estimate, profile.accuracy)


def parse_test_choices(items: list[str]) -> dict[str, str]:
    """``FEATURE=TEST`` strings as a feature -> test mapping (the last choice for a feature wins).

    Raises:
        ValueError: an item without ``=``; UnknownDriftTestError (a ValueError) for an unknown test.
    """
    out: dict[str, str] = {}
    for item in items:
        feature, sep, test = item.partition("=")
        if not sep or not feature.strip() or not test.strip():
            raise ValueError(f"expected FEATURE=TEST (e.g. brightness=psi), got {item!r}")
        out[feature.strip()] = get_drift_test(test.strip()).name
    return out
