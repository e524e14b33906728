"""The web app's pages are served with their assets from the package: no CDN, no external URL."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

PAGES = {"/": "upload.js", "/live": "live.js", "/models": "models.js"}


@pytest.mark.parametrize(("path", "script"), PAGES.items())
def test_pages_and_their_assets_are_local(client: TestClient, path: str, script: str) -> None:
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert f"/static/{script}" in refs
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
        if ref.startswith("/static/"):
            asset = client.get(ref)
            assert asset.status_code == 200, ref
            assert "http://" not in asset.text and "https://" not in asset.text, ref


def test_pages_are_not_in_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/live", "/models"} & set(paths)


# external references in HTML attributes and CSS; vendor bundles also hold URLs as plain strings
# (licence notes, XML namespaces) that are never requested, so they are checked in the browser test
_EXTERNAL = re.compile(
    r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import\s+["']?(?:https?:)?//"""
)


def test_api_docs_load_their_assets_from_the_app(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "http://" not in r.text and "https://" not in r.text
    refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert refs
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        if ref.endswith((".css", ".html")):
            assert not _EXTERNAL.search(asset.text), ref


def test_redoc_is_off(client: TestClient) -> None:
    assert client.get("/redoc").status_code == 404  # ReDoc loads its logo from its vendor's CDN


def test_swagger_ui_sends_the_spec_to_no_validator(client: TestClient) -> None:
    assert '"validatorUrl": null' in client.get("/docs").text


def test_favicon_is_served(client: TestClient) -> None:
    r = client.get("/favicon.ico")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/x-icon"
    assert r.content[:4] == b"\x00\x00\x01\x00"  # ICO header


def test_oauth2_redirect_page_is_local(client: TestClient) -> None:
    r = client.get("/docs/oauth2-redirect")
    assert r.status_code == 200
    assert not _EXTERNAL.search(r.text)
