"""Frame sources: video files are read frame by frame; live sources always hand out the newest frame.

A live source (webcam index, RTSP/HTTP URL) is read on a background thread that keeps only the latest
frame: when the source is faster than the pipeline, frames are dropped, not queued, so what the pipeline
sees stays live. A file is read in order (nothing is dropped: every frame is processed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)


class SourceError(ValueError):
    """A video source could not be opened or read."""


@dataclass(frozen=True)
class Frame:
    index: int  # position in the source (gaps = dropped frames on live sources)
    image: np.ndarray
    timestamp: float  # seconds: media time for files, wall clock for live sources


def parse_source(source: str) -> int | str:
    """``"0"`` -> webcam 0; URLs and paths are returned as given."""
    return int(source) if source.isdigit() else source


def is_live(source: int | str) -> bool:
    return isinstance(source, int) or str(source).lower().startswith(
        ("rtsp://", "rtmp://", "http://", "https://")
    )


def _open(source: int | str) -> cv2.VideoCapture:
    if isinstance(source, str) and not is_live(source) and not Path(source).is_file():
        raise SourceError(f"video file not found: {source}")
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        kind = "webcam" if isinstance(source, int) else "stream" if is_live(source) else "video file"
        raise SourceError(
            f"cannot open {kind} {source!r} (not found, no permission, or an unsupported format)"
        )
    return cap


class FileSource:
    """Every frame of a video file, in order."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._cap = _open(self.path)
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 25.0
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, first = self._cap.read()
        if not ok:
            self._cap.release()
            raise SourceError(f"video file {self.path!r} has no readable frame (corrupt or empty)")
        self._first: np.ndarray | None = first

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        try:
            while True:
                if self._first is not None:
                    image, self._first = self._first, None
                else:
                    ok, image = self._cap.read()
                    if not ok:
                        return
                yield Frame(index, image, index / self.fps)
                index += 1
        finally:
            self.close()

    def close(self) -> None:
        self._cap.release()


class LiveSource:
    """The newest frame of a webcam or stream; older unread frames are dropped.

    Args:
        source: webcam index or stream URL.
        reconnect_s: on a read failure of a stream, wait this long and reopen (0 = stop).
    """

    def __init__(self, source: int | str, *, reconnect_s: float = 2.0) -> None:
        self.source = source
        self.reconnect_s = reconnect_s
        self._cap = _open(source)
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 30.0
        self._lock = threading.Condition()
        self._latest: Frame | None = None
        self._read_index = 0
        self._stopped = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._reader, name=f"live-source-{source}", daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        while not self._stopped:
            ok, image = self._cap.read()
            if not ok:
                if self.reconnect_s <= 0 or isinstance(self.source, int):
                    break
                logger.warning("stream %s read failed; reconnecting in %.1fs", self.source, self.reconnect_s)
                time.sleep(self.reconnect_s)
                self._cap.release()
                self._cap = cv2.VideoCapture(self.source)
                continue
            with self._lock:
                if self._latest is not None:
                    self.dropped += 1
                self._latest = Frame(self._read_index, image, time.time())
                self._read_index += 1
                self._lock.notify_all()
        with self._lock:
            self._stopped = True
            self._lock.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        try:
            while True:
                with self._lock:
                    while self._latest is None and not self._stopped:
                        self._lock.wait(timeout=1.0)
                    if self._latest is None:
                        return
                    frame, self._latest = self._latest, None
                yield frame
        finally:
            self.close()

    def close(self) -> None:
        self._stopped = True
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)
        self._cap.release()


def open_source(source: str, *, reconnect_s: float = 2.0) -> FileSource | LiveSource:
    """A file source for paths, a live (frame-dropping) source for webcams and stream URLs."""
    parsed = parse_source(source)
    return LiveSource(parsed, reconnect_s=reconnect_s) if is_live(parsed) else FileSource(str(parsed))
