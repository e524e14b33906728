"""Writing records into the store: idempotent inserts plus the hourly rollups, in one transaction.

A record whose request id is already stored is skipped (``INSERT ... ON CONFLICT DO NOTHING`` on
both databases), and only the records actually inserted count in the rollups, so replaying a batch
(from the spool, or after a crash between commit and acknowledgement) never duplicates anything.

This is the writer's hot path (every served image passes here), so the statements are plain SQL
built once per dialect from the table definitions and run through the driver (``executemany``);
values go through the columns' own SQLAlchemy bind processors (times, JSON, bytes), so the rows are
exactly what the ORM would write. Building and compiling SQLAlchemy statements per batch cost 3 to 6
times as much CPU per record (``bench/monitor_store.py cost``), and the writer shares the service's
interpreter lock.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.engine import Dialect

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

_REQUEST_COLUMNS = (
    "request_id",
    "created_at",
    "hour",
    "source",
    "site",
    "model_name",
    "model_version",
    "detector",
    "detector_version",
    "latency_ms",
    "stages_ms",
    "width",
    "height",
    "brightness",
    "contrast",
    "sharpness",
    "saturation",
    "n_faces",
)
_PROBABILITY_ITEMS = tuple(PROBABILITY_COLUMNS.items())
_FACE_COLUMNS = (
    "request_id",
    "face_index",
    "x1",
    "y1",
    "x2",
    "y2",
    "size",
    "face_score",
    "confidence",
    "probabilities",
    *(col for _, col in _PROBABILITY_ITEMS),
    "label",
    "uncertain_reason",
    "embedding",
)
_CROP_COLUMNS = ("request_id", "face_index", "created_at", "jpeg")


def epoch_hour(record: PredictionRecord) -> int:
    """Hours since 1970-01-01 UTC of the record's time."""
    ts = record.created_at
    days = ts.date().toordinal() - 719163  # 719163 = date(1970, 1, 1).toordinal()
    return days * 24 + ts.hour


@dataclass(frozen=True)
class _Insert:
    """One insert statement of a table for one dialect, with the columns' bind processors."""

    head: str  # INSERT INTO table (columns)
    marks: str  # one row's placeholders
    tail: str  # the ON CONFLICT clause
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column position, processor)

    @property
    def sql(self) -> str:
        """The statement of one row (``executemany`` runs it per row)."""
        return f"{self.head} VALUES {self.marks} {self.tail}"

    def rows_sql(self, n: int, returning: str) -> str:
        """The statement of ``n`` rows in one ``INSERT``, returning the column ``returning``."""
        return f"{self.head} VALUES {', '.join([self.marks] * n)} {self.tail} RETURNING {returning}"

    def params(self, row: Sequence[Any]) -> tuple[Any, ...]:
        if not self.processors:
            return tuple(row)
        out = list(row)
        for i, proc in self.processors:
            if out[i] is not None:
                out[i] = proc(out[i])
        return tuple(out)


_STATEMENTS: dict[tuple[str, str, str, tuple[str, ...], tuple[str, ...], str | None], _Insert] = {}


def _statement(
    dialect: Dialect, table: Table, columns: tuple[str, ...], keys: tuple[str, ...], add: str | None = None
) -> _Insert:
    """``INSERT INTO table (columns) ... ON CONFLICT (keys)`` doing nothing, or adding the new value
    of the column ``add`` to the stored one (a rollup count); made once per dialect."""
    cache_key = (dialect.name, dialect.paramstyle, table.name, columns, keys, add)
    stmt = _STATEMENTS.get(cache_key)
    if stmt is None:
        processors = []
        for i, name in enumerate(columns):
            proc = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                processors.append((i, proc))
        q = dialect.identifier_preparer.quote
        t = q(table.name)
        conflict = f"ON CONFLICT ({', '.join(q(k) for k in keys)}) DO "
        conflict += "NOTHING" if add is None else f"UPDATE SET {q(add)} = {t}.{q(add)} + excluded.{q(add)}"
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        stmt = _Insert(
            head=f"INSERT INTO {t} ({', '.join(q(c) for c in columns)})",
            marks="(" + ", ".join([mark] * len(columns)) + ")",
            tail=conflict,
            processors=tuple(processors),
        )
        _STATEMENTS[cache_key] = stmt
    return stmt


def _table(model: Any) -> Table:
    return model.__table__  # type: ignore[no-any-return]


def _request_row(r: PredictionRecord) -> tuple[Any, ...]:
    q = r.quality
    return (
        r.request_id,
        r.created_at,
        epoch_hour(r),
        r.source,
        r.site,
        r.model_name,
        r.model_version,
        r.detector,
        r.detector_version,
        float(r.latency_ms),
        {k: float(v) for k, v in r.stages_ms.items()},
        int(r.width),
        int(r.height),
        q.get("brightness"),
        q.get("contrast"),
        q.get("sharpness"),
        q.get("saturation"),
        len(r.faces),
    )


def _face_rows(r: PredictionRecord) -> list[tuple[Any, ...]]:
    rows = []
    for i, f in enumerate(r.faces):
        x1, y1, x2, y2 = (float(v) for v in f.box)
        probs = {k: float(v) for k, v in f.probabilities.items()}
        rows.append(
            (
                r.request_id,
                i,
                x1,
                y1,
                x2,
                y2,
                f.size,
                None if f.face_score is None else float(f.face_score),
                f.confidence,
                probs,
                # the same values as numeric columns (None for a class the face has no probability of)
                *(probs.get(name) for name, _ in _PROBABILITY_ITEMS),
                f.label,
                f.uncertain_reason,
                f.embedding,
            )
        )
    return rows


def _new_request_ids(conn: Connection, rows: list[tuple[Any, ...]]) -> set[str]:
    """Insert the request rows; the ids actually inserted (one multi-row ``INSERT ... RETURNING``)."""
    stmt = _statement(conn.dialect, _table(RequestRow), _REQUEST_COLUMNS, ("request_id",))
    params: list[Any] = []
    for row in rows:
        params.extend(stmt.params(row))
    return {row[0] for row in conn.exec_driver_sql(stmt.rows_sql(len(rows), "request_id"), tuple(params))}


# a multi-row INSERT binds len(_REQUEST_COLUMNS) values per row: SQLite allows 32,766 per statement
# (999 before 3.32), PostgreSQL 65,535
_MAX_ROWS_PER_INSERT = 1000 if sqlite3.sqlite_version_info >= (3, 32) else 999 // len(_REQUEST_COLUMNS)


def insert_records(conn: Connection, records: Sequence[PredictionRecord]) -> int:
    """Insert ``records`` on ``conn`` (inside the caller's transaction); returns how many were new.

    Records whose request id is already stored are skipped with their faces; the rollups count
    only the new ones. Keys are sorted before the rollup upserts so concurrent writers (several
    replicas on one PostgreSQL) lock rows in the same order.
    """
    if not records:
        return 0
    by_id = {r.request_id: r for r in records}  # a batch holding one id twice keeps the last
    rows = [_request_row(r) for r in by_id.values()]
    inserted: set[str] = set()
    for k in range(0, len(rows), _MAX_ROWS_PER_INSERT):
        inserted |= _new_request_ids(conn, rows[k : k + _MAX_ROWS_PER_INSERT])
    new = [r for rid, r in by_id.items() if rid in inserted]
    if not new:
        return 0
    dialect = conn.dialect
    faces = [row for r in new for row in _face_rows(r)]
    if faces:
        stmt = _statement(dialect, _table(FaceRow), _FACE_COLUMNS, ("request_id", "face_index"))
        conn.exec_driver_sql(stmt.sql, [stmt.params(row) for row in faces])
    crops = [
        (r.request_id, i, r.created_at, f.crop)
        for r in new
        for i, f in enumerate(r.faces)
        if f.crop is not None
    ]
    if crops:
        stmt = _statement(dialect, _table(FaceCropRow), _CROP_COLUMNS, ("request_id", "face_index"))
        conn.exec_driver_sql(stmt.sql, [stmt.params(row) for row in crops])
    _add_rollups(conn, new)
    return len(new)


def _add_rollups(conn: Connection, records: Sequence[PredictionRecord]) -> None:
    for hours_per_period, req_table, face_table, period in (
        (1, _table(HourlyRequests), _table(HourlyFaces), "hour"),
        (24, _table(DailyRequests), _table(DailyFaces), "day"),
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
    conn: Connection, table: Table, cols: tuple[str, ...], counts: Counter[tuple[Any, ...]], value: str
) -> None:
    if not counts:
        return
    stmt = _statement(conn.dialect, table, (*cols, value), cols, add=value)
    conn.exec_driver_sql(stmt.sql, [(*k, n) for k, n in sorted(counts.items())])


def write_records(engine: Engine, records: Sequence[PredictionRecord]) -> int:
    """Insert ``records`` in one transaction; returns how many were new (see ``insert_records``)."""
    with engine.begin() as conn:
        return insert_records(conn, records)
