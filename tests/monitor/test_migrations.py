"""Migrations 0006 (the class probabilities as numeric columns, filled from the JSON) and 0007 (covering
indexes of the rollups), up and back down.

Runs on SQLite and PostgreSQL (``store_url``)."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
from sqlalchemy import insert, inspect, select, text

from maskops.monitor.db import current_revision, downgrade, make_engine, upgrade
from maskops.monitor.schema import PROBABILITY_COLUMNS, FaceRow, FeedbackRow, RequestRow

NAMES = list(PROBABILITY_COLUMNS)


def _old_faces(n: int) -> list[dict[str, object]]:
    """Faces as revision 0005 stored them (JSON probabilities only), with values hard to parse
    exactly (17 significant digits, tiny and huge exponents) and faces lacking a class."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(n):
        p = [float(v) for v in rng.dirichlet([8.0, 2.0, 0.5])]
        probs = dict(zip(NAMES, p, strict=True))
        if i % 7 == 3:
            probs[NAMES[2]] = 1e-300 * (1 + i)
        if i % 11 == 5:
            del probs[NAMES[1]]  # an old face without this class
        if i % 13 == 0:
            probs = {}
        rows.append(
            {
                "request_id": f"r{i // 2:04d}",
                "face_index": i % 2,
                "x1": 0.0,
                "y1": 0.0,
                "x2": 40.0,
                "y2": 50.0,
                "size": 40.0,
                "face_score": 0.9,
                "confidence": max(probs.values(), default=0.0),
                "probabilities": probs,
                "label": "with_mask",
                "uncertain_reason": None,
                "embedding": None,
            }
        )
    return rows


def _fill_0005(engine, faces: list[dict[str, object]]) -> None:  # type: ignore[no-untyped-def]
    ids = sorted({str(f["request_id"]) for f in faces})
    requests = [
        {
            "request_id": rid,
            "created_at": datetime(2026, 12, 3, 9, 0, k % 60),
            "hour": 0,
            "source": "api",
            "latency_ms": 10.0,
            "stages_ms": {},
            "width": 640,
            "height": 480,
            "n_faces": 2,
        }
        for k, rid in enumerate(ids)
    ]
    with engine.begin() as conn:
        conn.execute(insert(RequestRow.__table__), requests)
        conn.execute(insert(FaceRow.__table__), faces)  # only the 0005 columns are given
        conn.execute(
            insert(FeedbackRow.__table__),
            [
                {
                    "request_id": ids[0],
                    "face_index": 0,
                    "true_label": "with_mask",
                    "created_at": datetime(2026, 12, 3, 10),
                    "origin": "api",
                }
            ],
        )


def _face_columns(engine) -> set[str]:  # type: ignore[no-untyped-def]
    return {c["name"] for c in inspect(engine).get_columns("faces")}


def test_0006_fills_the_probability_columns_from_the_json_and_goes_back_down(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        upgrade(engine, "0005")
        faces = _old_faces(200)
        _fill_0005(engine, faces)
        assert not set(PROBABILITY_COLUMNS.values()) & _face_columns(engine)

        upgrade(engine, "0006")
        assert current_revision(engine) == "0006"
        cols = [FaceRow.__table__.c[c] for c in PROBABILITY_COLUMNS.values()]
        with engine.connect() as conn:
            got = conn.execute(
                select(FaceRow.request_id, FaceRow.face_index, FaceRow.probabilities, *cols).order_by(
                    FaceRow.request_id, FaceRow.face_index
                )
            ).all()
        assert len(got) == len(faces)
        for row in got:
            probs = row[2]
            # exactly the values the JSON decodes to (bit for bit), NULL where the JSON has no class
            assert list(row[3:]) == [probs.get(n) for n in NAMES]
        expected = {(f["request_id"], f["face_index"]): f["probabilities"] for f in faces}
        assert {(r[0], r[1]): r[2] for r in got} == expected

        downgrade(engine, "0005")
        assert current_revision(engine) == "0005"
        assert not set(PROBABILITY_COLUMNS.values()) & _face_columns(engine)
        with engine.connect() as conn:
            # the faces and the feedback on them are still there (no table copy, no cascade)
            assert conn.execute(text("SELECT COUNT(*) FROM faces")).scalar_one() == len(faces)
            assert conn.execute(text("SELECT COUNT(*) FROM feedback")).scalar_one() == 1

        upgrade(engine)
        with engine.connect() as conn:
            again = conn.execute(select(*cols).order_by(FaceRow.request_id, FaceRow.face_index)).all()
        assert [tuple(r) for r in again] == [tuple(r[3:]) for r in got]
    finally:
        engine.dispose()


def test_0006_backfill_reads_json_written_as_the_store_writes_it(store_url: str) -> None:
    """The JSON text the store writes (``json.dumps`` of Python floats) parses to the same doubles in
    the database as in Python, over many random values."""
    engine = make_engine(store_url)
    try:
        upgrade(engine, "0005")
        rng = np.random.default_rng(11)
        values = np.concatenate(
            [rng.random(3000), rng.random(1500) ** 9, rng.dirichlet([1, 1, 1], 500).ravel()]
        )
        faces = _old_faces(len(values) // 3)
        for f, chunk in zip(faces, values.reshape(-1, 3), strict=False):
            f["probabilities"] = json.loads(json.dumps(dict(zip(NAMES, map(float, chunk), strict=True))))
        _fill_0005(engine, faces)
        upgrade(engine)
        cols = [FaceRow.__table__.c[c] for c in PROBABILITY_COLUMNS.values()]
        with engine.connect() as conn:
            got = conn.execute(select(FaceRow.probabilities, *cols)).all()
        mismatches = [r for r in got if list(r[1:]) != [r[0].get(n) for n in NAMES]]
        assert mismatches == []
    finally:
        engine.dispose()


def _indexes(engine, table: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {ix["name"] for ix in inspect(engine).get_indexes(table) if ix["name"]}


def test_0007_adds_the_covering_indexes_of_the_rollups_and_drops_them_down(store_url: str) -> None:
    tables = {
        "hourly_requests": "ix_hourly_requests_cover",
        "hourly_faces": "ix_hourly_faces_cover",
        "daily_requests": "ix_daily_requests_cover",
        "daily_faces": "ix_daily_faces_cover",
    }
    engine = make_engine(store_url)
    try:
        upgrade(engine, "0006")
        assert all(ix not in _indexes(engine, t) for t, ix in tables.items())
        upgrade(engine, "0007")
        assert current_revision(engine) == "0007"
        assert all(ix in _indexes(engine, t) for t, ix in tables.items())
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                plan = " ".join(
                    str(r[-1])
                    for r in conn.execute(
                        text(
                            "EXPLAIN QUERY PLAN SELECT hour, site, SUM(requests) FROM hourly_requests "
                            "WHERE hour >= 0 AND hour < 720 GROUP BY hour, site"
                        )
                    )
                )
            # the stats query reads the index alone, not the table rows
            assert "COVERING INDEX ix_hourly_requests_cover" in plan, plan
        downgrade(engine, "0006")
        assert all(ix not in _indexes(engine, t) for t, ix in tables.items())
    finally:
        engine.dispose()
