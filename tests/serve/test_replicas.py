"""Two ``maskops serve`` replicas on loopback sharing one (throwaway) PostgreSQL: one key store, one
rate limit. Plus the shared store and limiter in-process, on the same cluster."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "monitor"))
from pgcluster import PgCluster, pg_bin_dir

from maskops.serve.keys import KeyStore, KeyStoreUnavailable, SqlKeyStore, open_key_store
from maskops.serve.ratelimit import RateLimiter, SqlRateLimiter, make_rate_limiter, window_for
from maskops.serve.settings import ServeSettings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        message = "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin: apt-get install postgresql"
        if os.geteuid() == 0:
            pytest.fail(message)
        pytest.skip(message)
    cluster = PgCluster(bin_dir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.remove()


_n = iter(range(10**6))


@pytest.fixture
def pg_url(pg: PgCluster) -> str:
    return pg.create_database(f"maskops_replicas_{os.getpid()}_{next(_n)}")


# --- in process


def test_store_choice(tmp_path: Path, pg_url: str) -> None:
    sqlite = ServeSettings(work_dir=tmp_path)
    assert type(open_key_store(sqlite)) is KeyStore
    shared = ServeSettings(work_dir=tmp_path, database_url=pg_url)
    store = open_key_store(shared)
    assert isinstance(store, SqlKeyStore)
    assert type(make_rate_limiter(shared, store)) is SqlRateLimiter
    assert type(make_rate_limiter(sqlite, open_key_store(sqlite))) is RateLimiter
    # a keys file named explicitly wins over the shared database
    named = ServeSettings(work_dir=tmp_path, database_url=pg_url, keys_db=tmp_path / "k.db")
    assert type(open_key_store(named)) is KeyStore
    store.close()


def test_sql_key_store_matches_sqlite_behaviour(pg_url: str) -> None:
    a, b = SqlKeyStore(pg_url), SqlKeyStore(pg_url)  # two processes' worth of stores
    try:
        key, plain = a.create("cam-1", "predict", 5.0)
        assert plain.startswith(f"mko_{key.id}_")
        assert b.verify(plain) == key and key.rate_per_s == 5.0 and key.active
        assert b.verify(plain[:-1] + ("x" if plain[-1] != "x" else "y")) is None
        assert b.verify("garbage") is None
        revoked = b.revoke(key.id)
        assert revoked.revoked_at is not None
        assert a.verify(plain) is None  # seen by the other store at once (no cache)
        assert a.revoke(key.id).revoked_at == revoked.revoked_at  # revoking twice keeps the first time
        assert [k.id for k in a.list()] == [key.id] and a.list(include_revoked=False) == []
        with pytest.raises(ValueError, match="no key with id"):
            a.revoke("00000000")
        with pytest.raises(ValueError, match="unknown role"):
            a.create("x", "root")
    finally:
        a.close()
        b.close()


def test_unreachable_shared_store_pings_as_unavailable() -> None:
    port = _free_port()  # nothing listens there
    store = SqlKeyStore(f"postgresql+psycopg://maskops:secret@127.0.0.1:{port}/maskops")
    with pytest.raises(KeyStoreUnavailable, match=r"cannot be read") as info:
        store.ping()
    assert "secret" not in str(info.value)
    store.close()


@pytest.mark.parametrize(
    ("rate", "expected"), [(5.0, (1, 5)), (1.0, (1, 1)), (2.5, (1, 2)), (0.5, (2, 1)), (0.3, (4, 1))]
)
def test_window_for(rate: float, expected: tuple[int, int]) -> None:
    assert window_for(rate) == expected


def test_shared_limiter_counts_across_limiters(pg_url: str) -> None:
    store = SqlKeyStore(pg_url)
    now = [1_000_000.25]
    one = SqlRateLimiter(store.engine, 3.0, 20, clock=lambda: now[0])
    two = SqlRateLimiter(store.engine, 3.0, 20, clock=lambda: now[0])
    try:
        waits = [lim.take("key:abc") for lim in (one, two, one, two, one)]
        assert waits[:3] == [0.0, 0.0, 0.0]
        assert waits[3] == pytest.approx(0.75) and waits[4] == pytest.approx(0.75)
        assert one.take("key:other") == 0.0  # per identity
        assert two.take("key:abc", rate=10.0) == 0.0  # a key's own rate: 6th of 10
        now[0] += 1.0  # the next window
        assert one.take("key:abc") == 0.0
    finally:
        store.close()


# --- two real servers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, pg_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASKOPS_")}
    env.update(
        MASKOPS_WORK_DIR=str(tmp_path / "work"),
        MASKOPS_MODELS_DIR=str(tmp_path / "no-models"),  # no models: the test is about keys and limits
        MASKOPS_DATABASE_URL=pg_url,
        MASKOPS_AUTH="true",
        MASKOPS_WARM_UP="false",
        MASKOPS_WORKERS="1",
        MASKOPS_LOG_FORMAT="text",
        MASKOPS_DEVICE="cpu",
        **extra,
    )
    return env


def _maskops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maskops.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    fh = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "maskops.cli", "serve", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"server not up after 180 s: {log.read_text()[-2000:]}")


def _get(port: int, path: str, key: str) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.fixture
def replicas(tmp_path: Path, pg_url: str) -> Iterator[tuple[dict[str, str], int, int]]:
    """Two servers, rate limit 4/s per key, on one PostgreSQL; yields (env, port a, port b)."""
    env = _env(tmp_path, pg_url, MASKOPS_RATE_LIMIT_PER_S="4")
    procs = []
    try:
        a, port_a = _start(env, tmp_path / "a.log")
        procs.append(a)
        b, port_b = _start(env, tmp_path / "b.log")
        procs.append(b)
        yield env, port_a, port_b
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _create_key(env: dict[str, str], name: str, *args: str) -> tuple[str, str]:
    done = _maskops(env, "keys", "create", name, *args)
    assert done.returncode == 0, done.stderr
    plain = done.stdout.strip().splitlines()[-1]
    return plain, plain.split("_")[1]


@pytest.mark.slow
def test_two_replicas_share_keys_and_rate_limit(replicas: tuple[dict[str, str], int, int]) -> None:
    env, port_a, port_b = replicas
    # a key created by the CLI on the shared database works on both replicas
    plain, key_id = _create_key(env, "cam-1", "--rate", "1000")
    admin, _ = _create_key(env, "ops", "--role", "admin", "--rate", "1000")
    assert _get(port_a, "/v1/models", plain) == 200
    assert _get(port_b, "/v1/models", plain) == 200
    listed = json.loads(_maskops(env, "keys", "list", "--json").stdout)
    assert {k["name"] for k in listed} == {"cam-1", "ops"}

    # revoked with the CLI: refused by both replicas from the next request on
    assert _maskops(env, "keys", "revoke", key_id).returncode == 0
    assert _get(port_a, "/v1/models", plain) == 401
    assert _get(port_b, "/v1/models", plain) == 401
    assert _get(port_b, "/v1/models", admin) == 200

    # the server-wide limit (4/s) holds across both: requests alternate between the replicas; the
    # bound counts the 1-s windows the run spanned (no assumption on how fast the machine is)
    limited, _ = _create_key(env, "burst")
    t0 = time.time()
    statuses = [_get(port, "/v1/models", limited) for _ in range(10) for port in (port_a, port_b)]
    windows = int(time.time()) - int(t0) + 1
    assert set(statuses) <= {200, 429}
    assert 1 <= statuses.count(200) <= 4 * windows, (statuses, windows)
    if windows == 1:  # all in one window: exactly the budget, and both replicas refuse the rest
        assert statuses.count(200) == 4
        assert 429 in statuses[::2] and 429 in statuses[1::2]
    else:
        assert 429 in statuses or 4 * windows >= 20
