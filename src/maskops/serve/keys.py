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

Keys can also be provisioned from outside the store, the way container platforms hand out secrets
(``load_provisioned_keys``): ``MASKOPS_API_KEYS`` (entries separated by commas or new lines) and
``MASKOPS_API_KEYS_FILE`` (a secret file, one entry a line, ``#`` comments and blank lines skipped),
each entry ``name:role:key`` or ``name:role:key:rate``. They are read once at startup, hashed like
the stored keys (the plain text is not kept), checked before the store (so they work while a shared
key database is down), and never logged; a malformed entry stops the startup with an error naming
the variable or file and the entry or line, never the key. Revoke one by removing it and restarting.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
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

logger = logging.getLogger(__name__)

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
    """The key table in ``path`` (created on first use), and the keys provisioned from the
    environment or a secret file (``provisioned``), which are checked first."""

    provisioned: ProvisionedKeys | None = None

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
        """The active key matching ``presented``, or ``None`` (unknown, malformed, wrong or revoked):
        a provisioned key first, then the store."""
        if self.provisioned is not None:
            key = self.provisioned.verify(presented)
            if key is not None:
                return key
        return self._verify_stored(presented)

    def _verify_stored(self, presented: str) -> ApiKey | None:
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

    def _verify_stored(self, presented: str) -> ApiKey | None:
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


def open_key_store(
    settings: ServeSettings, path: Path | None = None, provisioned: ProvisionedKeys | None = None
) -> KeyStore:
    """The key store of ``settings``: ``path`` (a SQLite file) when given, the shared PostgreSQL
    database when ``MASKOPS_DATABASE_URL`` names one (and ``MASKOPS_KEYS_DB`` is unset), else the
    SQLite file ``settings.keys_path``; with ``provisioned`` keys checked before it."""
    store: KeyStore
    if path is not None:
        store = KeyStore(path)
    elif uses_shared_database(settings):
        assert settings.database_url is not None
        store = SqlKeyStore(settings.database_url)
    else:
        store = KeyStore(settings.keys_path)
    store.provisioned = provisioned
    return store


# --- keys provisioned from the environment or a secret file

ENV_VAR = "MASKOPS_API_KEYS"
FILE_VAR = "MASKOPS_API_KEYS_FILE"
MIN_KEY_CHARS = 32
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_KEY = re.compile(r"[A-Za-z0-9_.~+/=-]+")  # base64 and URL-safe tokens; no ':', ',' or spaces


class KeyProvisioningError(ValueError):
    """A malformed ``MASKOPS_API_KEYS`` entry or ``MASKOPS_API_KEYS_FILE``; the message names the
    variable or file and the entry or line, never the key."""


def new_key() -> str:
    """A fresh key of the store's shape (``mko_<id>_<secret>``), for an entry written by hand."""
    return f"{PREFIX}_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"


def parse_key_entry(entry: str, where: str) -> tuple[ApiKey, str]:
    """One ``name:role:key[:rate]`` entry as (the key's record, the SHA-256 of the key).

    ``where`` says where the entry is (``MASKOPS_API_KEYS entry 2``) for the error message.

    Raises:
        KeyProvisioningError: a wrong field count, name, role, key or rate.
    """
    fields = entry.strip().split(":")
    if len(fields) not in (3, 4):
        raise KeyProvisioningError(
            f"{where}: expected name:role:key or name:role:key:rate, got {len(fields)} field(s) "
            "separated by ':'"
        )
    name, role, key = (f.strip() for f in fields[:3])
    if not _NAME.fullmatch(name):
        raise KeyProvisioningError(
            f"{where}: the name must be 1-64 letters, digits, '.', '_' or '-' (starting with a letter "
            "or digit)"
        )
    if role not in ROLES:
        raise KeyProvisioningError(f"{where} ({name}): unknown role {role!r}; valid: {', '.join(ROLES)}")
    if not _KEY.fullmatch(key):
        raise KeyProvisioningError(
            f"{where} ({name}): the key may hold only letters, digits and '_-.~+/=' (a base64 or "
            "URL-safe token)"
        )
    if len(key) < MIN_KEY_CHARS:
        raise KeyProvisioningError(
            f"{where} ({name}): the key has {len(key)} characters, at least {MIN_KEY_CHARS} are "
            "needed (make one with `maskops keys entry`)"
        )
    rate: float | None = None
    if len(fields) == 4:
        try:
            rate = float(fields[3])
        except ValueError:
            raise KeyProvisioningError(f"{where} ({name}): the rate must be a number of requests/s") from None
        if not rate > 0 or rate == float("inf"):
            raise KeyProvisioningError(f"{where} ({name}): the rate must be > 0 requests/s")
    record = ApiKey(f"env:{name}", name, role, rate, _now(), None)
    return record, _hash(key)


class ProvisionedKeys:
    """Keys given to the process (hashed; the plain keys are not kept), checked in constant time:
    every stored hash is compared, whichever matches."""

    def __init__(self, entries: list[tuple[ApiKey, str]]) -> None:
        self._entries = list(entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def keys(self) -> list[ApiKey]:
        return [key for key, _ in self._entries]

    def verify(self, presented: str) -> ApiKey | None:
        digest = _hash(presented)
        found: ApiKey | None = None
        for key, stored in self._entries:
            if hmac.compare_digest(digest, stored):
                found = key
        return found


def _entries_of(text: str, source: str, *, commas: bool) -> list[tuple[str, str]]:
    """``(where, entry)`` of ``text``: lines (and, for the variable, comma-separated parts),
    blank ones and ``#`` comments skipped."""
    out: list[tuple[str, str]] = []
    n = 0
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not commas:
            out.append((f"{source} line {line_no}", line))
            continue
        for part in line.split(","):
            if part.strip():
                n += 1
                out.append((f"{source} entry {n}", part))
    return out


def load_provisioned_keys(settings: ServeSettings) -> ProvisionedKeys | None:
    """The keys of ``MASKOPS_API_KEYS`` and ``MASKOPS_API_KEYS_FILE`` (``None`` when neither is set).

    Raises:
        KeyProvisioningError: the file cannot be read, an entry is malformed, a name or a key is
            given twice.
    """
    sources: list[tuple[str, str]] = []
    if settings.api_keys is not None and settings.api_keys.get_secret_value().strip():
        sources.extend(_entries_of(settings.api_keys.get_secret_value(), ENV_VAR, commas=True))
    path = settings.api_keys_file
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise KeyProvisioningError(f"{FILE_VAR} {path}: cannot be read ({reason})") from None
        sources.extend(_entries_of(text, f"{FILE_VAR} {path}", commas=False))
    if settings.api_keys is None and path is None:
        return None
    entries: list[tuple[ApiKey, str]] = []
    seen_names: dict[str, str] = {}
    seen_keys: dict[str, str] = {}
    for where, entry in sources:
        key, digest = parse_key_entry(entry, where)
        if key.name in seen_names:
            raise KeyProvisioningError(
                f"{where}: the name {key.name!r} is already given ({seen_names[key.name]})"
            )
        if digest in seen_keys:
            raise KeyProvisioningError(
                f"{where} ({key.name}): the same key is already given to {seen_keys[digest]!r}; "
                "each name needs its own key"
            )
        seen_names[key.name] = where
        seen_keys[digest] = key.name
        entries.append((key, digest))
    provisioned = ProvisionedKeys(entries)
    logger.info(
        "API keys from %s: %s",
        " and ".join(
            v for v, on in ((ENV_VAR, settings.api_keys is not None), (FILE_VAR, path is not None)) if on
        ),
        ", ".join(f"{k.name} ({k.role})" for k in provisioned.keys) or "none",
    )
    if provisioned and not settings.auth:
        logger.warning(
            "%d API key(s) provisioned, but MASKOPS_AUTH is off: every route is open", len(provisioned)
        )
    return provisioned
