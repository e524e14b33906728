"""API keys: created once, stored hashed in a small SQLite file, compared in constant time.

A key reads ``mko_<id>_<secret>``: the 8-hex id finds the row, the 32-byte random secret is
checked against its stored SHA-256 with ``hmac.compare_digest``. A key is as strong as a random
256-bit token, so a fast hash is enough (no password stretching needed); the plain key is shown
only at creation. Roles: ``predict`` (inference routes) and ``admin`` (everything, incl. reload).
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
        if role not in ROLES:
            raise KeyStoreError(f"unknown role {role!r}; valid: {', '.join(ROLES)}")
        if not name.strip():
            raise KeyStoreError("a key needs a name")
        if rate_per_s is not None and rate_per_s <= 0:
            raise KeyStoreError(f"rate must be > 0 requests/s, got {rate_per_s}")
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
