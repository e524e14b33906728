from __future__ import annotations

import cv2
import numpy as np
import pytest
from datagen import pattern_image

from maskops.data.hashing import UnionFind, dhash, hamming, near_pairs, phash
from maskops.data.validate import ValidationRules

RULES = ValidationRules()


def _resized_copy(image: np.ndarray) -> np.ndarray:
    small = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def test_hashes_are_64_bit_ints() -> None:
    img = pattern_image(0)
    for h in (phash(img), dhash(img)):
        assert isinstance(h, int)
        assert 0 <= h < 2**64


def test_resized_recompressed_copy_is_near() -> None:
    img = pattern_image(1)
    copy = _resized_copy(img)
    assert hamming(phash(img), phash(copy)) <= RULES.phash_max
    assert hamming(dhash(img), dhash(copy)) <= RULES.dhash_max


@pytest.mark.parametrize("other_seed", [2, 3, 4, 5])
def test_different_images_are_far(other_seed: int) -> None:
    a, b = pattern_image(1), pattern_image(other_seed)
    assert hamming(phash(a), phash(b)) > RULES.phash_max or hamming(dhash(a), dhash(b)) > RULES.dhash_max


def test_gray_and_bgra_inputs_match_bgr() -> None:
    img = pattern_image(6)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    assert phash(gray) == phash(img) == phash(bgra)
    assert dhash(gray) == dhash(img)


def test_hamming() -> None:
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(5, 5) == 0


def test_near_pairs_needs_both_hashes() -> None:
    a = [0, 0, 0b111, 0b1111 << 60]
    b = [0, 0b1, 0, 0]
    assert near_pairs(a, b, max_a=0, max_b=1) == [(0, 1)]
    assert near_pairs(a, b, max_a=3, max_b=1) == [(0, 1), (0, 2), (1, 2)]
    assert near_pairs([], [], 1, 1) == []
    with pytest.raises(ValueError, match="differ in length"):
        near_pairs([1, 2], [1], 1, 1)


def test_near_pairs_blocks_agree_with_one_block() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**16, 300).tolist()
    b = rng.integers(0, 2**16, 300).tolist()
    assert near_pairs(a, b, 4, 4, block=7) == near_pairs(a, b, 4, 4, block=1000)


def test_union_find_groups() -> None:
    uf: UnionFind[str] = UnionFind(["a", "b", "c", "d"])
    uf.union("a", "c")
    uf.union("c", "d")
    assert sorted(sorted(g) for g in uf.groups()) == [["a", "c", "d"], ["b"]]
    assert uf.find("d") == uf.find("a")
    assert uf.find("b") != uf.find("a")
