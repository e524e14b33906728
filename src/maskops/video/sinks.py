"""Frame and event sinks: an annotated video file and a JSONL event log."""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar

import cv2
import numpy as np


class VideoSink:
    """Writes frames to a video file (codec from the suffix: .mp4 -> mp4v, .avi -> MJPG).

    The frame size is taken from the first frame; later frames of another size are resized.
    """

    CODECS: ClassVar[dict[str, str]] = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in self.CODECS:
            raise ValueError(
                f"unsupported video suffix {self.path.suffix!r}; use one of {sorted(self.CODECS)}"
            )
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._size = (frame.shape[1], frame.shape[0])
            fourcc = cv2.VideoWriter.fourcc(*self.CODECS[self.path.suffix.lower()])
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                raise OSError(f"cannot open video writer for {self.path}")
        assert self._size is not None
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size)
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class JsonlSink:
    """Appends one JSON object per line; ``path=None`` or ``"-"`` writes to a given stream."""

    def __init__(self, path: str | Path | None, stream: IO[str] | None = None) -> None:
        self._own = path not in (None, "-")
        if self._own:
            Path(path).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
            self._fh: IO[str] | None = open(path, "a", encoding="utf-8")  # type: ignore[arg-type]  # noqa: SIM115
        else:
            self._fh = stream
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._fh.flush()
        self.count += 1

    def close(self) -> None:
        if self._own and self._fh is not None:
            self._fh.close()
        self._fh = None

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
