from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine

from maskops.config import Settings
from maskops.monitor.db import (
    VERSION_TABLE,
    current_revision,
    downgrade,
    make_engine,
    open_store,
    parse_database_url,
    upgrade,
)
from maskops.monitor.records import FaceRecord, PredictionRecord
from maskops.monitor.schema import FaceRow, HourlyFaces, HourlyRequests, RequestRow
from maskops.monitor.store import epoch_hour, write_records

TABLES = {
    "requests",
    "faces",
    "feedback",
    "hourly_requests",
    "hourly_faces",
    "daily_requests",
    "daily_faces",
    "face_crops",
    "api_keys",
    "rate_limit_windows",
}


def test_migrations_up_down_up(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= TABLES
        assert current_revision(engine) == "0007"
        downgrade(engine)
        assert not TABLES & set(inspect(engine).get_table_names())
        assert current_revision(engine) is None
        upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_migrations_match_the_models(store: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from maskops.monitor.schema import Base

    with store.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'sub' / 'm.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_write_is_idempotent(store: Engine, record_factory: Callable[..., PredictionRecord]) -> None:
    a = record_factory("req-a", ("with_mask", "without_mask"), site="gate-1")
    b = record_factory("req-b", ("uncertain",))
    assert write_records(store, [a, b]) == 2
    assert write_records(store, [a, b]) == 0  # replayed: nothing new
    assert write_records(store, [b, record_factory("req-c", ())]) == 1
    with store.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(RequestRow)) == 3
        assert conn.scalar(select(func.count()).select_from(FaceRow)) == 3
        assert conn.scalar(select(func.sum(HourlyRequests.requests))) == 3
        faces = dict(
            conn.execute(
                select(HourlyFaces.label, func.sum(HourlyFaces.faces)).group_by(HourlyFaces.label)
            ).all()
        )
        assert faces == {"with_mask": 1, "without_mask": 1, "uncertain": 1}
        row = conn.execute(select(RequestRow).where(RequestRow.request_id == "req-a")).one()
        assert (row.site, row.source, row.n_faces, row.width, row.height) == ("gate-1", "api", 2, 640, 480)
        assert row.stages_ms == {"decode": 1.0, "detect": 5.0, "classify": 2.0}
        assert row.brightness == pytest.approx(0.5)
        assert row.hour == epoch_hour(a)
        face = conn.execute(select(FaceRow).where(FaceRow.request_id == "req-b")).one()
        assert face.label == "uncertain"
        assert face.uncertain_reason == "low_confidence"
        assert face.size == pytest.approx(40.0)
        assert face.confidence == pytest.approx(0.4)
        assert face.embedding is None


def test_a_batch_larger_than_one_insert_statement(
    store: Engine, record_factory: Callable[..., PredictionRecord]
) -> None:
    """2,500 records in one write go into the request table in chunks of one multi-row INSERT each;
    ids stored before (in any chunk) and ids repeated inside the batch are written once, and the
    rollups count only the new ones."""
    from datetime import timedelta

    from maskops.monitor import store as store_module

    t0 = record_factory("x").created_at
    first = [
        record_factory(f"r{i}", ("with_mask",), created_at=t0 + timedelta(seconds=i))
        for i in range(0, 2500, 7)
    ]
    assert write_records(store, first) == len(first)
    batch = [
        record_factory(f"r{i}", ("with_mask", "uncertain"), created_at=t0 + timedelta(seconds=i))
        for i in range(2500)
    ]
    batch += batch[1000:1010]  # repeated inside the batch
    assert len(batch) > 2 * store_module._MAX_ROWS_PER_INSERT
    new = 2500 - len(first)
    assert write_records(store, batch) == new
    with store.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(RequestRow)) == 2500
        assert conn.scalar(select(func.sum(HourlyRequests.requests))) == 2500
        faces = dict(
            conn.execute(
                select(HourlyFaces.label, func.sum(HourlyFaces.faces)).group_by(HourlyFaces.label)
            ).all()
        )
        # the first write's faces stay as they were: a stored id is skipped with its faces
        assert faces == {"with_mask": 2500, "uncertain": new}
        assert conn.scalar(select(func.count()).select_from(FaceRow)) == 2500 + new


def test_every_column_reads_back_through_the_orm(store: Engine, record_factory) -> None:
    """The writer's plain SQL stores what the ORM reads back: times, JSON, bytes, NULLs."""
    from datetime import datetime

    import numpy as np

    emb = np.linspace(-1, 1, 24).astype(np.float16).tobytes()
    base = record_factory("req-all", ())
    faces = (
        FaceRecord(
            box=(1.5, 2.5, 41.5, 62.5),
            face_score=0.875,
            probabilities={"with_mask": 0.5, "without_mask": 0.25, "mask_weared_incorrect": 0.25},
            label="uncertain",
            uncertain_reason="low_confidence",
            embedding=emb,
            crop=b"\xff\xd8jpeg",
        ),
        FaceRecord(box=(0, 0, 10, 20), face_score=None, probabilities={"with_mask": 1.0}, label="with_mask"),
    )
    created = datetime(2026, 12, 3, 18, 5, 7)  # no microseconds: the stored text keeps its format
    rec = PredictionRecord(**{**base.__dict__, "faces": faces, "created_at": created, "site": "gate-7"})
    write_records(store, [rec])
    from maskops.monitor.schema import FaceCropRow

    with store.connect() as conn:
        row = conn.execute(select(RequestRow).where(RequestRow.request_id == "req-all")).one()
        assert row.created_at == created
        assert (
            conn.scalar(select(func.count()).select_from(RequestRow).where(RequestRow.created_at >= created))
            == 1
        )
        assert (row.site, row.n_faces, row.stages_ms) == ("gate-7", 2, rec.stages_ms)
        f0, f1 = conn.execute(select(FaceRow).order_by(FaceRow.face_index)).all()
        assert (f0.x1, f0.y1, f0.x2, f0.y2, f0.size) == (1.5, 2.5, 41.5, 62.5, 40.0)
        assert f0.probabilities == faces[0].probabilities
        assert (f0.p_with_mask, f0.p_without_mask, f0.p_mask_weared_incorrect) == (0.5, 0.25, 0.25)
        assert (f0.face_score, f0.confidence, f0.label, f0.uncertain_reason) == (
            0.875,
            0.5,
            "uncertain",
            "low_confidence",
        )
        assert bytes(f0.embedding) == emb
        assert (f1.face_score, f1.p_without_mask, f1.embedding, f1.uncertain_reason) == (
            None,
            None,
            None,
            None,
        )
        crop = conn.execute(select(FaceCropRow)).one()
        assert (crop.face_index, bytes(crop.jpeg), crop.created_at) == (0, b"\xff\xd8jpeg", created)


def test_embedding_bytes_round_trip(store: Engine, record_factory) -> None:
    import numpy as np

    emb = np.arange(16, dtype=np.float16).tobytes()
    base = record_factory("req-e", ("with_mask",))
    face = FaceRecord(
        box=(0, 0, 10, 10),
        face_score=None,
        probabilities={"with_mask": 1.0},
        label="with_mask",
        embedding=emb,
    )
    rec = PredictionRecord(**{**base.__dict__, "faces": (face,)})
    assert PredictionRecord.from_json(rec.to_json()) == rec
    write_records(store, [rec])
    with store.connect() as conn:
        stored = conn.scalar(select(FaceRow.embedding))
    assert np.frombuffer(stored, np.float16).tolist() == list(range(16))


def test_epoch_hour() -> None:
    from datetime import UTC, datetime

    rec = PredictionRecord(
        request_id="x",
        created_at=datetime(1970, 1, 2, 3, 59, tzinfo=UTC),
        source="api",
        latency_ms=1,
        width=1,
        height=1,
    )
    assert epoch_hour(rec) == 27


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("source", "ftp", "source must be one of"),
        ("request_id", "", "request_id"),
        ("site", "x" * 65, "site"),
    ],
)
def test_record_checks(record_factory, field: str, value: str, message: str) -> None:
    base = record_factory("r1").__dict__
    with pytest.raises(ValueError, match=message):
        PredictionRecord(**{**base, field: value})


@pytest.mark.parametrize(
    "url, expected",
    [
        ("sqlite:///work/maskops.db", "sqlite"),
        ("postgresql://u:p@db:5432/maskops", "postgresql+psycopg"),
        ("postgresql+psycopg://u@127.0.0.1/m", "postgresql+psycopg"),
    ],
)
def test_parse_database_url(url: str, expected: str) -> None:
    assert parse_database_url(url).drivername == expected


@pytest.mark.parametrize("url", ["not a url", "mysql://u@h/db", "://nothing"])
def test_malformed_database_url_names_the_variable(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="MASKOPS_DATABASE_URL"):
        parse_database_url(url)
    monkeypatch.setenv("MASKOPS_DATABASE_URL", url)
    with pytest.raises(ValueError, match="MASKOPS_DATABASE_URL"):
        Settings()


def test_default_store_is_sqlite_in_the_work_dir(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASKOPS_DATABASE_URL", raising=False)
    s = Settings(work_dir=tmp_path)
    assert s.store_url() == f"sqlite:///{tmp_path / 'maskops.db'}"
    monkeypatch.setenv("MASKOPS_DATABASE_URL", "postgresql://u@h/db")
    assert Settings(work_dir=tmp_path).store_url() == "postgresql://u@h/db"


def test_daily_rollups_migration_fills_from_the_hourly_ones(store_url: str) -> None:
    from sqlalchemy import text

    engine = make_engine(store_url)
    try:
        upgrade(engine, "0001")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO hourly_requests (hour, site, source, latency_bin, requests) VALUES "
                    "(24, 'a', 'api', 60, 2), (47, 'a', 'api', 60, 3), (48, 'a', 'api', 60, 5), (30, '', 'api', 61, 1)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO hourly_faces (hour, site, source, label, faces) VALUES "
                    "(24, 'a', 'api', 'with_mask', 4), (47, 'a', 'api', 'with_mask', 1)"
                )
            )
        upgrade(engine)
        with engine.connect() as conn:
            daily = conn.execute(
                text(
                    "SELECT day, site, latency_bin, requests FROM daily_requests ORDER BY day, site, latency_bin"
                )
            ).all()
            faces = conn.execute(text("SELECT day, label, faces FROM daily_faces")).all()
        assert [tuple(r) for r in daily] == [(1, "", 61, 1), (1, "a", 60, 5), (2, "a", 60, 5)]
        assert [tuple(r) for r in faces] == [(1, "with_mask", 5)]
        downgrade(engine, "0001")
        assert "daily_requests" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_concurrent_upgrades_in_one_process_migrate_once(tmp_path) -> None:
    """The writer thread and the app may both migrate a store that was down at startup."""
    import threading

    from sqlalchemy import text

    from maskops.monitor.db import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine, "0001")
    with engine.begin() as conn:  # rollups for 0002 to fold into days (a second fold would collide)
        conn.execute(
            text(
                "INSERT INTO hourly_requests (hour, site, source, latency_bin, requests) "
                "VALUES (48, '', 'api', 3, 5), (49, '', 'api', 3, 2)"
            )
        )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert current_revision(engine) == "0007"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT day, requests FROM daily_requests")).all() == [(2, 7)]
