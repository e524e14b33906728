"""A synthetic video of real faces moving over a background, for tracking and ``watch`` tests.

Face photos come from ``facemask-photos`` (mostly tightly cropped single faces). Each chosen photo is
pasted, resized, at a position that moves linearly from frame to frame; the video is written with
``VideoSink`` so it is read back exactly like a user's file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskops.data.images import ImageReadError, read_bgr
from maskops.detect.detectors import FaceDetector
from maskops.video.sinks import VideoSink

FRAME_SIZE = (640, 480)  # width, height


@dataclass(frozen=True)
class Walker:
    """A face patch moving from ``start`` by ``step`` pixels per frame (top-left corner)."""

    patch: np.ndarray
    start: tuple[int, int]
    step: tuple[int, int]

    def position(self, t: int) -> tuple[int, int]:
        return self.start[0] + self.step[0] * t, self.start[1] + self.step[1] * t


def background(seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with mild noise (no face-like structure)."""
    w, h = FRAME_SIZE
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    img = np.stack([90 + 60 * x + 0 * y, 110 + 40 * y + 0 * x, 140 - 50 * x * y], axis=2)
    noise = np.random.default_rng(seed).normal(0, 4, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def frame_at(walkers: Sequence[Walker], t: int, bg: np.ndarray) -> np.ndarray:
    frame = bg.copy()
    for walker in walkers:
        x, y = walker.position(t)
        ph, pw = walker.patch.shape[:2]
        frame[y : y + ph, x : x + pw] = walker.patch
    return frame


def pick_face_patches(
    folder: Path, detector: FaceDetector, count: int, width: int = 120, min_score: float = 0.85
) -> list[np.ndarray]:
    """The first ``count`` photos (sorted by name) whose pasted patch the detector finds as one face."""
    bg = background()
    patches: list[np.ndarray] = []
    for path in sorted(folder.iterdir()):
        try:
            photo = read_bgr(path)
        except ImageReadError:
            continue
        h, w = photo.shape[:2]
        if not 0.75 <= h / w <= 1.3 or min(h, w) < 80:
            continue
        patch = cv2.resize(photo, (width, round(width * h / w)), interpolation=cv2.INTER_AREA)
        probe = frame_at([Walker(patch, (200, 150), (0, 0))], 0, bg)
        found = detector.detect(probe)
        if len(found) == 1 and float(found.face_score[0]) >= min_score:
            patches.append(patch)
            if len(patches) == count:
                break
    return patches


def write_face_video(path: Path, walkers: Sequence[Walker], frames: int, fps: float = 10.0) -> Path:
    """Write ``frames`` frames of the walkers over the background; returns ``path``."""
    bg = background()
    with VideoSink(path, fps=fps) as sink:
        for t in range(frames):
            sink.write(frame_at(walkers, t, bg))
    return path


def two_people(patches: Sequence[np.ndarray]) -> list[Walker]:
    """Two faces walking in opposite directions at different heights (never overlapping)."""
    return [Walker(patches[0], (20, 40), (8, 1)), Walker(patches[1], (480, 300), (-8, -1))]
