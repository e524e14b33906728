"""Store fixtures: every store test runs on SQLite and on a throwaway PostgreSQL cluster."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pgcluster import PgCluster, pg_bin_dir
from sqlalchemy import Engine

from maskops.monitor.db import open_store
from maskops.monitor.records import FaceRecord, PredictionRecord

T0 = datetime(2026, 12, 1, 9, 0, 0)
PROBS = {
    "with_mask": {"with_mask": 0.9, "without_mask": 0.07, "mask_weared_incorrect": 0.03},
    "without_mask": {"with_mask": 0.05, "without_mask": 0.9, "mask_weared_incorrect": 0.05},
    "mask_weared_incorrect": {"with_mask": 0.2, "without_mask": 0.1, "mask_weared_incorrect": 0.7},
    "uncertain": {"with_mask": 0.4, "without_mask": 0.35, "mask_weared_incorrect": 0.25},
}


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster for the session. Missing binaries fail the run under root (CI installs
    them from .ci/apt-packages); a non-root developer without them gets a loud skip."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        message = (
            "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin: "
            "apt-get install postgresql (listed in .ci/apt-packages)"
        )
        if os.geteuid() == 0:
            pytest.fail(message)
        pytest.skip(f"SKIPPING ALL POSTGRESQL STORE TESTS: {message}")
    cluster = PgCluster(bin_dir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.remove()


_db_counter = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: a SQLite file, or a new database in the session's cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'maskops.db'}"
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"maskops_test_{os.getpid()}_{next(_db_counter)}")


@pytest.fixture
def store(store_url: str) -> Iterator[Engine]:
    """A migrated store on a fresh database."""
    engine = open_store(store_url)
    try:
        yield engine
    finally:
        engine.dispose()


def make_record(
    request_id: str,
    labels: tuple[str, ...] = ("with_mask",),
    *,
    created_at: datetime = T0,
    site: str | None = None,
    source: str = "api",
    latency_ms: float = 20.0,
) -> PredictionRecord:
    """A record with one face per label (``uncertain`` faces get a reason)."""
    faces = tuple(
        FaceRecord(
            box=(10.0 * i, 5.0, 10.0 * i + 40.0, 55.0),
            face_score=0.9,
            probabilities=PROBS[label],
            label=label,
            uncertain_reason="low_confidence" if label == "uncertain" else None,
        )
        for i, label in enumerate(labels)
    )
    return PredictionRecord(
        request_id=request_id,
        created_at=created_at,
        source=source,
        latency_ms=latency_ms,
        width=640,
        height=480,
        site=site,
        model_name="facemask",
        model_version="abc123",
        detector="yunet_cal",
        detector_version="def456",
        stages_ms={"decode": 1.0, "detect": 5.0, "classify": 2.0},
        quality={"brightness": 0.5, "contrast": 0.2, "sharpness": 100.0, "saturation": 0.3},
        faces=faces,
    )


@pytest.fixture
def record_factory() -> Callable[..., PredictionRecord]:
    return make_record


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
