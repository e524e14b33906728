"""Store fixtures: every store test runs on SQLite and on a throwaway PostgreSQL cluster."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from monitor_helpers import make_record
from pgcluster import PgCluster, pg_bin_dir
from sqlalchemy import Engine

from maskops.monitor.db import open_store
from maskops.monitor.records import PredictionRecord


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


@pytest.fixture
def record_factory() -> Callable[..., PredictionRecord]:
    return make_record
