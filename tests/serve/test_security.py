"""API keys (store, CLI, auth on the routes), roles, per-key token-bucket rate limits."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serve_helpers import assert_error
from typer.testing import CliRunner

from maskops.cli import app as cli_app
from maskops.serve import keys as keys_mod
from maskops.serve.keys import KeyStore, KeyStoreError
from maskops.serve.ratelimit import RateLimiter, retry_after_header


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    s = KeyStore(tmp_path / "keys.db")
    yield s  # type: ignore[misc]
    s.close()


def test_created_key_verifies_and_only_its_hash_is_stored(store: KeyStore) -> None:
    key, plain = store.create("ci", "predict")
    assert plain.startswith(f"mko_{key.id}_")
    assert store.verify(plain) == key
    secret = plain.split("_", 2)[2]
    raw = sqlite3.connect(store.path).execute("SELECT * FROM api_keys").fetchall()
    assert secret not in repr(raw) and plain not in repr(raw)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda p: p[:-1] + ("A" if p[-1] != "A" else "B"),  # wrong secret
        lambda p: "mko_00000000_" + p.split("_", 2)[2],  # unknown id, right secret
        lambda p: p.split("_", 2)[2],  # secret alone
        lambda p: "",
        lambda p: "Bearer " + p,
    ],
)
def test_wrong_keys_do_not_verify(store: KeyStore, mangle: Callable[[str], str]) -> None:
    _, plain = store.create("ci")
    assert store.verify(mangle(plain)) is None


def test_secret_comparison_is_constant_time_even_for_unknown_ids(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    real = keys_mod.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys_mod.hmac, "compare_digest", spy)
    _, plain = store.create("ci")
    store.verify(plain)
    store.verify("mko_ffffffff_whatever")
    store.verify("garbage")
    assert len(calls) == 3


def test_revoked_key_stops_verifying_and_stays_listed(store: KeyStore) -> None:
    key, plain = store.create("old", "admin")
    revoked = store.revoke(key.id)
    assert revoked.revoked_at is not None and not revoked.active
    assert store.verify(plain) is None
    assert [k.id for k in store.list()] == [key.id]
    assert store.list(include_revoked=False) == []
    assert store.revoke(key.id).revoked_at == revoked.revoked_at


@pytest.mark.parametrize(
    ("args", "message"),
    [(("x", "root"), "unknown role"), (("  ", "predict"), "needs a name"), (("x", "predict", -1.0), "rate")],
)
def test_bad_key_requests_are_refused(store: KeyStore, args: tuple[object, ...], message: str) -> None:
    with pytest.raises(KeyStoreError, match=message):
        store.create(*args)  # type: ignore[arg-type]
    with pytest.raises(KeyStoreError, match="no key"):
        store.revoke("deadbeef")


def test_roles() -> None:
    admin = keys_mod.ApiKey("a", "a", "admin", None, "t", None)
    predict = keys_mod.ApiKey("p", "p", "predict", None, "t", None)
    assert admin.allows("admin") and admin.allows("predict")
    assert predict.allows("predict") and not predict.allows("admin")


def test_keys_cli_create_list_revoke(tmp_path: Path) -> None:
    db = tmp_path / "cli-keys.db"
    runner = CliRunner()
    r = runner.invoke(cli_app, ["keys", "create", "bench", "--role", "admin", "--rate", "5", "--db", str(db)])
    assert r.exit_code == 0, r.output
    plain = r.stdout.strip().splitlines()[0]
    key = KeyStore(db).verify(plain)
    assert key is not None and key.role == "admin" and key.rate_per_s == 5.0
    r = runner.invoke(cli_app, ["keys", "list", "--json", "--db", str(db)])
    assert r.exit_code == 0 and plain not in r.stdout
    assert '"name": "bench"' in r.stdout
    r = runner.invoke(cli_app, ["keys", "revoke", key.id, "--db", str(db)])
    assert r.exit_code == 0 and "revoked" in r.stdout
    assert KeyStore(db).verify(plain) is None
    r = runner.invoke(cli_app, ["keys", "create", "x", "--role", "root", "--db", str(db)])
    assert r.exit_code == 2 and "unknown role" in r.output


# --- the routes with auth on


@pytest.fixture
def auth_client(make_client: Callable[..., TestClient], tmp_path: Path) -> tuple[TestClient, KeyStore]:
    db = tmp_path / "auth-keys.db"
    client = make_client(auth=True, keys_db=db)
    return client, client.app.state.keys  # type: ignore[attr-defined]


def test_auth_requires_a_valid_key(auth_client: tuple[TestClient, KeyStore], plain_jpeg: bytes) -> None:
    client, store = auth_client
    files = {"file": ("a.jpg", plain_jpeg)}
    r = client.post("/v1/detect", files=files)
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    assert_error(
        client.post("/v1/detect", files=files, headers={"X-API-Key": "mko_00000000_nope"}),
        401,
        "unauthorized",
    )
    _, plain = store.create("app")
    assert client.post("/v1/detect", files=files, headers={"X-API-Key": plain}).status_code == 200
    assert (
        client.post("/v1/detect", files=files, headers={"Authorization": f"Bearer {plain}"}).status_code
        == 200
    )
    assert client.get("/v1/models", headers={"X-API-Key": plain}).status_code == 200


def test_probes_and_metrics_stay_open(auth_client: tuple[TestClient, KeyStore]) -> None:
    client, _ = auth_client
    assert client.get("/health").status_code == 200
    assert client.get("/ready").json()["checks"]["key_store"] == "ok"
    assert client.get("/metrics").status_code == 200
    assert client.get("/").status_code == 200


def test_reload_needs_an_admin_key(auth_client: tuple[TestClient, KeyStore]) -> None:
    client, store = auth_client
    _, predict = store.create("app", "predict")
    _, admin = store.create("ops", "admin")
    assert_error(client.post("/v1/models/reload"), 401, "unauthorized")
    assert_error(client.post("/v1/models/reload", headers={"X-API-Key": predict}), 403, "forbidden")
    r = client.post("/v1/models/reload", headers={"X-API-Key": admin})
    assert r.status_code == 200, r.text


def test_revoked_key_is_refused_on_the_next_request(auth_client: tuple[TestClient, KeyStore]) -> None:
    client, store = auth_client
    key, plain = store.create("app")
    assert client.get("/v1/stats", headers={"X-API-Key": plain}).status_code == 200
    store.revoke(key.id)
    assert_error(client.get("/v1/stats", headers={"X-API-Key": plain}), 401, "unauthorized")


def test_rate_limit_per_key_gives_429_with_retry_after(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(auth=True, keys_db=tmp_path / "rl.db", rate_limit_per_s=0.01, rate_limit_burst=2)
    store: KeyStore = client.app.state.keys  # type: ignore[attr-defined]
    _, a = store.create("a")
    _, b = store.create("b")
    _, fast = store.create("fast", rate_per_s=1000.0)
    for _ in range(2):
        assert client.get("/v1/stats", headers={"X-API-Key": a}).status_code == 200
    r = client.get("/v1/stats", headers={"X-API-Key": a})
    err = assert_error(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1 and err["details"]["retry_after_s"] == int(
        r.headers["retry-after"]
    )
    assert client.get("/v1/stats", headers={"X-API-Key": b}).status_code == 200  # its own bucket
    # a key's own rate overrides the server's; the burst still caps it
    statuses = [client.get("/v1/stats", headers={"X-API-Key": fast}).status_code for _ in range(2)]
    assert statuses == [200, 200]


def test_rate_limit_without_auth_is_per_client(make_client: Callable[..., TestClient]) -> None:
    client = make_client(rate_limit_per_s=0.01, rate_limit_burst=1)
    assert client.get("/v1/stats").status_code == 200
    assert_error(client.get("/v1/stats"), 429, "rate_limited")
    assert client.get("/health").status_code == 200  # probes are not limited


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k") == pytest.approx(0.5)  # one token needs 1/2 s
    clock.now += 0.5
    assert limiter.take("k") == 0.0
    assert limiter.take("k") == pytest.approx(0.5)
    clock.now += 10  # refill caps at the burst
    assert [limiter.take("k") for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert limiter.take("other") == 0.0
    assert limiter.take("k", rate=0) == 0.0  # rate 0 = unlimited


def test_limiter_forgets_the_least_recently_used_buckets() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock, max_buckets=2)
    limiter.take("a")
    limiter.take("b")
    limiter.take("c")  # evicts "a"
    assert limiter.take("a") == 0.0  # a fresh bucket
    assert limiter.take("c") > 0.0


@pytest.mark.parametrize(("seconds", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (30.0, "30")])
def test_retry_after_is_whole_seconds(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


def test_an_unreadable_key_store_is_a_503_not_a_500(
    auth_client: tuple[TestClient, KeyStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    from maskops.serve.keys import KeyStoreUnavailable

    client, store = auth_client
    _, plain = store.create("app")

    def down(presented: str) -> None:
        raise KeyStoreUnavailable("API key table at postgresql://maskops:***@db/maskops cannot be read")

    monkeypatch.setattr(store, "verify", down)
    r = client.get("/v1/stats", headers={"X-API-Key": plain})
    assert_error(r, 503, "key_store_unavailable")
    assert r.headers["retry-after"] == "5"
    monkeypatch.undo()
    assert client.get("/v1/stats", headers={"X-API-Key": plain}).status_code == 200
