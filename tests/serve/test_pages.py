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
