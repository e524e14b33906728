"""Hostile uploads against /v1/detect, /v1/detect/batch and /v1/classify: never a 5xx, and every
refusal a 4xx with a reason (the error envelope, or a batch entry's error).

Generated with Hypothesis (truncated, corrupt, polyglot, random bytes, base64 edge cases) plus
hand-built bombs: small files declaring huge dimensions in every accepted format, real
decompression bombs, an EXIF bomb and an animated GIF with thousands of frames.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from serve_helpers import gradient

import maskops.inference.images as images_mod

ROUTES = ["/v1/detect", "/v1/detect/batch", "/v1/classify"]
MAX_PIXELS = 1_000_000  # a low pixel limit keeps the real bombs small and quick to build
FUZZ = settings(
    max_examples=50,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def fuzz_client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(max_image_pixels=MAX_PIXELS, max_batch=4)


def _encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def _gif(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image[:, :, ::-1]).save(out, format="GIF")
    return out.getvalue()


def valid_images() -> dict[str, bytes]:
    img = gradient(32, 24)
    return {
        "png": _encode(img, ".png"),
        "jpeg": _encode(img, ".jpg"),
        "webp": _encode(img, ".webp"),
        "bmp": _encode(img, ".bmp"),
        "tiff": _encode(img, ".tiff"),
        "gif": _gif(img),
    }


VALID = valid_images()


def post(client: TestClient, route: str, data: bytes, name: str = "x.bin") -> httpx.Response:
    if route.endswith("/batch"):
        return client.post(route, files=[("files", (name, data)), ("files", ("ok.png", VALID["png"]))])
    return client.post(route, files={"file": (name, data)})


def check_answer(response: httpx.Response) -> dict[str, Any]:
    """No 5xx; a 4xx is the error envelope with a code and a message; a batch's failed entries too."""
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code >= 400:
        assert set(body) == {"error"}, body
        err = body["error"]
        assert err["code"] and isinstance(err["message"], str) and err["message"], err
        assert err["request_id"] == response.headers["x-request-id"]
    elif "results" in body:
        for item in body["results"]:
            if not item["ok"]:
                assert item["error"]["code"] and item["error"]["message"], item
    return body  # type: ignore[no-any-return]


def rejection(response: httpx.Response) -> dict[str, Any]:
    """The error of a single upload: the envelope's, or the first batch entry's."""
    body = check_answer(response)
    if "results" in body:
        first = body["results"][0]
        assert not first["ok"], first
        return first["error"]  # type: ignore[no-any-return]
    assert response.status_code >= 400, response.text
    return body["error"]  # type: ignore[no-any-return]


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """The files handed to the pixel decoder (``decode_raw``) while the test runs."""
    calls: list[bytes] = []
    real = images_mod.decode_raw

    def spy(data: bytes, fmt: str) -> np.ndarray | None:
        calls.append(bytes(data))
        return real(data, fmt)

    monkeypatch.setattr(images_mod, "decode_raw", spy)
    yield calls


# --- generated uploads


def _mutations() -> st.SearchStrategy[bytes]:
    valid = st.sampled_from(sorted(VALID.values()))
    truncated = st.tuples(valid, st.floats(0.0, 0.99)).map(lambda t: t[0][: int(len(t[0]) * t[1])])

    def corrupt(args: tuple[bytes, list[tuple[float, int]]]) -> bytes:
        data, flips = args
        b = bytearray(data)
        for where, value in flips:
            b[int(where * (len(b) - 1))] = value
        return bytes(b)

    corrupted = st.tuples(
        valid, st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8)
    ).map(corrupt)
    tails = st.sampled_from(
        [
            b"PK\x03\x04" + b"\x00" * 26 + b"evil.sh",  # a zip after the image (polyglot)
            b"<script>alert(1)</script>",
            b"<?php system($_GET['c']); ?>",
            b"%PDF-1.4\n",
            b"\x00" * 1000,
        ]
    )
    appended = st.tuples(valid, tails).map(lambda t: t[0] + t[1])
    prefixed = st.tuples(tails, valid).map(lambda t: t[0] + t[1])
    magic = st.sampled_from(
        [
            b"\x89PNG\r\n\x1a\n",
            b"\xff\xd8\xff",
            b"GIF89a",
            b"RIFF\x00\x00\x00\x00WEBP",
            b"BM",
            b"II*\x00",
            b"MM\x00*",
        ]
    )
    magic_then_noise = st.tuples(magic, st.binary(max_size=300)).map(lambda t: t[0] + t[1])
    return st.one_of(st.binary(max_size=400), truncated, corrupted, appended, prefixed, magic_then_noise)


@FUZZ
@given(data=_mutations(), route=st.sampled_from(ROUTES), name=st.text(max_size=40))
def test_generated_uploads_never_give_a_5xx(
    fuzz_client: TestClient, data: bytes, route: str, name: str
) -> None:
    check_answer(post(fuzz_client, route, data, name or "x"))


_B64_ALPHABET = st.sampled_from(
    list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n\t.%:;,")
)


def _b64_values() -> st.SearchStrategy[Any]:
    good = base64.b64encode(VALID["png"]).decode()

    def spaced(args: tuple[str, list[int]]) -> str:
        text, cuts = args
        for c in sorted(cuts, reverse=True):
            text = text[:c] + " \n" + text[c:]
        return text

    return st.one_of(
        st.text(_B64_ALPHABET, max_size=200),
        st.text(max_size=50),  # any unicode
        st.just(good.rstrip("=")),  # padding dropped
        st.just(good.replace("+", "-").replace("/", "_")),  # the url-safe alphabet
        st.just("data:image/png;base64," + good),
        st.just("data:;base64,"),
        st.just("data:image/png;base64,data:image/png;base64," + good),
        st.tuples(st.just(good), st.lists(st.integers(0, len(good)), max_size=5)).map(spaced),
        st.sampled_from([good[:-3], good + "=", "=" + good, good[: len(good) // 2]]),
        st.none(),
        st.integers(),
        st.lists(st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    )


@FUZZ
@given(
    value=_b64_values(),
    route=st.sampled_from(ROUTES),
    extra=st.booleans(),
    filename=st.none() | st.text(max_size=300),
)
def test_generated_base64_bodies_never_give_a_5xx(
    fuzz_client: TestClient, value: Any, route: str, extra: bool, filename: str | None
) -> None:
    image: dict[str, Any] = {"image_base64": value}
    if filename is not None:
        image["filename"] = filename
    if extra:
        image["path"] = "/etc/passwd"
    body = (
        {"images": [image, {"image_base64": base64.b64encode(VALID["png"]).decode()}]}
        if route.endswith("/batch")
        else image
    )
    check_answer(fuzz_client.post(route, json=body))


@FUZZ
@given(
    raw=st.binary(max_size=200),
    content_type=st.sampled_from(
        [
            "application/json",
            "multipart/form-data; boundary=x",
            "multipart/form-data",
            "image/png",
            "text/plain",
            "",
        ]
    ),
)
def test_generated_raw_bodies_never_give_a_5xx(
    fuzz_client: TestClient, raw: bytes, content_type: str
) -> None:
    for route in ROUTES:
        check_answer(fuzz_client.post(route, content=raw, headers={"content-type": content_type}))


# --- declared huge dimensions (forged headers) and real bombs


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def huge_png(side: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def huge_jpeg(side: int) -> bytes:
    data = bytearray(VALID["jpeg"])
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            data[at + 5 : at + 9] = struct.pack(">HH", side, side)  # height, width
            return bytes(data)
    raise AssertionError("no SOF marker in the JPEG")


def huge_gif(side: int) -> bytes:
    data = bytearray(VALID["gif"])
    data[6:10] = struct.pack("<HH", side, side)  # logical screen
    at = data.find(b"\x2c", 13)  # the image descriptor
    data[at + 5 : at + 9] = struct.pack("<HH", side, side)
    return bytes(data)


def huge_webp(side: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(gradient(32, 24)).save(out, format="WEBP", lossless=True)
    data = bytearray(out.getvalue())
    at = data.find(b"VP8L")
    assert at >= 0
    bits = (side - 1) | ((side - 1) << 14)  # width-1 and height-1, 14 bits each
    data[at + 9 : at + 13] = struct.pack(
        "<I", bits | (struct.unpack("<I", data[at + 9 : at + 13])[0] & 0xF0000000)
    )
    return bytes(data)


def huge_bmp(side: int) -> bytes:
    data = bytearray(VALID["bmp"])
    data[18:26] = struct.pack("<ii", side, side)
    return bytes(data)


def huge_tiff(side: int) -> bytes:
    entries = [
        (256, 4, 1, side),  # ImageWidth
        (257, 4, 1, side),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 1),  # BlackIsZero
        (273, 4, 1, 8),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, side),  # RowsPerStrip
        (279, 4, 1, 64),  # StripByteCounts
    ]
    ifd_offset = 8 + 64
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + b"\x00" * 64 + ifd


FORGED = {
    "png": huge_png,
    "jpeg": huge_jpeg,
    "gif": huge_gif,
    "webp": huge_webp,
    "bmp": huge_bmp,
    "tiff": huge_tiff,
}


# 3000: over the service's limit only (its own check); 16384: over PIL's bomb limit too (the
# largest side a WebP header can declare)
@pytest.mark.parametrize("side", [3000, 16_384])
@pytest.mark.parametrize("fmt", sorted(FORGED))
@pytest.mark.parametrize("route", ROUTES)
def test_small_files_declaring_huge_dimensions_are_refused_undecoded(
    fuzz_client: TestClient, decode_calls: list[bytes], fmt: str, route: str, side: int
) -> None:
    data = FORGED[fmt](side)
    assert len(data) < 10_000
    err = rejection(post(fuzz_client, route, data, f"bomb.{fmt}"))
    assert err["code"] in ("image_too_large", "invalid_image"), err
    assert data not in decode_calls  # refused from the header: the pixels were never decoded


def real_bomb(fmt: str) -> bytes:
    """A real image of 2000x2000 (4x the test's pixel limit) of one colour: small once compressed."""
    image = np.zeros((2000, 2000, 3), np.uint8)
    if fmt == "gif":
        return _gif(image)
    ext = {"jpeg": ".jpg", "tiff": ".tiff"}.get(fmt, f".{fmt}")
    return _encode(image, ext)


@pytest.mark.parametrize("fmt", sorted(FORGED))
def test_real_decompression_bombs_are_refused_undecoded(
    fuzz_client: TestClient, decode_calls: list[bytes], fmt: str
) -> None:
    data = real_bomb(fmt)
    for route in ROUTES:
        err = rejection(post(fuzz_client, route, data, f"bomb.{fmt}"))
        assert err["code"] == "image_too_large", err
        assert "pixels" in err["message"] or "bytes" in err["message"], err
    assert data not in decode_calls


def exif_bomb() -> bytes:
    """A JPEG whose EXIF block declares 65535 entries and an IFD chain that points back at itself."""
    tiff = b"II*\x00" + struct.pack("<I", 8)
    entries = struct.pack("<H", 0xFFFF)
    for _ in range(1000):
        entries += struct.pack("<HHII", 0x0112, 3, 0x7FFFFFFF, 8)  # Orientation, absurd count
    entries += struct.pack("<I", 8)  # the next IFD is this one again
    app1 = b"Exif\x00\x00" + tiff + entries
    app1 = app1[:65_000]
    segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    jpeg = VALID["jpeg"]
    return jpeg[:2] + segment * 3 + jpeg[2:]


def test_an_exif_bomb_is_answered(fuzz_client: TestClient) -> None:
    data = exif_bomb()
    for route in ROUTES:
        r = post(fuzz_client, route, data, "exif.jpg")
        body = check_answer(r)
        result = body["results"][0].get("result") if "results" in body else body
        if r.status_code == 200 and result:
            size = (result["image"]["width"], result["image"]["height"])
            assert size in ((32, 24), (24, 32))  # decoded; the orientation at most rotates it


def test_an_animated_gif_with_thousands_of_frames_decodes_one(fuzz_client: TestClient) -> None:
    frames = [Image.new("L", (16, 12), i % 256) for i in range(3000)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=10, loop=0)
    data = out.getvalue()
    assert Image.open(io.BytesIO(data)).n_frames == 3000
    for route in ROUTES:
        r = post(fuzz_client, route, data, "anim.gif")
        assert r.status_code == 200, r.text
        body = check_answer(r)
        result = body["results"][0]["result"] if "results" in body else body
        assert (result["image"]["width"], result["image"]["height"]) == (16, 12)
