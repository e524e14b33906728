"""The real-time loop: frames -> detect -> classify -> track -> annotate -> video / window / events.

Each face is tracked across frames and its class voted over time (``FaceTracker``), so events are
per track, not per frame: a track emits one event when its class settles and one each time the
settled class really changes. Events go to a JSONL sink; for non-compliant classes an evidence crop
(JPEG of the face with some context, from the raw frame) is saved beside them.

Live sources drop stale frames themselves (``LiveSource``); the loop reports how many. Ctrl-C ends
the loop cleanly: the summary is still returned and the caller's sinks close normally.

Stages timed per frame (ms): ``decode`` (getting the next frame: read + decode for a file, waiting for
the newest frame for a live source), ``detect``, ``classify``, ``track``, ``annotate`` (boxes and
overlay), ``write`` (video file and window).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import statistics
import sys
import time
from array import array
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskops.boxes import box_iou, expand_box
from maskops.detect.annotate import BoxAnnotator
from maskops.detect.pipeline import UNCERTAIN, FaceMaskPipeline, FaceResult
from maskops.detect.tracker import FaceTracker, TrackEvent
from maskops.types import Detections
from maskops.video.sinks import JsonlSink, VideoSink
from maskops.video.sources import Frame

logger = logging.getLogger(__name__)

STAGES = ("decode", "detect", "classify", "track", "annotate", "write")


class DisplayError(RuntimeError):
    """``--show`` cannot open a window here (headless OpenCV or no display)."""


def display_problem() -> str | None:
    """Why ``cv2.imshow`` cannot work in this process, or ``None`` when it can."""
    match = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    if match and match.group(1).upper() == "NONE":
        return (
            f"this OpenCV {cv2.__version__} build has no GUI (opencv-python-headless): install "
            "opencv-python to show a window, or write an annotated video with --out"
        )
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display (DISPLAY and WAYLAND_DISPLAY are unset): write an annotated video with --out"
    return None


class Window:
    """A ``cv2.imshow`` window; ``q`` or Esc asks the loop to stop.

    Raises:
        DisplayError: no GUI support or no display.
    """

    def __init__(self, title: str = "maskops watch") -> None:
        problem = display_problem()
        if problem:
            raise DisplayError(problem)
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise DisplayError(f"cannot open a window: {exc}") from exc

    def show(self, frame: np.ndarray) -> bool:
        """Draw ``frame``; False when the user pressed ``q`` or Esc."""
        cv2.imshow(self.title, frame)
        return (cv2.waitKey(1) & 0xFF) not in (27, ord("q"))

    def close(self) -> None:
        with contextlib.suppress(cv2.error):  # already closed by the user
            cv2.destroyWindow(self.title)


@dataclass
class WatchConfig:
    """Loop settings.

    Attributes:
        max_frames: stop after this many processed frames (``None``: until the source ends).
        evidence_dir: save an evidence crop per event here (``None``: no crops).
        evidence_classes: classes whose events get a crop (``None``: every class but the first,
            i.e. the non-compliant ones; the first class is the compliant one, as in the summary).
        evidence_margin: context around the face box in the crop, per side (fraction of the box).
        overlay: draw FPS and per-stage timings on the frame.
    """

    max_frames: int | None = None
    evidence_dir: Path | None = None
    evidence_classes: Collection[int] | None = None
    evidence_margin: float = 0.25
    overlay: bool = True


@dataclass
class WatchSummary:
    """What a run did: frames, speed, events, per-stage medians (ms)."""

    source: str
    frames: int = 0
    dropped: int = 0
    elapsed_s: float = 0.0
    events: int = 0
    events_per_class: dict[str, int] = field(default_factory=dict)
    tracks: int = 0  # confirmed tracks seen
    median_ms: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    stopped_by_user: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "frames": self.frames,
            "dropped": self.dropped,
            "elapsed_s": round(self.elapsed_s, 3),
            "fps": round(self.fps, 2),
            "events": self.events,
            "events_per_class": self.events_per_class,
            "tracks": self.tracks,
            "median_ms": self.median_ms,
            "interrupted": self.interrupted,
        }


class _Smoothed:
    """Exponential moving averages of the frame period and the stage times, for the overlay."""

    def __init__(self, weight: float = 0.1) -> None:
        self.weight = weight
        self.values: dict[str, float] = {}

    def add(self, name: str, value: float) -> None:
        old = self.values.get(name)
        self.values[name] = value if old is None else (1 - self.weight) * old + self.weight * value


class FaceWatcher:
    """Runs the per-frame loop over a source.

    Args:
        pipeline: detector + classifier (one thread: the detector is used directly).
        tracker: the face tracker (default: one with default settings for the pipeline's classes).
        annotator: how boxes are drawn (default: colour per class, track ids).
        config: loop settings.
    """

    def __init__(
        self,
        pipeline: FaceMaskPipeline,
        *,
        tracker: FaceTracker | None = None,
        annotator: BoxAnnotator | None = None,
        config: WatchConfig | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.names = pipeline.class_names
        self.tracker = tracker or FaceTracker(num_classes=len(self.names))
        self.annotator = annotator or BoxAnnotator(self.names)
        self.config = config or WatchConfig()
        classes = self.config.evidence_classes
        self.evidence_classes = set(range(1, len(self.names)) if classes is None else classes)
        self._seen_tracks: set[int] = set()
        # the last processed frame's faces and stage times (ms), for callers that record frames
        self.last_result: FaceResult | None = None
        self.last_timings: dict[str, float] = {}

    def run(
        self,
        source: Iterable[Frame],
        *,
        video: VideoSink | None = None,
        events: JsonlSink | None = None,
        window: Window | None = None,
        source_name: str = "",
        on_frame: Callable[[Frame], None] | None = None,
    ) -> WatchSummary:
        """Process frames until the source ends, ``max_frames``, the user quits the window or Ctrl-C.

        Args:
            source: frames in order (a ``FileSource`` or ``LiveSource``; its ``dropped`` count and
                ``close()`` are used when present).
            video: annotated frames go here.
            events: one JSON line per track event.
            window: shows annotated frames.
            source_name: written into events and the summary.
            on_frame: called after each processed frame (progress display).

        Returns:
            The run summary.
        """
        cfg = self.config
        summary = WatchSummary(source=source_name)
        self._seen_tracks = set()
        timings: dict[str, array[float]] = {s: array("d") for s in STAGES}
        smooth = _Smoothed()
        started = last = time.perf_counter()
        iterator = iter(source)
        try:
            while cfg.max_frames is None or summary.frames < cfg.max_frames:
                t0 = time.perf_counter()
                frame = next(iterator, None)
                if frame is None:
                    break
                stage = {"decode": (time.perf_counter() - t0) * 1000.0}
                drawn, new_events = self._process(frame, stage, smooth, summary)
                t1 = time.perf_counter()
                if video is not None:
                    video.write(drawn)
                keep_going = window.show(drawn) if window is not None else True
                stage["write"] = (time.perf_counter() - t1) * 1000.0
                for event in new_events:
                    self._emit(event, frame, summary, events, source_name)
                for name, ms in stage.items():
                    timings[name].append(ms)
                    smooth.add(name, ms)
                now = time.perf_counter()
                smooth.add("period", now - last)
                last = now
                summary.frames += 1
                if on_frame is not None:
                    on_frame(frame)
                if not keep_going:
                    summary.stopped_by_user = True
                    break
        except KeyboardInterrupt:
            logger.info("interrupted: stopping after %d frames", summary.frames)
            summary.interrupted = True
        finally:
            summary.elapsed_s = time.perf_counter() - started
            close = getattr(source, "close", None)
            if callable(close):
                close()
        summary.dropped = int(getattr(source, "dropped", 0))
        summary.tracks = len(self._seen_tracks)
        summary.median_ms = {s: round(statistics.median(v), 2) for s, v in timings.items() if v}
        return summary

    def _process(
        self, frame: Frame, stage: dict[str, float], smooth: _Smoothed, summary: WatchSummary
    ) -> tuple[np.ndarray, list[TrackEvent]]:
        """Detect, classify, track and draw one frame; fills ``stage`` with the times in ms."""
        image = frame.image
        t = time.perf_counter()
        faces = self.pipeline.detector.detect(image)
        stage["detect"] = (time.perf_counter() - t) * 1000.0

        t = time.perf_counter()
        result = self.pipeline.classify_faces(image, faces)
        stage["classify"] = (time.perf_counter() - t) * 1000.0
        self.last_result, self.last_timings = result, stage

        t = time.perf_counter()
        probs = result.probs.copy()
        probs[result.detections.class_id == UNCERTAIN] = 0.0  # an uncertain face votes nothing
        tracked, new_events = self.tracker.update(result.detections, probs)
        if tracked.track_id is not None:
            self._seen_tracks.update(int(i) for i in tracked.track_id)
        stage["track"] = (time.perf_counter() - t) * 1000.0

        t = time.perf_counter()
        drawn = self.annotator.annotate(image, tracked)
        pending = self._untracked(result.detections, tracked)
        if len(pending):
            # faces whose track is not confirmed yet: grey, without a (still flickering) class
            drawn = self.annotator.annotate(drawn, pending.replace(class_id=np.full(len(pending), UNCERTAIN)))
        if self.config.overlay:
            self.annotator.overlay_text(drawn, self._overlay_lines(frame, smooth, summary, len(tracked)))
        stage["annotate"] = (time.perf_counter() - t) * 1000.0
        return drawn, new_events

    @staticmethod
    def _untracked(detections: Detections, tracked: Detections) -> Detections:
        if len(detections) == 0 or len(tracked) == 0:
            return detections
        iou = box_iou(detections.xyxy, tracked.xyxy)
        return detections[iou.max(axis=1) < 0.5]

    @staticmethod
    def _overlay_lines(frame: Frame, smooth: _Smoothed, summary: WatchSummary, tracks: int) -> list[str]:
        period = smooth.values.get("period")
        fps = f"{1.0 / period:.1f}" if period else "-"
        ms = smooth.values
        stages = " ".join(f"{s} {ms[s]:.1f}" for s in STAGES if s in ms and s != "write")
        return [
            f"{fps} FPS  frame {frame.index}  tracks {tracks}  events {summary.events}",
            f"ms: {stages}" if stages else "ms: -",
        ]

    def _emit(
        self,
        event: TrackEvent,
        frame: Frame,
        summary: WatchSummary,
        sink: JsonlSink | None,
        source_name: str,
    ) -> None:
        label = self.names[event.class_id]
        summary.events += 1
        summary.events_per_class[label] = summary.events_per_class.get(label, 0) + 1
        evidence = None
        if self.config.evidence_dir is not None and event.class_id in self.evidence_classes:
            evidence = self._save_evidence(event, frame, label)
        record = {
            "event": "class_settled" if event.previous < 0 else "class_changed",
            "label": label,
            "previous": self.names[event.previous] if event.previous >= 0 else None,
            "track_id": event.track_id,
            "confidence": round(event.confidence, 4),
            "box": [round(v, 1) for v in event.box],
            "frame": frame.index,
            "media_time_s": round(frame.timestamp, 3),
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "source": source_name,
            "evidence": str(evidence) if evidence else None,
        }
        logger.debug("event %s", record)
        if sink is not None:
            sink.write(record)

    def _save_evidence(self, event: TrackEvent, frame: Frame, label: str) -> Path | None:
        assert self.config.evidence_dir is not None
        h, w = frame.image.shape[:2]
        x1, y1, x2, y2 = expand_box(event.box, self.config.evidence_margin, w, h)
        if x2 <= x1 or y2 <= y1:
            return None
        self.config.evidence_dir.mkdir(parents=True, exist_ok=True)
        path = self.config.evidence_dir / f"track{event.track_id:05d}_frame{frame.index:07d}_{label}.jpg"
        if not cv2.imwrite(str(path), frame.image[y1:y2, x1:x2], [cv2.IMWRITE_JPEG_QUALITY, 92]):
            logger.warning("could not write evidence crop %s", path)
            return None
        return path
