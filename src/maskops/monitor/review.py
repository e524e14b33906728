"""The hard-case review queue: stored crops (``MASKOPS_STORE_FACES=hard``) waiting for a person's
answer, and the export of the answered ones as a training folder source.

An answer is feedback (``maskops.monitor.feedback.add_feedback``, origin ``review``); a crop with
feedback has left the queue.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, and_, func, select, tuple_

from maskops.monitor.feedback import NOT_A_FACE
from maskops.monitor.schema import FaceCropRow, FaceRow, FeedbackRow


@dataclass(frozen=True)
class ReviewItem:
    request_id: str
    face_index: int
    label: str
    confidence: float
    probabilities: dict[str, float]
    uncertain_reason: str | None
    waiting: int  # crops in the queue, this one included


def _unanswered():  # type: ignore[no-untyped-def]
    return (
        select(FaceCropRow.request_id, FaceCropRow.face_index)
        .outerjoin(
            FeedbackRow,
            and_(
                FeedbackRow.request_id == FaceCropRow.request_id,
                FeedbackRow.face_index == FaceCropRow.face_index,
            ),
        )
        .where(FeedbackRow.request_id.is_(None))
    )


def next_for_review(engine: Engine, *, after: tuple[str, int] | None = None) -> ReviewItem | None:
    """The next crop without an answer (by request id and face index, after ``after`` when given:
    a skipped face comes back only on the next pass); None when the queue is empty."""
    base = _unanswered().subquery()
    query = select(base.c.request_id, base.c.face_index)
    if after is not None:
        query = query.where(tuple_(base.c.request_id, base.c.face_index) > tuple_(*after))
    query = query.order_by(base.c.request_id, base.c.face_index).limit(1)
    with engine.connect() as conn:
        row = conn.execute(query).first()
        if row is None and after is not None:  # the end of a pass: start over with the skipped ones
            first = select(base.c.request_id, base.c.face_index).order_by(
                base.c.request_id, base.c.face_index
            )
            row = conn.execute(first.limit(1)).first()
        if row is None:
            return None
        face = conn.execute(
            select(FaceRow).where(FaceRow.request_id == row.request_id, FaceRow.face_index == row.face_index)
        ).one()
        waiting = conn.scalar(select(func.count()).select_from(base)) or 0
    return ReviewItem(
        request_id=face.request_id,
        face_index=face.face_index,
        label=face.label,
        confidence=face.confidence,
        probabilities=face.probabilities,
        uncertain_reason=face.uncertain_reason,
        waiting=int(waiting),
    )


def crop_jpeg(engine: Engine, request_id: str, face_index: int) -> bytes | None:
    with engine.connect() as conn:
        return conn.scalar(
            select(FaceCropRow.jpeg).where(
                FaceCropRow.request_id == request_id, FaceCropRow.face_index == face_index
            )
        )


def export_reviewed(engine: Engine, out_dir: Path) -> dict[str, int]:
    """Write every answered crop to ``out_dir/<true label>/<request id>_<face index>.jpg``: a folder
    source a task config can add (``kind: folder``). ``not_a_face`` answers are left out.

    Returns:
        Crops written per label.
    """
    query = (
        select(FaceCropRow.request_id, FaceCropRow.face_index, FaceCropRow.jpeg, FeedbackRow.true_label)
        .join(
            FeedbackRow,
            and_(
                FeedbackRow.request_id == FaceCropRow.request_id,
                FeedbackRow.face_index == FaceCropRow.face_index,
            ),
        )
        .where(FeedbackRow.true_label != NOT_A_FACE)
        .order_by(FaceCropRow.request_id, FaceCropRow.face_index)
    )
    counts: Counter[str] = Counter()
    with engine.connect() as conn:
        for rid, idx, jpeg, label in conn.execute(query):
            folder = Path(out_dir) / label
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{rid}_{idx}.jpg").write_bytes(jpeg)
            counts[label] += 1
    return dict(sorted(counts.items()))
