"""``maskops serve`` wiring (uvicorn is replaced; no socket is opened) and CORS settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from maskops.cli import app as cli_app


def test_serve_passes_options_to_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        seen["app"] = app
        seen.update(kwargs)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        r = CliRunner().invoke(
            cli_app, ["serve", "--port", "8123", "--workers", "3", "--auth", "--log-format", "text"]
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert r.exit_code == 0, r.output
    settings = seen["app"].state.settings
    assert (settings.port, settings.workers, settings.auth, settings.log_format) == (8123, 3, True, "text")
    assert seen["port"] == 8123 and seen["host"] == "127.0.0.1"
    assert seen["access_log"] is False and seen["log_config"] is None


def test_serve_rejects_bad_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    r = CliRunner().invoke(cli_app, ["serve", "--workers", "0"])
    assert r.exit_code == 2
    assert "workers" in r.output


def test_cors_is_off_by_default_and_configurable(make_client: Callable[..., TestClient]) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    closed = make_client()
    assert "access-control-allow-origin" not in closed.options("/v1/detect", headers=preflight).headers
    open_ = make_client(cors_origins=["https://app.example"])
    r = open_.options("/v1/detect", headers=preflight)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-request-id" in r.headers
    r = open_.get("/health", headers={"Origin": "https://app.example"})
    assert "X-Request-ID" in r.headers["access-control-expose-headers"]
