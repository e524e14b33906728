"""API keys: created once, stored hashed in a small SQLite file, compared in constant time.

A key reads ``mko_<id>_<secret>``: the 8-hex id finds the row, the 32-byte random secret is
checked against its stored SHA-256 with ``hmac.compare_digest``. A key is as strong as a random
256-bit token, so a fast hash is enough (no password stretching needed); the plain key is shown
only at creation. Roles: ``predict`` (inference routes) and ``admin`` (everything, incl. reload).

Where the keys live (``open_key_store``):

- embedded default: a SQLite file, ``MASKOPS_KEYS_DB`` or ``<work_dir>/serve/keys.db`` (``KeyStore``);
- replicas: when ``MASKOPS_DATABASE_URL`` names PostgreSQL and ``MASKOPS_KEYS_DB`` is unset, the
  ``api_keys`` table of that shared database (``SqlKeyStore``, created by the store's migration
  0005), so every ``maskops serve`` process behind a load balancer, and the key commands
  (``maskops keys create``), see the same keys. There is no cache: each request reads its key's row (one primary-key SELECT), so a key
  revoked through any replica or the CLI is refused by every replica from the next request on.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from maskops.serve.settings import ServeSettings

ROLES = ("predict", "admin")
PREFIX = "mko"
_DUMMY_HASH = hashlib.sha256(b"maskops-no-such-key").hexdigest()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    rate_per_s REAL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
)
"""


class KeyStoreError(ValueError):
    """A key operation that cannot be done (unknown id, bad role)."""


class KeyStoreUnavailable(sqlite3.Error):
    """The shared key database cannot be reached (a ``sqlite3.Error``, as the SQLite store's own
    failures are, so ``/ready`` reports both the same way)."""


def check_new_key(name: str, role: str, rate_per_s: float | None) -> None:
    """Raises ``KeyStoreError`` for a key that cannot be created (unknown role, no name, rate <= 0)."""
    if role not in ROLES:
        raise KeyStoreError(f"unknown role {role!r}; valid: {', '.join(ROLES)}")
    if not name.strip():
        raise KeyStoreError("a key needs a name")
    if rate_per_s is not None and rate_per_s <= 0:
        raise KeyStoreError(f"rate must be > 0 requests/s, got {rate_per_s}")


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret."""

    id: str
    name: str
    role: str
    rate_per_s: float | None
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, role: str) -> bool:
        """``admin`` may do everything; ``predict`` only predict."""
        return self.active and (self.role == "admin" or self.role == role)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class KeyStore:
    """The key table in ``path`` (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    def ping(self) -> None:
        """Raises ``sqlite3.Error`` when the store cannot be read."""
        with self._lock:
            self._db().execute("SELECT count(*) FROM api_keys").fetchone()

    def create(self, name: str, role: str = "predict", rate_per_s: float | None = None) -> tuple[ApiKey, str]:
        """Create a key; returns the stored record and the plain key (shown once, never stored)."""
        check_new_key(name, role, rate_per_s)
        secret = secrets.token_urlsafe(32)
        with self._lock:
            db = self._db()
            while True:
                key_id = secrets.token_hex(4)
                if db.execute("SELECT 1 FROM api_keys WHERE id = ?", (key_id,)).fetchone() is None:
                    break
            created = _now()
            db.execute(
                "INSERT INTO api_keys (id, name, role, secret_sha256, rate_per_s, created_at) VALUES (?,?,?,?,?,?)",
                (key_id, name.strip(), role, _hash(secret), rate_per_s, created),
            )
        return ApiKey(key_id, name.strip(), role, rate_per_s, created, None), f"{PREFIX}_{key_id}_{secret}"

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        sql = "SELECT id, name, role, rate_per_s, created_at, revoked_at FROM api_keys"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        with self._lock:
            rows = self._db().execute(sql + " ORDER BY created_at, id").fetchall()
        return [ApiKey(*row) for row in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Mark a key revoked (it stays listed); revoking twice keeps the first time."""
        with self._lock:
            db = self._db()
            row = db.execute(
                "SELECT id, name, role, rate_per_s, created_at, revoked_at FROM api_keys WHERE id = ?",
                (key_id,),
            ).fetchone()
            if row is None:
                raise KeyStoreError(f"no key with id {key_id!r}")
            if row[5] is None:
                db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (_now(), key_id))
        return self.get(key_id)

    def get(self, key_id: str) -> ApiKey:
        with self._lock:
            row = (
                self._db()
                .execute(
                    "SELECT id, name, role, rate_per_s, created_at, revoked_at FROM api_keys WHERE id = ?",
                    (key_id,),
                )
                .fetchone()
            )
        if row is None:
            raise KeyStoreError(f"no key with id {key_id!r}")
        return ApiKey(*row)

    def verify(self, presented: str) -> ApiKey | None:
        """The active key matching ``presented``, or ``None`` (unknown, malformed, wrong or revoked)."""
        parts = presented.split("_", 2)
        ok_shape = len(parts) == 3 and parts[0] == PREFIX and len(parts[1]) == 8
        key_id, secret = (parts[1], parts[2]) if ok_shape else ("", presented)
        with self._lock:
            row = (
                self._db()
                .execute(
                    "SELECT id, name, role, rate_per_s, created_at, revoked_at, secret_sha256 "
                    "FROM api_keys WHERE id = ?",
                    (key_id,),
                )
                .fetchone()
                if ok_shape
                else None
            )
        # compare even when nothing matched, so timing does not tell a known id from an unknown one
        stored = row[6] if row is not None else _DUMMY_HASH
        match = hmac.compare_digest(_hash(secret), stored)
        if row is None or not match or row[5] is not None:
            return None
        return ApiKey(*row[:6])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _iso(value: datetime | None) -> str | None:
    """A stored naive-UTC time as the SQLite store writes it (``2026-12-03T10:00:00+00:00``)."""
    return None if value is None else value.replace(tzinfo=UTC).isoformat(timespec="seconds")


class SqlKeyStore(KeyStore):
    """The same store on the ``api_keys`` table of a SQLAlchemy database (PostgreSQL for replicas).

    The engine is opened (and the schema migrated) on first use, so a database that is down when
    the app is built only fails the requests that need a key.
    """

    _COLUMNS = "id, name, role, rate_per_s, created_at, revoked_at"

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = Path(url)  # for messages only
        self._lock = threading.Lock()
        self._engine: Engine | None = None

    def engine(self) -> Engine:
        """The migrated engine (shared with ``SqlRateLimiter``)."""
        with self._lock:
            if self._engine is None:
                from maskops.monitor.db import open_store

                self._engine = open_store(self.url, pool_size=4, max_overflow=8)
            return self._engine

    def _rows(self, sql: str, **params: Any) -> list[Any]:
        from sqlalchemy import text

        with self.engine().begin() as conn:
            result = conn.execute(text(sql), params)
            return list(result.all()) if result.returns_rows else []

    def _key(self, row: Any) -> ApiKey:
        return ApiKey(row[0], row[1], row[2], row[3], _iso(row[4]) or "", _iso(row[5]))

    def ping(self) -> None:
        """Raises ``KeyStoreUnavailable`` when the store cannot be read."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self._rows("SELECT count(*) FROM api_keys")
        except (SQLAlchemyError, OSError) as exc:
            raise KeyStoreUnavailable(f"API key table at {self._safe_url()} cannot be read: {exc}") from exc

    def _safe_url(self) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    def create(self, name: str, role: str = "predict", rate_per_s: float | None = None) -> tuple[ApiKey, str]:
        check_new_key(name, role, rate_per_s)
        from sqlalchemy.exc import IntegrityError

        secret = secrets.token_urlsafe(32)
        created = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        for _ in range(10):  # a clash of 8-hex ids is rare; the primary key tells us
            key_id = secrets.token_hex(4)
            try:
                self._rows(
                    "INSERT INTO api_keys (id, name, role, secret_sha256, rate_per_s, created_at) "
                    "VALUES (:id, :name, :role, :sha, :rate, :created)",
                    id=key_id,
                    name=name.strip(),
                    role=role,
                    sha=_hash(secret),
                    rate=rate_per_s,
                    created=created,
                )
            except IntegrityError:
                continue
            return self.get(key_id), f"{PREFIX}_{key_id}_{secret}"
        raise KeyStoreError("could not find a free key id after 10 tries")

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        rows = self._rows(f"SELECT {self._COLUMNS} FROM api_keys{where} ORDER BY created_at, id")
        return [self._key(r) for r in rows]

    def revoke(self, key_id: str) -> ApiKey:
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        self.get(key_id)  # KeyStoreError when unknown
        self._rows(
            "UPDATE api_keys SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL", now=now, id=key_id
        )
        return self.get(key_id)

    def get(self, key_id: str) -> ApiKey:
        rows = self._rows(f"SELECT {self._COLUMNS} FROM api_keys WHERE id = :id", id=key_id)
        if not rows:
            raise KeyStoreError(f"no key with id {key_id!r}")
        return self._key(rows[0])

    def verify(self, presented: str) -> ApiKey | None:
        parts = presented.split("_", 2)
        ok_shape = len(parts) == 3 and parts[0] == PREFIX and len(parts[1]) == 8
        key_id, secret = (parts[1], parts[2]) if ok_shape else ("", presented)
        rows = (
            self._rows(f"SELECT {self._COLUMNS}, secret_sha256 FROM api_keys WHERE id = :id", id=key_id)
            if ok_shape
            else []
        )
        row = rows[0] if rows else None
        stored = row[6] if row is not None else _DUMMY_HASH
        match = hmac.compare_digest(_hash(secret), stored)
        if row is None or not match or row[5] is not None:
            return None
        return self._key(row)

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None


def uses_shared_database(settings: ServeSettings) -> bool:
    """Keys (and rate limits) go to the shared database: PostgreSQL configured, no keys file named."""
    url = settings.database_url
    if settings.keys_db is not None or not url:
        return False
    from maskops.monitor.db import parse_database_url

    return parse_database_url(url).get_backend_name() == "postgresql"


def open_key_store(settings: ServeSettings, path: Path | None = None) -> KeyStore:
    """The key store of ``settings``: ``path`` (a SQLite file) when given, the shared PostgreSQL
    database when ``MASKOPS_DATABASE_URL`` names one (and ``MASKOPS_KEYS_DB`` is unset), else the
    SQLite file ``settings.keys_path``."""
    if path is not None:
        return KeyStore(path)
    if uses_shared_database(settings):
        assert settings.database_url is not None
        return SqlKeyStore(settings.database_url)
    return KeyStore(settings.keys_path)
