from __future__ import annotations

import logging
from pathlib import Path

import pytest
from monitor_helpers import make_record
from sqlalchemy import func, select

from maskops.config import Settings
from maskops.monitor.recorder import PredictionStore, spool_dir
from maskops.monitor.schema import RequestRow


def test_store_from_settings_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASKOPS_DATABASE_URL", raising=False)
    settings = Settings(work_dir=tmp_path)
    with PredictionStore.from_settings(settings) as store:
        store.record(make_record("one", ("with_mask",)))
        assert store.writer.flush(10)
        assert store.status().database == "up"
        with store.engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(RequestRow)) == 1
    assert (tmp_path / "maskops.db").is_file()
    assert spool_dir(tmp_path) == tmp_path / "monitor" / "spool"


@pytest.mark.slow
def test_database_down_at_startup_migrates_later(pg_cluster, tmp_path: Path, caplog) -> None:
    url = pg_cluster.create_database("maskops_late")
    pg_cluster.stop()
    try:
        with caplog.at_level(logging.ERROR):
            store = PredictionStore(url, tmp_path / "spool", flush_interval=0.02, retry_interval=0.1).start()
        assert "unreachable at startup" in caplog.text
        for i in range(5):
            store.record(make_record(f"late{i}"))
    finally:
        pg_cluster.start()
    try:
        assert store.writer.flush(30), store.status()
        with store.engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(RequestRow)) == 5
    finally:
        store.stop()
