from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from datagen import pattern_image, write_image
from PIL import Image

from maskops.data.images import (
    ImageReadError,
    load_image,
    load_image_bytes,
    sniff_format,
    to_bgr,
    truncation_reason,
)


def _encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(
    ("ext", "fmt"), [(".jpg", "jpeg"), (".png", "png"), (".webp", "webp"), (".bmp", "bmp"), (".tif", "tiff")]
)
def test_sniff_format_reads_magic_bytes(ext: str, fmt: str) -> None:
    data = _encode(pattern_image(1), ext)
    assert sniff_format(data) == fmt
    assert truncation_reason(data, fmt) is None


def test_sniff_format_unknown_is_none() -> None:
    assert sniff_format(b"hello world, not an image") is None


def test_wrong_suffix_is_decoded_by_content(tmp_path: Path) -> None:
    path = write_image(tmp_path / "photo.jpg_1088Wx1632H", pattern_image(2), ".png")
    loaded = load_image(path)
    assert loaded.format == "png"
    assert loaded.image.shape == (96, 128, 3)


def test_webp_named_jpg(tmp_path: Path) -> None:
    path = write_image(tmp_path / "x.jpg", pattern_image(3), ".webp")
    assert load_image(path).format == "webp"


@pytest.mark.parametrize(("ext", "reason"), [(".jpg", "truncated JPEG"), (".png", "truncated PNG")])
def test_truncated_files_are_reported(tmp_path: Path, ext: str, reason: str) -> None:
    data = _encode(pattern_image(4, (200, 200)), ext)
    path = tmp_path / f"cut{ext}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    assert info.value.reason.startswith(reason)
    assert str(path) in str(info.value)


def test_jpeg_with_trailing_bytes_after_eoi_is_fine() -> None:
    data = _encode(pattern_image(5), ".jpg") + b"\x00" * 100
    assert load_image_bytes(data).format == "jpeg"


def test_truncated_webp_by_header_length() -> None:
    data = _encode(pattern_image(6), ".webp")
    assert truncation_reason(data[:-10], "webp") is not None


def test_not_an_image_and_empty(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_text("just text")
    (tmp_path / "b.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="not an image"):
        load_image(tmp_path / "a.jpg")
    with pytest.raises(ImageReadError, match="empty file"):
        load_image(tmp_path / "b.jpg")


def test_valid_markers_but_garbage_body_fails_decode() -> None:
    data = b"\xff\xd8\xff" + b"\x13" * 500 + b"\xff\xd9"
    with pytest.raises(ImageReadError, match="could not be decoded"):
        load_image_bytes(data)


def test_colour_modes(tmp_path: Path) -> None:
    bgra = np.dstack([pattern_image(7), np.full((96, 128), 255, np.uint8)])
    bgra[:10, :10, 3] = 0
    assert load_image(write_image(tmp_path / "rgba.png", bgra)).mode == "RGBA"
    gray = cv2.cvtColor(pattern_image(7), cv2.COLOR_BGR2GRAY)
    assert load_image(write_image(tmp_path / "gray.png", gray)).mode == "L"
    assert load_image(write_image(tmp_path / "gray.jpg", gray, ".jpg")).mode == "L"
    Image.fromarray(gray).convert("P").save(tmp_path / "pal.png")
    assert load_image(tmp_path / "pal.png").mode == "P"
    assert load_image(write_image(tmp_path / "rgb.jpg", pattern_image(7), ".jpg")).mode == "RGB"


def test_to_bgr_composites_transparency_over_white() -> None:
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[0, 0] = (10, 20, 30, 255)
    out = to_bgr(bgra)
    assert out.shape == (4, 4, 3)
    assert tuple(out[0, 0]) == (10, 20, 30)
    assert tuple(out[1, 1]) == (255, 255, 255)
    assert to_bgr(np.zeros((4, 4), np.uint8)).shape == (4, 4, 3)
