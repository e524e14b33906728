"""Writing records into the store: idempotent inserts plus the hourly rollups, in one transaction.

A record whose request id is already stored is skipped (``INSERT ... ON CONFLICT DO NOTHING`` on
both databases), and only the records actually inserted count in the rollups, so replaying a batch
(from the spool, or after a crash between commit and acknowledgement) never duplicates anything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql, sqlite

from maskops.monitor.records import PredictionRecord
from maskops.monitor.schema import (
    PROBABILITY_COLUMNS,
    DailyFaces,
    DailyRequests,
    FaceCropRow,
    FaceRow,
    HourlyFaces,
    HourlyRequests,
    RequestRow,
    latency_bin,
)


def epoch_hour(record: PredictionRecord) -> int:
    """Hours since 1970-01-01 UTC of the record's time."""
    ts = record.created_at
    days = ts.date().toordinal() - 719163  # 719163 = date(1970, 1, 1).toordinal()
    return days * 24 + ts.hour


def _insert(conn: Connection, table: Any) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _request_row(r: PredictionRecord) -> dict[str, Any]:
    q = r.quality
    return {
        "request_id": r.request_id,
        "created_at": r.created_at,
        "hour": epoch_hour(r),
        "source": r.source,
        "site": r.site,
        "model_name": r.model_name,
        "model_version": r.model_version,
        "detector": r.detector,
        "detector_version": r.detector_version,
        "latency_ms": float(r.latency_ms),
        "stages_ms": {k: float(v) for k, v in r.stages_ms.items()},
        "width": int(r.width),
        "height": int(r.height),
        "brightness": q.get("brightness"),
        "contrast": q.get("contrast"),
        "sharpness": q.get("sharpness"),
        "saturation": q.get("saturation"),
        "n_faces": len(r.faces),
    }


def _face_rows(r: PredictionRecord) -> list[dict[str, Any]]:
    rows = []
    for i, f in enumerate(r.faces):
        x1, y1, x2, y2 = (float(v) for v in f.box)
        probs = {k: float(v) for k, v in f.probabilities.items()}
        rows.append(
            {
                "request_id": r.request_id,
                "face_index": i,
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
                "size": f.size,
                "face_score": None if f.face_score is None else float(f.face_score),
                "confidence": f.confidence,
                "probabilities": probs,
                # the same values as numeric columns (None for a class the face has no probability of)
                **{col: probs.get(name) for name, col in PROBABILITY_COLUMNS.items()},
                "label": f.label,
                "uncertain_reason": f.uncertain_reason,
                "embedding": f.embedding,
            }
        )
    return rows


def insert_records(conn: Connection, records: Sequence[PredictionRecord]) -> int:
    """Insert ``records`` on ``conn`` (inside the caller's transaction); returns how many were new.

    Records whose request id is already stored are skipped with their faces; the rollups count
    only the new ones. Keys are sorted before the rollup upserts so concurrent writers (several
    replicas on one PostgreSQL) lock rows in the same order.
    """
    if not records:
        return 0
    by_id = {r.request_id: r for r in records}  # a batch holding one id twice keeps the last
    stmt = _insert(conn, RequestRow.__table__).on_conflict_do_nothing(index_elements=["request_id"])
    inserted = conn.execute(
        stmt.returning(RequestRow.request_id), [_request_row(r) for r in by_id.values()]
    ).scalars()
    new = [by_id[rid] for rid in inserted]
    if not new:
        return 0
    faces = [row for r in new for row in _face_rows(r)]
    if faces:
        conn.execute(
            _insert(conn, FaceRow.__table__).on_conflict_do_nothing(
                index_elements=["request_id", "face_index"]
            ),
            faces,
        )
    crops = [
        {"request_id": r.request_id, "face_index": i, "created_at": r.created_at, "jpeg": f.crop}
        for r in new
        for i, f in enumerate(r.faces)
        if f.crop is not None
    ]
    if crops:
        conn.execute(
            _insert(conn, FaceCropRow.__table__).on_conflict_do_nothing(
                index_elements=["request_id", "face_index"]
            ),
            crops,
        )
    _add_rollups(conn, new)
    return len(new)


def _add_rollups(conn: Connection, records: Sequence[PredictionRecord]) -> None:
    for hours_per_period, req_table, face_table, period in (
        (1, HourlyRequests.__table__, HourlyFaces.__table__, "hour"),
        (24, DailyRequests.__table__, DailyFaces.__table__, "day"),
    ):
        requests: Counter[tuple[int, str, str, int]] = Counter()
        faces: Counter[tuple[int, str, str, str]] = Counter()
        for r in records:
            key = (epoch_hour(r) // hours_per_period, r.site or "", r.source)
            requests[(*key, latency_bin(r.latency_ms))] += 1
            for f in r.faces:
                faces[(*key, f.label)] += 1
        _upsert_counts(conn, req_table, (period, "site", "source", "latency_bin"), requests, "requests")
        _upsert_counts(conn, face_table, (period, "site", "source", "label"), faces, "faces")


def _upsert_counts(
    conn: Connection, table: Any, cols: tuple[str, ...], counts: Counter[tuple[Any, ...]], value: str
) -> None:
    if not counts:
        return
    stmt = _insert(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(cols), set_={value: table.c[value] + stmt.excluded[value]}
    )
    conn.execute(stmt, [{**dict(zip(cols, k, strict=True)), value: n} for k, n in sorted(counts.items())])


def write_records(engine: Engine, records: Sequence[PredictionRecord]) -> int:
    """Insert ``records`` in one transaction; returns how many were new (see ``insert_records``)."""
    with engine.begin() as conn:
        return insert_records(conn, records)
