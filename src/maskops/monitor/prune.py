"""Retention: delete stored requests (with their faces, crops and feedback) older than a period.

The hourly rollups are kept: they hold counts only, so business stats still cover the pruned
period while no per-request data remains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, func, select

from maskops.monitor.records import utc_naive
from maskops.monitor.schema import FaceCropRow, FaceRow, FeedbackRow, RequestRow

_UNITS = {"d": "days", "h": "hours", "m": "minutes", "w": "weeks"}


def parse_period(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m`` or ``2w`` as a timedelta.

    Raises:
        ValueError: any other form, or a period of zero.
    """
    m = re.fullmatch(r"\s*(\d+)\s*([dhmw])\s*", text)
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"expected a period like 30d, 12h, 90m or 2w, got {text!r}")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


@dataclass(frozen=True)
class PruneResult:
    cutoff: datetime
    requests: int
    faces: int
    feedback: int
    crops: int = 0


def prune(engine: Engine, older_than: timedelta, *, now: datetime | None = None) -> PruneResult:
    """Delete requests served before ``now - older_than``, with their faces, crops and feedback."""
    cutoff = utc_naive(now or datetime.now(UTC)) - older_than
    old = select(RequestRow.request_id).where(RequestRow.created_at < cutoff)
    with engine.begin() as conn:
        n_crops = conn.execute(delete(FaceCropRow).where(FaceCropRow.request_id.in_(old))).rowcount
        n_feedback = conn.execute(delete(FeedbackRow).where(FeedbackRow.request_id.in_(old))).rowcount
        n_faces = conn.execute(delete(FaceRow).where(FaceRow.request_id.in_(old))).rowcount
        n_requests = conn.execute(delete(RequestRow).where(RequestRow.created_at < cutoff)).rowcount
    return PruneResult(cutoff=cutoff, requests=n_requests, faces=n_faces, feedback=n_feedback, crops=n_crops)


def store_counts(engine: Engine) -> dict[str, int]:
    """Rows per table (requests, faces, feedback, face_crops)."""
    with engine.connect() as conn:
        return {
            t.__tablename__: int(conn.scalar(select(func.count()).select_from(t)) or 0)
            for t in (RequestRow, FaceRow, FeedbackRow, FaceCropRow)
        }
