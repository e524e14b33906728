"""/v1/detect and /v1/detect/batch: multipart and JSON inputs, options, per-image errors in batches."""

from __future__ import annotations

import base64
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from serve_helpers import assert_error, gradient, png_bytes

CLASSES = ["with_mask", "without_mask", "mask_weared_incorrect"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_detect_multipart_finds_the_faces_of_a_real_photo(client: TestClient, face_photo: bytes) -> None:
    r = client.post("/v1/detect", files={"file": ("two.jpg", face_photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_id"] == r.headers["x-request-id"]
    assert body["model"]["name"] == "facemask" and len(body["model"]["version"]) == 12
    assert body["image"] == {"filename": "two.jpg", "format": "jpeg", "width": 400, "height": 301}
    assert len(body["faces"]) == 2
    for face in body["faces"]:
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= 400 and 0 <= y1 < y2 <= 301
        assert face["label"] in [*CLASSES, "uncertain"]
        assert 0.0 < face["face_score"] <= 1.0
        assert set(face["probabilities"]) == set(CLASSES)
        assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert sum(body["counts"].values()) == 2
    assert {"decode", "detect", "classify"} <= set(body["timings_ms"])
    assert body["annotated_jpeg_base64"] is None


def test_detect_json_base64_gives_the_same_faces_as_multipart(client: TestClient, face_photo: bytes) -> None:
    multipart = client.post("/v1/detect", files={"file": ("a.jpg", face_photo, "image/jpeg")}).json()
    as_json = client.post("/v1/detect", json={"image_base64": _b64(face_photo), "filename": "a.jpg"})
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["faces"] == multipart["faces"]


def test_data_url_prefix_is_accepted(client: TestClient, plain_jpeg: bytes) -> None:
    r = client.post("/v1/detect", json={"image_base64": "data:image/jpeg;base64," + _b64(plain_jpeg)})
    assert r.status_code == 200, r.text
    assert r.json()["faces"] == []
    assert r.json()["image"]["filename"] == "image0"


def test_uncertain_off_gives_every_face_a_class(client: TestClient, face_photo: bytes) -> None:
    # the linear test model is unsure about real faces: with the rule on, faces are 'uncertain'
    on = client.post(
        "/v1/detect", files={"file": ("a.jpg", face_photo)}, params={"min_confidence": 0.99}
    ).json()
    off = client.post(
        "/v1/detect", files={"file": ("a.jpg", face_photo)}, params={"uncertain": "false"}
    ).json()
    assert [f["label"] for f in on["faces"]] == ["uncertain", "uncertain"]
    assert all(f["uncertain_reason"] for f in on["faces"])
    assert all(f["label"] in CLASSES and f["class_id"] >= 0 for f in off["faces"])
    assert on["counts"]["uncertain"] == 2 and off["counts"]["uncertain"] == 0


def test_min_confidence_zero_keeps_confident_argmax(client: TestClient, face_photo: bytes) -> None:
    r = client.post(
        "/v1/detect", files={"file": ("a.jpg", face_photo)}, params={"min_confidence": 0.0}
    ).json()
    for face in r["faces"]:
        reason = face.get("uncertain_reason") or ""
        assert "low confidence" not in reason


@pytest.mark.parametrize("path", ["/v1/detect", "/v1/detect/batch"])
def test_threshold_is_the_deprecated_name_of_min_confidence(
    client: TestClient, face_photo: bytes, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    def labels(params: dict[str, float]) -> list[str]:
        body = client.post(path, files={"file": ("a.jpg", face_photo)}, params=params).json()
        faces = body["faces"] if "faces" in body else body["results"][0]["result"]["faces"]
        return [f["label"] for f in faces]

    assert labels({"threshold": 0.99}) == labels({"min_confidence": 0.99}) == ["uncertain", "uncertain"]
    assert "'threshold' is deprecated" in caplog.text
    # the new name wins when both are given
    assert labels({"threshold": 0.99, "min_confidence": 0.0}) == labels({"min_confidence": 0.0})
    params = {p["name"]: p for p in client.get("/openapi.json").json()["paths"][path]["post"]["parameters"]}
    assert params["threshold"]["deprecated"] is True
    assert "min_confidence" in params["threshold"]["description"]
    assert not params["min_confidence"].get("deprecated")


def test_annotated_returns_a_decodable_jpeg_of_the_same_size(client: TestClient, face_photo: bytes) -> None:
    r = client.post("/v1/detect", files={"file": ("a.jpg", face_photo)}, params={"annotated": "true"})
    body = r.json()
    jpeg = base64.b64decode(body["annotated_jpeg_base64"])
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (301, 400, 3)
    assert "annotate" in body["timings_ms"]


def test_png_with_alpha_is_accepted(client: TestClient) -> None:
    rgba = np.dstack([gradient(), np.full((48, 64), 128, np.uint8)])
    r = client.post("/v1/detect", files={"file": ("a.png", png_bytes(rgba), "image/png")})
    assert r.status_code == 200, r.text
    assert r.json()["image"]["format"] == "png"


def test_batch_keeps_order_and_isolates_bad_images(
    client: TestClient, face_photo: bytes, plain_jpeg: bytes
) -> None:
    files = [
        ("files", ("faces.jpg", face_photo, "image/jpeg")),
        ("files", ("notes.txt", b"not an image at all", "text/plain")),
        ("files", ("cut.jpg", face_photo[:3000], "image/jpeg")),
        ("files", ("plain.jpg", plain_jpeg, "image/jpeg")),
    ]
    r = client.post("/v1/detect/batch", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["count"], body["succeeded"], body["failed"]) == (4, 2, 2)
    res = body["results"]
    assert [x["index"] for x in res] == [0, 1, 2, 3]
    assert [x["filename"] for x in res] == ["faces.jpg", "notes.txt", "cut.jpg", "plain.jpg"]
    assert len(res[0]["result"]["faces"]) == 2
    assert res[1]["error"]["code"] == "unsupported_media_type"
    assert res[2]["error"]["code"] == "invalid_image" and "truncated" in res[2]["error"]["message"]
    assert res[3]["ok"] and res[3]["result"]["faces"] == []


def test_batch_json(client: TestClient, plain_jpeg: bytes) -> None:
    r = client.post(
        "/v1/detect/batch",
        json={"images": [{"image_base64": _b64(plain_jpeg), "filename": "x.jpg"}, {"image_base64": "!!"}]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["succeeded"], body["failed"]) == (1, 1)
    assert body["results"][0]["filename"] == "x.jpg"
    assert body["results"][1]["error"]["code"] == "invalid_base64"
    ok = client.post("/v1/detect/batch", json={"images": [{"image_base64": _b64(plain_jpeg)}] * 3})
    assert ok.status_code == 200 and ok.json()["succeeded"] == 3


def test_batch_over_the_limit_is_refused(make_client: Callable[..., TestClient], plain_jpeg: bytes) -> None:
    client = make_client(max_batch=2)
    files = [("files", (f"{i}.jpg", plain_jpeg, "image/jpeg")) for i in range(3)]
    err = assert_error(client.post("/v1/detect/batch", files=files), 413, "batch_too_large")
    assert err["details"] == {"images": 3, "max_batch": 2}
    assert client.post("/v1/detect/batch", files=files[:2]).status_code == 200


def test_empty_batch_is_a_clear_error(client: TestClient) -> None:
    assert_error(client.post("/v1/detect/batch", json={"images": []}), 422, "no_image")


@pytest.mark.parametrize("size", [(1, 1), (15, 300), (300, 15)])
def test_tiny_images_have_no_faces(client: TestClient, size: tuple[int, int]) -> None:
    img = np.zeros((size[1], size[0]), np.uint8)
    r = client.post("/v1/detect", files={"file": ("tiny.png", png_bytes(img))})
    assert r.status_code == 200, r.text
    assert r.json()["faces"] == [] and r.json()["image"]["width"] == size[0]
