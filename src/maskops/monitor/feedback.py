"""Ground truth for stored faces, and the accuracy it measures.

Feedback names a face by (request id, face index): the index is the face's position in the
request's answer. The latest answer for a face wins. ``not_a_face`` marks a detector false positive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from maskops.monitor.records import utc_naive
from maskops.monitor.schema import FaceRow, FeedbackRow, RequestRow
from maskops.types import MaskClass

NOT_A_FACE = "not_a_face"
FEEDBACK_LABELS: tuple[str, ...] = (*MaskClass.names(), NOT_A_FACE)
UNCERTAIN = "uncertain"
MAX_FACE_INDEX = 100_000  # far above any image's faces, far below the databases' integer limits


class _Unindexed(FunctionElement[Any]):
    """A request column that SQLite must not look up through an index (``+created_at``,
    ``+site``): the feedback is what should drive the join. Without it SQLite walks every request
    of the window (400,000 for a month: 80 ms) or of the site to find the few that have feedback.
    Plain on other databases, whose planners weigh the tables' sizes."""

    inherit_cache = True
    name = "unindexed"

    def __init__(self, column: Any) -> None:
        super().__init__(column)
        self.type = column.type  # binds compare as the column's type (times as SQLite stores them)


@compiles(_Unindexed)
def _unindexed(element: _Unindexed, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(_Unindexed, "sqlite")
def _unindexed_sqlite(element: _Unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))


class UnknownFace(LookupError):
    """The request id is not in the store, or the request has no face with that index."""

    def __init__(self, request_id: str, face_index: int, *, request_known: bool) -> None:
        self.request_id = request_id
        self.face_index = face_index
        self.request_known = request_known
        what = (
            f"request {request_id!r} has no face {face_index}"
            if request_known
            else (f"request {request_id!r} is not in the prediction store")
        )
        super().__init__(what)


class InvalidLabel(ValueError):
    """A true label that is not one of ``FEEDBACK_LABELS``."""

    def __init__(self, label: str) -> None:
        self.label = label
        super().__init__(f"unknown label {label!r}; expected one of {', '.join(FEEDBACK_LABELS)}")


@dataclass(frozen=True)
class Feedback:
    request_id: str
    face_index: int
    true_label: str
    predicted_label: str
    created_at: datetime
    origin: str


def add_feedback(
    engine: Engine,
    *,
    request_id: str,
    face_index: int,
    true_label: str,
    origin: str = "api",
    now: datetime | None = None,
) -> Feedback:
    """Store the true label of one face (replacing an earlier answer for the same face).

    Raises:
        InvalidLabel: ``true_label`` is not a class name or ``not_a_face``.
        UnknownFace: no such request, or no such face in it.
    """
    if true_label not in FEEDBACK_LABELS:
        raise InvalidLabel(true_label)
    created = utc_naive(now or datetime.now(UTC))
    if not 0 <= face_index <= MAX_FACE_INDEX:
        raise UnknownFace(request_id, face_index, request_known=False)
    with engine.begin() as conn:
        predicted = conn.scalar(
            select(FaceRow.label).where(FaceRow.request_id == request_id, FaceRow.face_index == face_index)
        )
        if predicted is None:
            known = conn.scalar(select(RequestRow.request_id).where(RequestRow.request_id == request_id))
            raise UnknownFace(request_id, face_index, request_known=known is not None)
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(FeedbackRow).values(
            request_id=request_id,
            face_index=face_index,
            true_label=true_label,
            created_at=created,
            origin=origin,
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["request_id", "face_index"],
                set_={"true_label": true_label, "created_at": created, "origin": origin},
            )
        )
    return Feedback(request_id, face_index, true_label, predicted, created, origin)


@dataclass(frozen=True)
class AccuracyReport:
    """Accuracy measured on the faces that got feedback, over requests served in a window.

    Attributes:
        feedback: faces with feedback.
        scored: those whose true label is a class and whose answer was a class (not uncertain).
        correct: scored faces whose answer equals the true label.
        accuracy: correct / scored (None without scored faces).
        uncertain: faces answered ``uncertain`` that got a class as feedback.
        not_a_face: faces the feedback says are not faces (detector false positives).
        per_class: true label -> {"scored": n, "correct": n}.
    """

    feedback: int
    scored: int
    correct: int
    accuracy: float | None
    uncertain: int
    not_a_face: int
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)


def measured_accuracy(
    engine: Engine, start: datetime | None = None, end: datetime | None = None, *, site: str | None = None
) -> AccuracyReport:
    """Accuracy over the faces with feedback whose request was served in ``[start, end)``."""
    conds = []
    created_at = _Unindexed(RequestRow.created_at)
    if start is not None:
        conds.append(created_at >= utc_naive(start))
    if end is not None:
        conds.append(created_at < utc_naive(end))
    if site is not None:
        conds.append(_Unindexed(RequestRow.site) == site)
    query = (
        select(FaceRow.label, FeedbackRow.true_label)
        .join(
            FaceRow,
            and_(FaceRow.request_id == FeedbackRow.request_id, FaceRow.face_index == FeedbackRow.face_index),
        )
        .join(RequestRow, RequestRow.request_id == FeedbackRow.request_id)
        .where(*conds)
    )
    with engine.connect() as conn:
        pairs = conn.execute(query).all()
    per_class: dict[str, dict[str, int]] = {}
    scored = correct = uncertain = not_a_face = 0
    for predicted, truth in pairs:
        if truth == NOT_A_FACE:
            not_a_face += 1
        elif predicted == UNCERTAIN:
            uncertain += 1
        else:
            scored += 1
            hit = int(predicted == truth)
            correct += hit
            cls = per_class.setdefault(truth, {"scored": 0, "correct": 0})
            cls["scored"] += 1
            cls["correct"] += hit
    return AccuracyReport(
        feedback=len(pairs),
        scored=scored,
        correct=correct,
        accuracy=correct / scored if scored else None,
        uncertain=uncertain,
        not_a_face=not_a_face,
        per_class=dict(sorted(per_class.items())),
    )
