from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from monitor_helpers import make_record
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

from maskops.monitor.db import open_store
from maskops.monitor.records import PredictionRecord
from maskops.monitor.schema import FaceRow, HourlyRequests, RequestRow
from maskops.monitor.spool import Spool
from maskops.monitor.writer import StoreWriter

Factory = Callable[..., PredictionRecord]


def stored_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(select(RequestRow.request_id)))


def counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return (
            conn.scalar(select(func.count()).select_from(RequestRow)),
            conn.scalar(select(func.count()).select_from(FaceRow)),
            conn.scalar(select(func.coalesce(func.sum(HourlyRequests.requests), 0))),
        )


def test_writer_commits_in_batches(store: Engine, tmp_path: Path, record_factory: Factory) -> None:
    with StoreWriter(store, tmp_path / "spool", batch_size=16, flush_interval=0.05) as writer:
        for i in range(100):
            writer.submit(record_factory(f"r{i:03d}", ("with_mask", "without_mask")))
        assert writer.flush(10)
        status = writer.status()
        assert status.database == "up"
        assert status.queued == 0
    assert counts(store) == (100, 200, 100)
    c = writer.counters
    assert (c.logged._value.get(), c.spooled._value.get(), c.dropped._value.get()) == (100, 0, 0)


def test_stop_writes_what_is_queued(store: Engine, tmp_path: Path, record_factory: Factory) -> None:
    writer = StoreWriter(store, tmp_path / "spool", flush_interval=5.0).start()
    for i in range(10):
        writer.submit(record_factory(f"q{i}"))
    writer.stop()
    assert sorted(stored_ids(store)) == [f"q{i}" for i in range(10)]


def test_spool_replays_in_order_and_resumes(tmp_path: Path, record_factory: Factory) -> None:
    spool = Spool(tmp_path)
    spool.append([record_factory(f"s{i}") for i in range(5)])
    spool.append([record_factory(f"s{i}") for i in range(5, 8)])
    seen: list[str] = []

    def failing_write(records: list[PredictionRecord]) -> None:
        if len(seen) >= 4:
            raise ConnectionError("down")
        seen.extend(r.request_id for r in records)

    with pytest.raises(ConnectionError):
        spool.replay(failing_write, chunk=2)
    assert seen == ["s0", "s1", "s2", "s3"]
    assert spool  # the rest waits
    assert spool.replay(lambda recs: seen.extend(r.request_id for r in recs), chunk=2) == 4
    assert seen == [f"s{i}" for i in range(8)]
    assert not spool
    assert not spool.path.exists()


def test_spool_skips_a_cut_last_line(tmp_path: Path, record_factory: Factory, caplog) -> None:
    spool = Spool(tmp_path)
    spool.append([record_factory("a")])
    with open(spool.path, "ab") as fh:  # a crash in the middle of an append
        fh.write(record_factory("cut").to_json().encode()[:40])
    later = Spool(tmp_path)  # the restarted process
    later.append([record_factory("b")])
    seen: list[str] = []
    with caplog.at_level(logging.WARNING):
        later.replay(lambda recs: seen.extend(r.request_id for r in recs))
    assert seen == ["a", "b"]
    assert "skipping" in caplog.text


def test_unreachable_database_spools_then_replays(tmp_path: Path, record_factory: Factory) -> None:
    """SQLite in a folder that does not exist yet: every connect fails until it is created."""
    db_dir = tmp_path / "later"
    url = f"sqlite:///{db_dir / 'm.db'}"
    engine = create_engine(url)
    writer = StoreWriter(engine, tmp_path / "spool", flush_interval=0.02, retry_interval=0.05).start()
    try:
        for i in range(20):
            writer.submit(record_factory(f"o{i:02d}"))
        deadline = time.monotonic() + 10
        while writer.counters.spooled._value.get() < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.status().database == "down"
        assert writer.status().spooled_bytes > 0
        db_dir.mkdir()
        open_store(url).dispose()
        for i in range(20, 30):
            writer.submit(record_factory(f"o{i:02d}"))
        assert writer.flush(10)
    finally:
        writer.stop()
    assert sorted(stored_ids(engine)) == [f"o{i:02d}" for i in range(30)]
    c = writer.counters
    assert c.spooled._value.get() >= 20
    assert c.logged._value.get() + c.replayed._value.get() == 30
    assert c.dropped._value.get() == 0


def test_full_spool_disk_drops_and_degrades(
    tmp_path: Path, record_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is missing")
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'm.db'}")  # unreachable
    writer = StoreWriter(engine, tmp_path / "spool", flush_interval=0.02, retry_interval=0.05)
    writer.spool.path = Path("/dev/full")  # every write: ENOSPC
    with caplog.at_level(logging.ERROR):
        writer.start()
        for i in range(5):
            writer.submit(record_factory(f"d{i}"))
        deadline = time.monotonic() + 10
        while writer.counters.dropped._value.get() < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        writer.stop()
    status = writer.status()
    assert writer.counters.dropped._value.get() == 5
    assert status.degraded is not None and "cannot be written" in status.degraded
    assert writer.counters.degraded._value.get() == 1
    assert "degraded" in caplog.text


def test_full_queue_overflows_into_the_spool(store: Engine, tmp_path: Path, record_factory: Factory) -> None:
    writer = StoreWriter(store, tmp_path / "spool", max_queue=2, flush_interval=0.01)
    for i in range(6):  # not started: the queue fills, the rest is spooled on this thread
        writer.submit(record_factory(f"f{i}"))
    assert writer.counters.spooled._value.get() == 4
    with writer:
        assert writer.flush(10)
    assert sorted(stored_ids(store)) == [f"f{i}" for i in range(6)]
    assert writer.counters.dropped._value.get() == 0


def test_many_threads_submit(store: Engine, tmp_path: Path, record_factory: Factory) -> None:
    with StoreWriter(store, tmp_path / "spool", max_queue=50, batch_size=32, flush_interval=0.01) as writer:

        def client(k: int) -> None:
            for i in range(50):
                writer.submit(record_factory(f"t{k}-{i}"))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert writer.flush(20)
    assert counts(store)[0] == 400


@pytest.mark.slow
def test_postgres_outage_loses_and_duplicates_nothing(
    pg_cluster, tmp_path: Path, record_factory: Factory
) -> None:
    """The real PostgreSQL stopped and started under a steady stream of records."""
    url = pg_cluster.create_database("maskops_outage")
    engine = open_store(url)
    writer = StoreWriter(engine, tmp_path / "spool", batch_size=20, flush_interval=0.02, retry_interval=0.2)
    sent: list[str] = []
    try:
        writer.start()

        def send(n: int) -> None:
            for _ in range(n):
                rid = f"p{len(sent):04d}"
                writer.submit(record_factory(rid, ("with_mask",)))
                sent.append(rid)
                time.sleep(0.002)

        send(100)
        pg_cluster.stop()
        try:
            send(200)
            deadline = time.monotonic() + 10
            while writer.status().database != "down" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert writer.status().database == "down"
            assert writer.counters.spooled._value.get() > 0
        finally:
            pg_cluster.start()
        send(100)
        assert writer.flush(30), writer.status()
    finally:
        writer.stop()
        if not pg_cluster.running():
            pg_cluster.start()
    ids = stored_ids(engine)
    assert len(ids) == len(set(ids)) == 400
    assert set(ids) == set(sent)
    assert counts(engine) == (400, 400, 400)
    c = writer.counters
    assert c.replayed._value.get() == c.spooled._value.get() > 0
    assert c.dropped._value.get() == 0
    engine.dispose()


CHILD = """
import sys, time
sys.path.insert(0, {helpers!r})
from sqlalchemy import create_engine
from monitor_helpers import make_record
from maskops.monitor.writer import StoreWriter
engine = create_engine({url!r})  # its folder does not exist: the database is unreachable
writer = StoreWriter(engine, {spool!r}, flush_interval=0.01, retry_interval=60).start()
for i in range(50):
    writer.submit(make_record(f"k{{i:02d}}"))
while writer.counters.spooled._value.get() < 50:
    time.sleep(0.01)
print("spooled", flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_spool_survives_kill_9(tmp_path: Path) -> None:
    """A process spools while the database is down and is killed; the next one replays it all."""
    import signal
    import subprocess
    import sys

    db_dir = tmp_path / "db"
    url = f"sqlite:///{db_dir / 'm.db'}"
    spool = tmp_path / "spool"
    script = CHILD.format(helpers=str(Path(__file__).parent), url=url, spool=str(spool))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "spooled"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    db_dir.mkdir()
    engine = open_store(url)
    with StoreWriter(engine, spool, flush_interval=0.01) as writer:
        writer.submit(make_record("after"))
        assert writer.flush(20)
    ids = stored_ids(engine)
    assert sorted(ids) == sorted([f"k{i:02d}" for i in range(50)] + ["after"])
    assert writer.counters.replayed._value.get() == 50
    engine.dispose()
