"""API keys provisioned from ``MASKOPS_API_KEYS`` and ``MASKOPS_API_KEYS_FILE``: accepted with their
role, hashed at startup and never logged, malformed entries refused at startup with the variable or
file and the entry or line named (never the key), and keys taken only from the request headers."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serve_helpers import assert_error
from typer.testing import CliRunner

from maskops.cli import app as cli_app
from maskops.serve.keys import (
    ENV_VAR,
    FILE_VAR,
    KeyProvisioningError,
    KeyStore,
    ProvisionedKeys,
    load_provisioned_keys,
    new_key,
    parse_key_entry,
)
from maskops.serve.settings import ServeSettings

OPS_KEY = "ops-" + "A" * 40  # any base64 / URL-safe token of 32+ characters
APP_KEY = new_key()  # or one of the store's shape


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets" / "api-keys"
    path.parent.mkdir()
    path.write_text(
        f"# name:role:key[:rate], one a line\n\nops:admin:{OPS_KEY}\n  app:predict:{APP_KEY}:5  \n",
        encoding="utf-8",
    )
    return path


def test_the_variable_and_the_file_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, key_file: Path
) -> None:
    monkeypatch.setenv(ENV_VAR, f"ci:predict:{'c' * 32}, ,web:predict:{'w' * 32}\nbot:admin:{'b' * 32}")
    monkeypatch.setenv(FILE_VAR, str(key_file))
    settings = ServeSettings()
    keys = load_provisioned_keys(settings)
    assert keys is not None
    assert [(k.name, k.role, k.rate_per_s) for k in keys.keys] == [
        ("ci", "predict", None),
        ("web", "predict", None),
        ("bot", "admin", None),
        ("ops", "admin", None),
        ("app", "predict", 5.0),
    ]
    assert keys.verify("w" * 32) is not None and keys.verify("w" * 32).name == "web"  # type: ignore[union-attr]
    assert keys.verify(APP_KEY).id == "env:app"  # type: ignore[union-attr]
    assert keys.verify("w" * 31) is None and keys.verify("") is None


def test_blank_settings_mean_no_provisioned_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "")  # compose's ${MASKOPS_API_KEYS:-}
    monkeypatch.setenv(FILE_VAR, " ")
    settings = ServeSettings()
    assert settings.api_keys is None and settings.api_keys_file is None
    assert load_provisioned_keys(settings) is None


def test_provisioned_keys_open_their_routes(
    make_client: Callable[..., TestClient], key_file: Path, tmp_path: Path
) -> None:
    client = make_client(auth=True, api_keys_file=key_file, keys_db=tmp_path / "keys.db")
    assert client.get("/v1/models", headers={"X-API-Key": APP_KEY}).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {OPS_KEY}"}).status_code == 200
    assert_error(client.post("/v1/models/reload", headers={"X-API-Key": APP_KEY}), 403, "forbidden")
    assert client.post("/v1/models/reload", headers={"X-API-Key": OPS_KEY}).status_code == 200
    assert_error(client.get("/v1/models", headers={"X-API-Key": OPS_KEY + "x"}), 401, "unauthorized")
    # the store's own keys keep working beside them
    store: KeyStore = client.app.state.keys  # type: ignore[attr-defined]
    _, stored = store.create("cli", "predict")
    assert client.get("/v1/models", headers={"X-API-Key": stored}).status_code == 200


def test_a_provisioned_key_is_rate_limited_at_its_own_rate(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(
        auth=True,
        api_keys=f"slow:predict:{'s' * 32}:0.001",
        keys_db=tmp_path / "keys.db",
        rate_limit_per_s=1000.0,
        rate_limit_burst=2,
    )
    codes = [client.get("/v1/models", headers={"X-API-Key": "s" * 32}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_provisioned_keys_work_while_the_key_store_is_unreadable(
    make_client: Callable[..., TestClient], key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(auth=True, api_keys_file=key_file, keys_db=tmp_path / "keys.db")

    def down(self: KeyStore, presented: str) -> None:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(KeyStore, "_verify_stored", down)
    assert client.get("/v1/models", headers={"X-API-Key": APP_KEY}).status_code == 200
    r = client.get("/v1/models", headers={"X-API-Key": new_key()})
    assert_error(r, 503, "key_store_unavailable")


def test_keys_are_hashed_and_never_logged(
    make_client: Callable[..., TestClient],
    key_file: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_VAR, f"env-ci:predict:{'e' * 40}")
    with caplog.at_level(logging.DEBUG):
        client = make_client(auth=True, api_keys_file=key_file, keys_db=tmp_path / "keys.db")
        client.get("/v1/models", headers={"X-API-Key": APP_KEY})
        client.get("/v1/models", headers={"X-API-Key": OPS_KEY[:-1] + "Z"})  # a failed one is logged
    settings: ServeSettings = client.app.state.settings  # type: ignore[attr-defined]
    provisioned = client.app.state.keys.provisioned  # type: ignore[attr-defined]
    assert isinstance(provisioned, ProvisionedKeys)
    held = repr(vars(provisioned)) + repr(settings) + settings.model_dump_json() + str(settings)
    logs = caplog.text
    assert "API keys from MASKOPS_API_KEYS and MASKOPS_API_KEYS_FILE" in logs
    assert "env-ci (predict), ops (admin), app (predict)" in logs
    assert "failed authentication" in logs
    for secret in (OPS_KEY, APP_KEY, "e" * 40, OPS_KEY[:-1] + "Z"):
        assert secret not in logs
        assert secret not in held


def test_provisioned_keys_with_auth_off_are_warned_about(
    key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        load_provisioned_keys(ServeSettings(api_keys_file=key_file, auth=False))
    assert "2 API key(s) provisioned, but MASKOPS_AUTH is off" in caplog.text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ops:admin", "MASKOPS_API_KEYS entry 1: expected name:role:key or name:role:key:rate, got 2"),
        (f"a:predict:{'a' * 32},ops:root:{'r' * 32}", "MASKOPS_API_KEYS entry 2 (ops): unknown role 'root'"),
        ("ops:admin:short-key", "MASKOPS_API_KEYS entry 1 (ops): the key has 9 characters, at least 32"),
        (f"ops:admin:{'k' * 31}!", "MASKOPS_API_KEYS entry 1 (ops): the key may hold only"),
        (f"op s:admin:{'k' * 32}", "MASKOPS_API_KEYS entry 1: the name must be"),
        (f"ops:admin:{'k' * 32}:fast", "MASKOPS_API_KEYS entry 1 (ops): the rate must be a number"),
        (f"ops:admin:{'k' * 32}:-1", "MASKOPS_API_KEYS entry 1 (ops): the rate must be > 0"),
        (f"ops:admin:{'k' * 32}:1:2", "MASKOPS_API_KEYS entry 1: expected name:role:key"),
        (
            f"ops:admin:{'k' * 32},ops:predict:{'p' * 32}",
            "MASKOPS_API_KEYS entry 2: the name 'ops' is already",
        ),
        (f"a:admin:{'k' * 32},b:predict:{'k' * 32}", "entry 2 (b): the same key is already given to 'a'"),
    ],
)
def test_malformed_entries_name_the_variable_and_the_entry_never_the_key(value: str, message: str) -> None:
    with pytest.raises(KeyProvisioningError) as info:
        load_provisioned_keys(ServeSettings(api_keys=value))
    assert message in str(info.value)
    for field in value.replace(",", ":").split(":"):
        if len(field) >= 9 and field not in ("predict",):
            assert field not in str(info.value)  # no key (nor a part of a key) in the message


def test_a_malformed_file_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "api-keys"
    path.write_text(f"# keys\nops:admin:{'k' * 32}\n\nweb:predict:{'w' * 20}\n", encoding="utf-8")
    with pytest.raises(KeyProvisioningError) as info:
        load_provisioned_keys(ServeSettings(api_keys_file=path))
    assert str(info.value).startswith(f"MASKOPS_API_KEYS_FILE {path} line 4 (web): the key has 20 characters")
    assert "w" * 20 not in str(info.value)


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(KeyProvisioningError, match=rf"MASKOPS_API_KEYS_FILE {path}: cannot be read"):
        load_provisioned_keys(ServeSettings(api_keys_file=path))


def test_a_malformed_entry_stops_the_app_before_it_starts(
    make_settings: Callable[..., ServeSettings],
) -> None:
    from maskops.serve.app import create_app

    with pytest.raises(KeyProvisioningError, match="MASKOPS_API_KEYS entry 1"):
        create_app(make_settings(auth=True, api_keys="ops:admin:tooshort"))


def test_parse_key_entry_strips_spaces() -> None:
    key, digest = parse_key_entry(f"  ops : admin : {'k' * 32} : 2.5 ", "x")
    assert (key.id, key.name, key.role, key.rate_per_s, key.active) == ("env:ops", "ops", "admin", 2.5, True)
    assert len(digest) == 64 and "k" * 32 not in digest


@pytest.mark.parametrize("where", ["query", "cookie", "form"])
def test_keys_are_taken_only_from_the_request_headers(
    make_client: Callable[..., TestClient], key_file: Path, tmp_path: Path, where: str
) -> None:
    """``?api_key=``, a cookie or a form field holding a valid key is not a key (HTTP routes)."""
    client = make_client(auth=True, api_keys_file=key_file, keys_db=tmp_path / "keys.db")
    if where == "query":
        r = client.get("/v1/models", params={"api_key": OPS_KEY, "key": OPS_KEY, "token": OPS_KEY})
    elif where == "cookie":
        client.cookies.set("api_key", OPS_KEY)
        client.cookies.set("X-API-Key", OPS_KEY)
        r = client.get("/v1/models")
        client.cookies.clear()
    else:
        r = client.post("/v1/models/reload", data={"api_key": OPS_KEY, "X-API-Key": OPS_KEY})
    assert_error(r, 401, "unauthorized")


def test_keys_entry_prints_a_valid_entry() -> None:
    r = CliRunner().invoke(cli_app, ["keys", "entry", "ops", "--role", "admin", "--rate", "2"])
    assert r.exit_code == 0, r.output
    line = r.stdout.strip()
    key, _ = parse_key_entry(line, "printed")
    assert (key.name, key.role, key.rate_per_s) == ("ops", "admin", 2.0)
    secret = line.split(":")[2]
    assert secret.startswith("mko_") and len(secret) >= 32
    other = CliRunner().invoke(cli_app, ["keys", "entry", "ops"]).stdout.strip().split(":")[2]
    assert other != secret  # a new key each time
    bad = CliRunner().invoke(cli_app, ["keys", "entry", "ops", "--role", "root"])
    assert bad.exit_code == 2 and "unknown role 'root'" in bad.output


def test_serve_stops_with_a_clear_error_on_a_malformed_entry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    started: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append(a))
    path = tmp_path / "api-keys"
    path.write_text(f"ops:admin:{'k' * 32}\nweb:predictor:{'w' * 40}\n", encoding="utf-8")
    monkeypatch.setenv(FILE_VAR, str(path))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        r = CliRunner().invoke(cli_app, ["serve", "--auth", "--log-format", "text"])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert r.exit_code == 2 and not started
    assert f"error: MASKOPS_API_KEYS_FILE {path} line 2 (web): unknown role 'predictor'" in r.output
    assert "w" * 40 not in r.output and "k" * 32 not in r.output and "Traceback" not in r.output
