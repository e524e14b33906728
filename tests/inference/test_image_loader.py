"""The one image loader of the API and the CLI: checks in order, one decode, BGR out."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import maskops.inference.images as images
from maskops.inference.images import ImageRejected, decode_image, load_image_file


def _png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


def _jpeg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img)[1].tobytes()


def test_decodes_once_into_bgr(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = images.decode_raw
    monkeypatch.setattr(images, "decode_raw", lambda data, fmt: calls.append(fmt) or real(data, fmt))
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 2] = 255  # red
    rgba[..., 3] = 255
    out = decode_image(_png(rgba), "a.png")
    assert calls == ["png"]
    assert (out.format, out.mode, out.width, out.height, out.name) == ("png", "RGBA", 8, 6, "a.png")
    assert out.image.shape == (6, 8, 3) and out.image.dtype == np.uint8
    assert out.image[0, 0].tolist() == [0, 0, 255]


def test_gray_becomes_three_channels() -> None:
    out = decode_image(_png(np.full((4, 5), 9, np.uint8)))
    assert out.mode == "L" and out.image.shape == (4, 5, 3)


@pytest.mark.parametrize(
    ("data", "kwargs", "code", "words"),
    [
        (b"", {}, "invalid_image", "empty file"),
        (b"hello, not an image", {}, "unsupported_media_type", "not an image"),
        (_jpeg(np.zeros((8, 8, 3), np.uint8))[:-40], {}, "invalid_image", "truncated JPEG"),
        (_jpeg(np.zeros((8, 8, 3), np.uint8)), {"max_bytes": 10}, "image_too_large", "over the limit"),
        (_png(np.zeros((20, 30, 3), np.uint8)), {"max_pixels": 500}, "image_too_large", "20 = 600 pixels"),
    ],
)
def test_rejections_say_what_and_why(data: bytes, kwargs: dict[str, int], code: str, words: str) -> None:
    with pytest.raises(ImageRejected) as info:
        decode_image(data, "x.bin", **kwargs)
    assert info.value.code == code
    assert words in info.value.reason
    assert info.value.message == f"x.bin: {info.value.reason}"


def test_the_pixel_limit_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "decode_raw", lambda *a: pytest.fail("decoded"))
    with pytest.raises(ImageRejected) as info:
        decode_image(_png(np.zeros((20, 30, 3), np.uint8)), max_pixels=100)
    assert info.value.details == {"width": 30, "height": 20, "max_pixels": 100}


def test_files_are_named_by_their_path(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg_1088Wx1632H"  # the suffix does not matter, the content does
    path.write_bytes(_png(np.zeros((3, 4, 3), np.uint8)))
    assert load_image_file(path).format == "png"
    with pytest.raises(ImageRejected) as info:
        load_image_file(tmp_path / "missing.jpg")
    assert info.value.code == "invalid_image" and "cannot read file" in info.value.reason
