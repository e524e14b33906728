"""The error envelope for every error path, limits, and never a 500 for a client mistake."""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serve_helpers import assert_error, gradient, jpeg_bytes, png_bytes

from maskops.serve.service import MaskService


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` but holds a tiny IDAT: a decompression bomb."""
    png = bytearray(png_bytes(gradient(8, 8)))
    ihdr = png[12:29]  # chunk type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    png[12:29] = ihdr
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(png)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no/such/route", 404, "not_found"),
        ("GET", "/static/missing.css", 404, "not_found"),
        ("GET", "/v1/detect", 405, "method_not_allowed"),
        ("DELETE", "/v1/models", 405, "method_not_allowed"),
    ],
)
def test_routing_errors_use_the_envelope(
    client: TestClient, method: str, path: str, status: int, code: str
) -> None:
    assert_error(client.request(method, path), status, code)


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "bad_request"),
        ({"json": {"image": "x"}}, 422, "validation_error"),
        ({"json": ["a list"]}, 422, "validation_error"),
        ({"json": {"image_base64": "%%%"}}, 422, "invalid_base64"),
        ({"json": {"image_base64": ""}}, 422, "invalid_image"),
        ({"content": b"", "headers": {"content-type": "application/json"}}, 422, "no_image"),
        ({"data": {"note": "no file here"}, "files": {"x": ("", b"", "")}}, 422, "no_image"),
        (
            {"files": {"file": ("a.txt", b"plain text, not an image", "image/jpeg")}},
            415,
            "unsupported_media_type",
        ),
        (
            {"files": {"file": ("a.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 64, "image/jpeg")}},
            422,
            "invalid_image",
        ),
        ({"files": {"file": ("a.jpg", b"", "image/jpeg")}}, 422, "invalid_image"),
    ],
)
def test_bad_bodies_are_client_errors(
    client: TestClient, kwargs: dict[str, object], status: int, code: str
) -> None:
    assert_error(client.post("/v1/detect", **kwargs), status, code)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"min_confidence": "2"}, "min_confidence"),
        ({"min_confidence": "abc"}, "min_confidence"),
        ({"threshold": "2"}, "threshold"),
        ({"uncertain": "maybe"}, "uncertain"),
    ],
)
def test_bad_query_options_are_422_with_details(
    client: TestClient, plain_jpeg: bytes, params: dict[str, str], field: str
) -> None:
    r = client.post("/v1/detect", params=params, files={"file": ("a.jpg", plain_jpeg)})
    err = assert_error(r, 422, "validation_error")
    assert err["details"][0]["loc"] == ["query", field]
    assert "input" not in err["details"][0]


def test_corrupt_image_reason_is_given(client: TestClient, plain_jpeg: bytes) -> None:
    cut = plain_jpeg[: len(plain_jpeg) // 2]
    err = assert_error(client.post("/v1/detect", files={"file": ("half.jpg", cut)}), 422, "invalid_image")
    assert "half.jpg" in err["message"] and "truncated" in err["message"]


def test_body_over_the_request_limit_is_refused(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_request_bytes=4096)
    big = jpeg_bytes(gradient(400, 300)) + b"\0" * 5000
    err = assert_error(client.post("/v1/detect", files={"file": ("big.jpg", big)}), 413, "payload_too_large")
    assert err["details"] == {"max_request_bytes": 4096}


def test_image_over_the_byte_limit_is_refused(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_image_bytes=2048)
    data = png_bytes(gradient(300, 200))
    assert len(data) > 2048
    assert_error(client.post("/v1/detect", files={"file": ("a.png", data)}), 413, "image_too_large")


def test_pixel_limit_is_checked_from_the_header(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_image_pixels=100 * 100)
    err = assert_error(
        client.post("/v1/detect", files={"file": ("a.jpg", jpeg_bytes(gradient(200, 150)))}),
        413,
        "image_too_large",
    )
    assert err["details"] == {"width": 200, "height": 150, "max_pixels": 10000}


@pytest.mark.parametrize("size", [(20_000, 20_000), (100_000, 100_000)])
def test_decompression_bomb_is_refused_without_decoding(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    import maskops.inference.images as images

    def must_not_decode(*_: object, **__: object) -> None:
        raise AssertionError("the decoder was called")

    monkeypatch.setattr(images, "decode_raw", must_not_decode)
    r = client.post("/v1/detect", files={"file": ("bomb.png", _png_declaring(*size), "image/png")})
    assert_error(r, 413, "image_too_large")


def test_missing_model_starts_but_is_not_ready(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    empty = tmp_path / "no-models"
    empty.mkdir()
    client = make_client(models_dir=empty)
    assert client.get("/health").status_code == 200
    err = assert_error(client.get("/ready"), 503, "not_ready")
    assert err["details"]["checks"]["face_model"] == "missing"
    err = assert_error(client.post("/v1/detect", files={"file": ("a.jpg", b"x")}), 503, "model_unavailable")
    assert "facemask" in err["message"]
    assert str(tmp_path) not in err["message"]
    assert_error(client.get("/model-info"), 503, "model_unavailable")


def test_broken_model_file_is_reported_without_paths(
    make_client: Callable[..., TestClient], models_dir: Path
) -> None:
    (models_dir / "facemask.onnx").write_bytes(b"not onnx")
    client = make_client()
    err = assert_error(client.get("/ready"), 503, "not_ready")
    assert str(models_dir) not in err["message"]
    unavailable = client.get("/v1/models").json()["unavailable"]
    assert "facemask" in unavailable and str(models_dir) not in unavailable["facemask"]


def test_missing_detector_weights_make_the_app_not_ready(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(yunet_path=tmp_path / "nowhere.onnx")
    err = assert_error(client.get("/ready"), 503, "not_ready")
    assert err["details"]["checks"]["detector"] == "missing"
    assert str(tmp_path) not in err["message"]


def test_unexpected_error_is_500_without_internals(
    client: TestClient, plain_jpeg: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("secret detail at /srv/models/facemask.onnx")

    monkeypatch.setattr(MaskService, "detect_sync", boom)
    r = client.post("/v1/detect", files={"file": ("a.jpg", plain_jpeg)})
    err = assert_error(r, 500, "internal_error")
    assert "secret" not in r.text and "/srv" not in r.text and "Traceback" not in r.text
    assert err["details"] is None


def test_processing_timeout_is_504(
    make_client: Callable[..., TestClient], plain_jpeg: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    original = MaskService.detect_sync

    def stuck(self: MaskService, *args: object) -> object:
        release.wait(10)
        return original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(MaskService, "detect_sync", stuck)
    client = make_client(timeout_s=0.05)
    try:
        assert_error(client.post("/v1/detect", files={"file": ("a.jpg", plain_jpeg)}), 504, "timeout")
    finally:
        release.set()


def test_request_id_is_echoed_when_safe_and_replaced_when_not(client: TestClient) -> None:
    r = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces" and len(r.headers["x-request-id"]) == 32
    err = assert_error(client.get("/nowhere", headers={"X-Request-ID": "trace-7"}), 404, "not_found")
    assert err["request_id"] == "trace-7"
