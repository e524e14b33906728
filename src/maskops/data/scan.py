"""Scan image files once: bytes -> sha256, format, size, colour mode, perceptual hashes, errors.

Scanning decodes every file, so it runs in a small process pool (2 workers by default) with a
progress bar. A file that cannot be read never stops the scan: its ``error`` says why.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2

from maskops.data.hashing import dhash, phash
from maskops.data.images import ImageReadError, load_image_bytes
from maskops.data.progress import track


@dataclass(frozen=True)
class FileInfo:
    """What one scan learnt about one file. ``error`` is ``None`` for a usable image."""

    path: str
    size_bytes: int
    sha256: str
    format: str | None = None
    width: int = 0
    height: int = 0
    mode: str = ""
    phash: int = 0
    dhash: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def scan_file(path: str | Path) -> FileInfo:
    """Scan one file (pure apart from reading it); never raises for bad content."""
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return FileInfo(path, 0, "", error=f"cannot read file: {exc.strerror or exc}")
    sha = hashlib.sha256(data).hexdigest()
    try:
        loaded = load_image_bytes(data, path)
    except ImageReadError as exc:
        return FileInfo(path, len(data), sha, error=exc.reason)
    image = loaded.image
    return FileInfo(
        path=path,
        size_bytes=len(data),
        sha256=sha,
        format=loaded.format,
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        mode=loaded.mode,
        phash=phash(image),
        dhash=dhash(image),
    )


def _init_worker() -> None:
    cv2.setNumThreads(1)


def scan_files(
    paths: Sequence[str | Path], workers: int | None = None, description: str = "scan"
) -> list[FileInfo]:
    """Scan many files, in input order, with a progress bar.

    Args:
        paths: files to scan.
        workers: processes (default: 2, or fewer CPUs); 1 scans in this process.
        description: progress-bar label.
    """
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    items = [str(p) for p in paths]
    if workers <= 1 or len(items) < 64:
        return list(track((scan_file(p) for p in items), len(items), description))
    # spawn, not fork: a forked child of a process that already ran OpenCV's thread pool can hang
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, mp_context=ctx) as pool:
        results = pool.map(scan_file, items, chunksize=32)
        return list(track(results, len(items), description))
