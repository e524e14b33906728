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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, TextClause, and_, select, text

from maskops.inference.projection import EMBEDDING_DTYPE
from maskops.monitor.drift import get_drift_test
from maskops.monitor.estimate import PerformanceEstimate, estimate_performance
from maskops.monitor.records import utc_naive
from maskops.monitor.reference import FeatureDrift, ReferenceProfile, compare_to_reference
from maskops.monitor.schema import PROBABILITY_COLUMNS, FaceRow, FeedbackRow, RequestRow
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


def _floats(values: np.ndarray, missing: float = np.nan) -> np.ndarray:
    """An object column of numbers as float64 (None -> ``missing``)."""
    out = values.astype(np.float64)  # None -> nan
    if not np.isnan(missing):
        out[values == None] = missing  # noqa: E711 (elementwise on an object array)
    return out


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[np.ndarray]:
    """Rows as object columns (``width`` empty ones when there are no rows); plain tuples go through
    one 2-D object array."""
    if not rows:
        return [np.empty(0, dtype=object) for _ in range(width)]
    if isinstance(rows[0], tuple):
        table = np.array(rows, dtype=object).reshape(len(rows), width)
        return [table[:, k] for k in range(width)]
    columns = [np.empty(len(rows), dtype=object) for _ in range(width)]
    for column, values in zip(columns, zip(*rows, strict=True), strict=True):
        column[:] = values
    return columns


def _tuples(conn: Connection, stmt: TextClause, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of ``stmt`` as the DBAPI cursor returns them (plain tuples, no ``Row`` per row)."""
    compiled = stmt.compile(dialect=conn.dialect)
    bound = compiled.construct_params(params)
    args: Any = bound
    if compiled.positional:
        args = tuple(bound[key] for key in compiled.positiontup or ())
    dbapi = conn.connection.dbapi_connection
    if dbapi is None:
        raise RuntimeError("the store connection is closed")
    cursor = dbapi.cursor()
    try:
        cursor.execute(compiled.string, args)
        return list(cursor.fetchall())
    finally:
        cursor.close()


# what a window reads of a face: the numeric probability columns, not the JSON (no decoding per face)
_FACE_KEYS = ("request_id", "confidence", "size", "face_score", "label", "embedding")
_FACE_COLUMNS = (
    *(FaceRow.__table__.c[key] for key in _FACE_KEYS),
    FeedbackRow.true_label,
    *(FaceRow.__table__.c[column] for column in PROBABILITY_COLUMNS.values()),
)
_REQUEST_FEATURES = (
    RequestRow.brightness,
    RequestRow.contrast,
    RequestRow.sharpness,
    RequestRow.saturation,
    RequestRow.n_faces,
)


def load_window(
    engine: Engine, *, since: datetime | None = None, last: int | None = None, site: str | None = None
) -> FaceWindow:
    """Read a window of the store.

    One query reads the faces and one their requests (plus two single-row look-ups of the window's
    ends for ``last``); each column becomes one array.

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
    faces_query = _with_feedback(select(*_FACE_COLUMNS)).join(
        RequestRow, RequestRow.request_id == FaceRow.request_id
    )
    start: datetime | None = None
    end: datetime | None = None
    reqs: Sequence[Sequence[Any]]
    faces: Sequence[Sequence[Any]]
    with engine.connect() as conn:
        if since is not None:
            since = utc_naive(since)
            reqs = conn.execute(
                select(RequestRow.created_at, *_REQUEST_FEATURES).where(
                    RequestRow.created_at >= since, *site_filter
                )
            ).all()
            faces = conn.execute(faces_query.where(RequestRow.created_at >= since, *site_filter)).all()
            times = [r[0] for r in reqs]
            if times:
                start, end = min(times), max(times)
            req_columns = _columns(reqs, 1 + len(_REQUEST_FEATURES))[1:]
        else:
            faces = _tuples(conn, _latest_faces_sql(conn.dialect.name, site), {"last": last, "site": site})
            reqs = []
            if faces:
                # newest request first: the window spans the last face's request to the first one's,
                # and its requests are among those served since the last face's
                start, end = (
                    conn.execute(
                        select(RequestRow.created_at).where(RequestRow.request_id == rid)
                    ).scalar_one()
                    for rid in (faces[-1][0], faces[0][0])
                )
                ids = {f[0] for f in faces}
                candidates = _tuples(conn, _requests_since_sql(site), {"oldest": faces[-1][0], "site": site})
                reqs = sorted((r for r in candidates if r[0] in ids), key=itemgetter(0))
            req_columns = _columns(reqs, 1 + len(_REQUEST_FEATURES))[1:]
    (_, confidence, size, face_score, label, embedding, true_label, *probs) = _columns(
        faces, len(_FACE_COLUMNS)
    )
    numeric = {
        "confidence": _floats(confidence),
        "face_size": _floats(size),
        "face_score": _floats(face_score),
        **{q: _floats(values) for q, values in zip(IMAGE_FEATURES, req_columns, strict=True)},
    }
    # a class the face has no probability of counts 0 (PROBABILITY_COLUMNS holds MaskClass order)
    probabilities = np.stack([_floats(p, missing=0.0) for p in probs], axis=1) if faces else None
    return FaceWindow(
        start=start,
        end=end,
        n_requests=len(reqs),
        n_faces=len(faces),
        numeric=numeric,
        categorical={CLASS_MIX: label.tolist()},
        probabilities=np.zeros((0, len(names))) if probabilities is None else probabilities,
        class_names=names,
        true_labels=true_label.tolist(),
        embeddings=_embeddings(embedding),
    )


def _latest_faces_sql(dialect: str, site: str | None) -> TextClause:
    """The latest faces (``:last`` of them, of ``:site`` when given) with ``_FACE_COLUMNS``, newest
    request first, then by request id and face index.

    The requests are read in time order from their ``created_at`` index and their faces looked up by
    key; SQLite is told that join order (``CROSS JOIN``): its planner would otherwise scan every face
    and sort them all, however small the window.
    """
    columns = ", ".join(
        [
            *(f"f.{key}" for key in _FACE_KEYS),
            "fb.true_label",
            *(f"f.{c}" for c in PROBABILITY_COLUMNS.values()),
        ]
    )
    join = "CROSS JOIN" if dialect == "sqlite" else "JOIN"
    where = "WHERE r.site = :site " if site is not None else ""
    return text(
        f"SELECT {columns} FROM requests AS r {join} faces AS f ON f.request_id = r.request_id "
        "LEFT OUTER JOIN feedback AS fb ON fb.request_id = f.request_id AND fb.face_index = f.face_index "
        f"{where}ORDER BY r.created_at DESC, f.request_id, f.face_index LIMIT :last"
    )


def _requests_since_sql(site: str | None) -> TextClause:
    """The requests (of ``:site`` when given) served at or after request ``:oldest``: their id and
    ``_REQUEST_FEATURES``."""
    columns = ", ".join(["request_id", *(c.key for c in _REQUEST_FEATURES)])
    where = " AND site = :site" if site is not None else ""
    return text(
        f"SELECT {columns} FROM requests "
        f"WHERE created_at >= (SELECT created_at FROM requests WHERE request_id = :oldest){where}"
    )


def _embeddings(blobs: Iterable[bytes | None]) -> np.ndarray | None:
    """The logged embeddings as (faces, dims) float32 rows; faces without one, or with another width
    than the most common (a model change inside the window), are left out. None when no face has one.

    Raises:
        ValueError: a blob that is not a whole number of ``EMBEDDING_DTYPE`` values.
    """
    dtype = np.dtype(EMBEDDING_DTYPE).newbyteorder("<")
    kept = [bytes(b) for b in blobs if b]
    if not kept:
        return None
    sizes = Counter(len(b) for b in kept)
    bad = [n for n in sizes if n % dtype.itemsize]
    if bad:
        raise ValueError(
            f"faces.embedding: a blob of {bad[0]} bytes is not a whole number of {dtype.name} values"
        )
    nbytes = sizes.most_common(1)[0][0]
    joined = b"".join(b for b in kept if len(b) == nbytes)
    return np.frombuffer(joined, dtype=dtype).reshape(-1, nbytes // dtype.itemsize).astype(np.float32)


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
        "threshold_source": r.threshold_source,
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
