"""Compatibility routes of the older face-mask APIs answer like the /v1 routes they alias."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from serve_helpers import assert_error


@pytest.mark.parametrize("path", ["/predict/single", "/detect"])
@pytest.mark.parametrize("field", ["file", "image"])
def test_single_aliases(client: TestClient, face_photo: bytes, path: str, field: str) -> None:
    v1 = client.post("/v1/detect", files={"file": ("a.jpg", face_photo)}).json()
    r = client.post(path, files={field: ("a.jpg", face_photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["faces"] == v1["faces"]
    assert body["model"] == v1["model"]


@pytest.mark.parametrize("path", ["/predict/batch", "/detect-batch"])
def test_batch_aliases(client: TestClient, face_photo: bytes, plain_jpeg: bytes, path: str) -> None:
    files = [
        ("files", ("a.jpg", face_photo)),
        ("files", ("b.jpg", plain_jpeg)),
        ("files", ("c.txt", b"text")),
    ]
    r = client.post(path, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["count"], body["succeeded"], body["failed"]) == (3, 2, 1)
    assert len(body["results"][0]["result"]["faces"]) == 2


@pytest.mark.parametrize("path", ["/predict/single", "/detect", "/predict/batch", "/detect-batch"])
def test_aliases_share_the_error_envelope(client: TestClient, path: str) -> None:
    assert_error(
        client.post(path, content=b"x", headers={"content-type": "text/plain"}), 415, "unsupported_media_type"
    )


def test_aliases_are_documented_as_deprecated(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/predict/single", "/detect", "/predict/batch", "/detect-batch", "/model-info"):
        method = "get" if path == "/model-info" else "post"
        assert paths[path][method]["deprecated"] is True
    assert "deprecated" not in paths["/v1/detect"]["post"]
