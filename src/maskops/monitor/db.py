"""Opening the prediction store: its URL, the engine (SQLite in WAL mode, or PostgreSQL) and the
Alembic migrations that create and change its schema.

The embedded default is ``sqlite:///<work_dir>/maskops.db``; ``MASKOPS_DATABASE_URL`` points it
elsewhere (``postgresql+psycopg://user:password@host/db`` for a team).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "maskops_alembic_version"  # not alembic_version: the database may be shared (MLflow uses it)
SUPPORTED = ("sqlite", "postgresql")
ENV_VAR = "MASKOPS_DATABASE_URL"


def parse_database_url(url: str, name: str = ENV_VAR) -> URL:
    """Check and normalise a store URL (a bare ``postgresql://`` gets the psycopg 3 driver).

    Raises:
        ValueError: not a URL SQLAlchemy reads, or a database other than SQLite or PostgreSQL;
            the message names ``name`` (``MASKOPS_DATABASE_URL``, or the option that gave the URL).
    """
    example = "e.g. postgresql+psycopg://user:password@host:5432/maskops or sqlite:///work/maskops.db"
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"{name} is not a database URL ({exc}); {example}") from None
    if parsed.get_backend_name() not in SUPPORTED:
        raise ValueError(
            f"{name} names database {parsed.get_backend_name()!r}; the prediction store runs on "
            f"{' or '.join(SUPPORTED)}: {example}"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def default_database_url(work_dir: Path) -> str:
    return f"sqlite:///{Path(work_dir) / 'maskops.db'}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL: readers (stats, feedback) never block the writer; NORMAL is durable across a process
    # crash (a power cut may lose the last commits, which the spool does not cover either)
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for the store; SQLite files get their folder, WAL mode and foreign keys.

    Raises:
        ValueError: a malformed or unsupported URL (see ``parse_database_url``).
    """
    parsed = parse_database_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    connect_args = kwargs.setdefault("connect_args", {})
    connect_args.setdefault("connect_timeout", 5)
    return create_engine(parsed, **kwargs)


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_table", VERSION_TABLE)
    cfg.attributes["engine"] = engine
    return cfg


# one migration at a time in a process: the writer thread migrates a store that was down at startup
# while the app (or a command) may open it too; on PostgreSQL an advisory lock also covers other
# processes (migrations/env.py)
_MIGRATE_LOCK = threading.Lock()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the store's schema up to ``revision`` (creating it on an empty database)."""
    from alembic import command

    with _MIGRATE_LOCK:
        command.upgrade(_alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Migrate the store's schema down to ``revision`` (``base`` drops every table)."""
    from alembic import command

    with _MIGRATE_LOCK:
        command.downgrade(_alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def open_store(url: str | URL, *, migrate: bool = True, **kwargs: Any) -> Engine:
    """An engine for the store at ``url``, migrated to the latest schema unless ``migrate`` is False."""
    engine = make_engine(url, **kwargs)
    if migrate:
        upgrade(engine)
    return engine
