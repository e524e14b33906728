"""Perceptual hashes (dHash, DCT pHash), Hamming distances, near-duplicate links and union-find.

All functions are pure. Hashes are 64-bit integers (``numpy.uint64``); two images are near
duplicates when BOTH hashes are within their Hamming thresholds, which keeps different faces
with a similar layout apart (one hash alone matches them far too easily).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Generic, TypeVar

import cv2
import numpy as np

T = TypeVar("T", bound=Hashable)


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _pack(bits: np.ndarray) -> int:
    """Booleans (row-major) -> int; element ``k`` is bit ``2**k``."""
    return int.from_bytes(np.packbits(bits.reshape(-1).astype(bool), bitorder="little").tobytes(), "little")


def dhash(image: np.ndarray, size: int = 8) -> int:
    """Difference hash: sign of horizontal gradients on a ``size x (size+1)`` gray thumbnail.

    Args:
        image: gray, BGR or BGRA uint8 array.
        size: hash side; 8 gives 64 bits.

    Returns:
        The hash as a non-negative int below ``2**(size*size)``.
    """
    small = cv2.resize(_gray(image), (size + 1, size), interpolation=cv2.INTER_AREA).astype(np.int16)
    return _pack(small[:, 1:] > small[:, :-1])


def phash(image: np.ndarray, size: int = 8, highfreq: int = 4) -> int:
    """DCT perceptual hash: low-frequency DCT coefficients of a gray thumbnail against their median.

    The image is shrunk to ``size*highfreq`` square, transformed with a 2-D DCT, and the top-left
    ``size x size`` block (without the DC term for the median) is thresholded at its median.

    Args:
        image: gray, BGR or BGRA uint8 array.
        size: hash side; 8 gives 64 bits.
        highfreq: thumbnail side = ``size * highfreq``.

    Returns:
        The hash as a non-negative int.
    """
    n = size * highfreq
    small = cv2.resize(_gray(image), (n, n), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:size, :size]
    median = float(np.median(low.reshape(-1)[1:]))
    return _pack(low > median)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (int(a) ^ int(b)).bit_count()


def near_pairs(
    hashes_a: Sequence[int] | np.ndarray,
    hashes_b: Sequence[int] | np.ndarray,
    max_a: int,
    max_b: int,
    block: int = 1024,
) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, whose hashes agree within BOTH thresholds.

    Args:
        hashes_a: first hash per item (e.g. pHash).
        hashes_b: second hash per item (e.g. dHash), same length.
        max_a: largest Hamming distance on ``hashes_a`` that still counts as near.
        max_b: the same for ``hashes_b``.
        block: rows compared at once (memory bound).

    Returns:
        Sorted list of pairs.
    """
    a = np.asarray([int(h) for h in hashes_a], dtype=np.uint64)
    b = np.asarray([int(h) for h in hashes_b], dtype=np.uint64)
    if a.shape != b.shape:
        raise ValueError(f"hash lists differ in length: {a.shape[0]} vs {b.shape[0]}")
    n = a.shape[0]
    pairs: list[tuple[int, int]] = []
    for start in range(0, n, block):
        stop = min(n, start + block)
        da = np.bitwise_count(a[start:stop, None] ^ a[None, :])
        ok = da <= max_a
        if not ok.any():
            continue
        db = np.bitwise_count(b[start:stop, None] ^ b[None, :])
        ok &= db <= max_b
        rows, cols = np.nonzero(ok)
        rows = rows + start
        keep = cols > rows
        pairs.extend(zip(rows[keep].tolist(), cols[keep].tolist(), strict=True))
    pairs.sort()
    return pairs


class UnionFind(Generic[T]):
    """Disjoint sets over hashable items (path halving, union by size)."""

    def __init__(self, items: Iterable[T] = ()) -> None:
        self._parent: dict[T, T] = {}
        self._size: dict[T, int] = {}
        for item in items:
            self.add(item)

    def add(self, item: T) -> None:
        if item not in self._parent:
            self._parent[item] = item
            self._size[item] = 1

    def find(self, item: T) -> T:
        self.add(item)
        parent = self._parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(self, a: T, b: T) -> T:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self._size[ra] < self._size[rb]:
            ra, rb = rb, ra
        self._parent[rb] = ra
        self._size[ra] += self._size[rb]
        return ra

    def groups(self) -> list[list[T]]:
        """Every set as a list in insertion order; sets ordered by their first item."""
        out: dict[T, list[T]] = {}
        for item in self._parent:
            out.setdefault(self.find(item), []).append(item)
        return list(out.values())
