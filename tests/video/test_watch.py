"""The watch loop: tracks keep their ids, one event per person, flicker does not flip, clean stops."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from facevideo import pick_face_patches, two_people, write_face_video
from typer.testing import CliRunner

from maskops.cli import app
from maskops.detect.detectors import FaceDetector
from maskops.detect.pipeline import FaceMaskPipeline, PipelineConfig
from maskops.types import Detections, ModelSpec
from maskops.video.sinks import JsonlSink, VideoSink
from maskops.video.sources import FileSource, Frame
from maskops.video.watch import FaceWatcher, WatchConfig, display_problem

NAMES = ["with_mask", "without_mask", "mask_weared_incorrect"]
FRAMES = 30


@pytest.fixture(autouse=True)
def _no_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASKOPS_NO_PROGRESS", "1")


@pytest.fixture(scope="module")
def face_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real faces (facemask-photos, without mask) walking across a 640x480 background."""
    from maskops.config import Settings
    from maskops.detect.detectors import create_detector

    settings = Settings()
    folder = settings.data_dir / "facemask-photos" / "without_mask"
    yunet = settings.yunet_path
    if yunet is None or not folder.is_dir():
        pytest.skip(f"needs the YuNet weights (MASKOPS_YUNET_PATH) and {folder}")
    patches = pick_face_patches(folder, create_detector("yunet"), count=2)
    if len(patches) < 2:
        pytest.skip(f"fewer than two single-face photos in {folder} that YuNet finds")
    return write_face_video(tmp_path_factory.mktemp("video") / "two_people.avi", two_people(patches), FRAMES)


@pytest.fixture
def no_mask_model(tmp_path: Path, facemask_spec: ModelSpec, write_linear_onnx: Callable[..., Path]) -> Path:
    """The linear test classifier with a bias that makes every face ``without_mask``, confidently."""
    return write_linear_onnx(
        tmp_path / "nomask.onnx", facemask_spec, bias=np.array([0.0, 8.0, 0.0], np.float32)
    )


def test_one_event_per_person_with_evidence_and_stable_ids(face_video: Path, no_mask_model: Path) -> None:
    pipe = FaceMaskPipeline.from_paths(no_mask_model)
    evidence = face_video.parent / "evidence"
    watcher = FaceWatcher(pipe, config=WatchConfig(evidence_dir=evidence))
    events_path = face_video.parent / "events.jsonl"
    out = face_video.parent / "annotated.avi"
    with VideoSink(out, fps=10) as video, JsonlSink(events_path) as sink:
        summary = watcher.run(FileSource(face_video), video=video, events=sink, source_name=str(face_video))

    assert summary.frames == FRAMES and summary.dropped == 0 and not summary.interrupted
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    # two people, each seen in every frame: two tracks for the whole clip (ids persisted) and one
    # without_mask event each, not one per frame
    assert summary.tracks == 2
    assert [e["label"] for e in events] == ["without_mask", "without_mask"]
    assert {e["event"] for e in events} == {"class_settled"}
    assert len({e["track_id"] for e in events}) == 2
    for e in events:
        crop = cv2.imread(e["evidence"])
        assert crop is not None and min(crop.shape[:2]) >= 60  # a face crop with context
    assert sorted(p.name for p in evidence.iterdir()) == sorted(Path(e["evidence"]).name for e in events)
    assert set(summary.median_ms) == {"decode", "detect", "classify", "track", "annotate", "write"}
    # the annotated video holds every frame, at the source size
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (640, 480)
    cap.release()


def test_track_ids_persist_frame_by_frame(face_video: Path, linear_model: Path) -> None:
    """Drive the tracker with the real detector on every frame: each walker keeps one id."""
    pipe = FaceMaskPipeline.from_paths(linear_model, config=PipelineConfig(uncertain=False))
    watcher = FaceWatcher(pipe)
    ids_by_side: dict[str, set[int]] = {"top": set(), "bottom": set()}
    for frame in FileSource(face_video):
        result = pipe(frame.image)
        tracked, _ = watcher.tracker.update(result.detections, result.probs)
        for box, tid in zip(tracked.xyxy, tracked.track_id, strict=True):
            ids_by_side["top" if box[1] < 240 else "bottom"].add(int(tid))
    assert len(ids_by_side["top"]) == 1 and len(ids_by_side["bottom"]) == 1
    assert ids_by_side["top"] != ids_by_side["bottom"]


# ---- the loop without video or detector weights: scripted boxes and a flickering classifier


class MovingBox(FaceDetector):
    """One face box moving right by 3 px per call."""

    name = "moving"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, image_bgr: np.ndarray) -> Detections:
        x = 20.0 + 3 * self.calls
        self.calls += 1
        return Detections(
            xyxy=[[x, 80.0, x + 60.0, 140.0]], confidence=[0.9], class_id=[-1], face_score=[0.9]
        )


class FlickerClassifier:
    """Says ``without_mask`` with a wrong ``with_mask`` every third call (duck-types OnnxClassifier)."""

    def __init__(self) -> None:
        self.spec = ModelSpec(task="facemask", class_names=NAMES, input_size=(16, 16))
        self.class_names = NAMES
        self.calls = 0

    def predict_proba(self, crops: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        wrong = self.calls % 3 == 0
        self.calls += 1
        row = [0.9, 0.08, 0.02] if wrong else [0.1, 0.85, 0.05]
        return np.asarray([row] * len(crops), np.float32)


def frames(n: int, *, interrupt_at: int | None = None) -> Iterator[Frame]:
    image = np.full((160, 320, 3), 120, np.uint8)
    for i in range(n):
        if i == interrupt_at:
            raise KeyboardInterrupt
        yield Frame(i, image, i / 10)


def flicker_watcher(**config: Any) -> FaceWatcher:
    classifier: Any = FlickerClassifier()
    pipe = FaceMaskPipeline(classifier, MovingBox(), PipelineConfig(uncertain=False))
    return FaceWatcher(pipe, config=WatchConfig(**config))


def test_flickering_label_yields_one_event(tmp_path: Path) -> None:
    watcher = flicker_watcher(evidence_dir=tmp_path / "evidence")
    with JsonlSink(tmp_path / "events.jsonl") as sink:
        summary = watcher.run(frames(60), events=sink)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert summary.frames == 60 and summary.tracks == 1
    assert [(e["label"], e["previous"]) for e in events] == [("without_mask", None)]
    assert events[0]["evidence"] and Path(events[0]["evidence"]).is_file()


def test_compliant_events_save_no_evidence_by_default(tmp_path: Path) -> None:
    classifier: Any = FlickerClassifier()
    classifier.predict_proba = lambda crops, batch_size=64: np.asarray([[0.9, 0.05, 0.05]] * len(crops))
    pipe = FaceMaskPipeline(classifier, MovingBox(), PipelineConfig(uncertain=False))
    watcher = FaceWatcher(pipe, config=WatchConfig(evidence_dir=tmp_path / "evidence"))
    with JsonlSink(tmp_path / "events.jsonl") as sink:
        watcher.run(frames(10), events=sink)
    (event,) = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert event["label"] == "with_mask" and event["evidence"] is None
    assert not (tmp_path / "evidence").exists()


class CountingSource:
    """Frames plus what ``LiveSource`` exposes: a dropped-frame count and ``close()``."""

    def __init__(self, n: int, dropped: int) -> None:
        self.n, self.dropped, self.closed = n, dropped, False

    def __iter__(self) -> Iterator[Frame]:
        return frames(self.n)

    def close(self) -> None:
        self.closed = True


def test_max_frames_dropped_count_and_close() -> None:
    source = CountingSource(50, dropped=7)
    summary = flicker_watcher(max_frames=12).run(source)
    assert summary.frames == 12 and summary.dropped == 7 and source.closed


def test_ctrl_c_stops_cleanly_and_the_video_is_playable(tmp_path: Path) -> None:
    out = tmp_path / "partial.avi"
    with VideoSink(out, fps=10) as video:
        summary = flicker_watcher().run(frames(100, interrupt_at=9), video=video)
    assert summary.interrupted and summary.frames == 9
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 9
    cap.release()


def test_overlay_shows_fps_and_stage_times() -> None:
    frames_seen: list[np.ndarray] = []

    class Capture(VideoSink):
        def write(self, frame: np.ndarray) -> None:
            frames_seen.append(frame)

    plain = flicker_watcher(overlay=False)
    plain.run(frames(3), video=Capture(Path("x.avi"), fps=10))
    with_overlay = flicker_watcher()
    with_overlay.run(frames(3), video=Capture(Path("x.avi"), fps=10))
    top_left = (slice(0, 40), slice(0, 200))
    assert np.array_equal(frames_seen[2][top_left], np.full((40, 200, 3), 120, np.uint8))
    assert not np.array_equal(frames_seen[5][top_left], frames_seen[2][top_left])


# ---- the command


def test_watch_command_writes_video_events_and_summary(face_video: Path, linear_model: Path) -> None:
    out = face_video.parent / "cli" / "annotated.mp4"
    events = face_video.parent / "cli" / "events.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "watch", str(face_video), "--model", str(linear_model), "--out", str(out),
            "--events", str(events), "--evidence-dir", str(face_video.parent / "cli" / "ev"),
            "--max-frames", "20", "--no-uncertain",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "20 processed, 0 dropped" in result.output and "frames/s" in result.output
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    cap.release()
    records = [json.loads(line) for line in events.read_text().splitlines()]
    settled = [r for r in records if r["event"] == "class_settled"]
    assert len(settled) == 2 and len({r["track_id"] for r in settled}) == 2  # one per person


def test_watch_command_errors(tmp_path: Path, linear_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    missing = tmp_path / "models" / "facemask.onnx"
    result = runner.invoke(app, ["watch", "clip.mp4", "--model", str(missing)])
    assert result.exit_code == 2 and str(missing) in result.output

    result = runner.invoke(app, ["watch", str(tmp_path / "nope.mp4"), "--model", str(linear_model)])
    assert result.exit_code == 2 and "nope.mp4" in result.output

    monkeypatch.setattr("maskops.video.watch.display_problem", lambda: "no display here")
    result = runner.invoke(app, ["watch", "clip.mp4", "--model", str(linear_model), "--show"])
    assert result.exit_code == 2 and "--show: no display here" in result.output


def test_headless_opencv_is_reported() -> None:
    if "GUI:                           NONE" not in cv2.getBuildInformation():
        pytest.skip("this OpenCV has a GUI")
    assert "opencv-python" in (display_problem() or "")


def test_live_source_frames_are_processed_or_dropped_never_queued(tmp_path: Path) -> None:
    """A live source read faster than the loop: every frame is either processed or counted dropped."""
    from maskops.video.sources import LiveSource

    clip = tmp_path / "clip.avi"
    with VideoSink(clip, fps=30) as sink:
        for i in range(40):
            sink.write(np.full((120, 160, 3), 60 + i, np.uint8))
    source = LiveSource(str(clip), reconnect_s=0)  # a file read as if it were a camera
    summary = flicker_watcher().run(source)
    assert summary.frames >= 1
    assert summary.frames + summary.dropped == 40
