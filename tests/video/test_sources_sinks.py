import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskops.video.sinks import JsonlSink, VideoSink
from maskops.video.sources import FileSource, LiveSource, SourceError, is_live, open_source, parse_source


def write_video(path: Path, n: int = 12, size: tuple[int, int] = (160, 120)) -> Path:
    with VideoSink(path, fps=10) as sink:
        for i in range(n):
            frame = np.zeros((size[1], size[0], 3), np.uint8)
            cv2.rectangle(frame, (5 * i, 20), (5 * i + 30, 60), (255, 255, 255), -1)
            sink.write(frame)
    return path


def test_video_round_trip_keeps_every_frame_in_order(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.avi")
    frames = list(open_source(str(path)))
    assert [f.index for f in frames] == list(range(12))
    assert frames[0].image.shape == (120, 160, 3)
    # the white square moves right frame by frame
    xs = [int(np.argmax(f.image[40, :, 0] > 128)) for f in frames]
    assert xs == sorted(xs) and xs[-1] > xs[0]


def test_missing_and_corrupt_video_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        FileSource(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(SourceError, match=str(bad.name)):
        FileSource(bad)


def test_source_parsing() -> None:
    assert parse_source("0") == 0
    assert is_live(0) and is_live("rtsp://cam/stream") and is_live("http://x/mjpg")
    assert not is_live("clip.mp4")


def test_sink_resizes_odd_frames_and_rejects_bad_suffix(tmp_path: Path) -> None:
    with VideoSink(tmp_path / "a.avi", fps=5) as sink:
        sink.write(np.zeros((40, 60, 3), np.uint8))
        sink.write(np.zeros((80, 30, 3), np.uint8))
    assert sink.frames == 2
    assert [f.image.shape for f in FileSource(tmp_path / "a.avi")] == [(40, 60, 3)] * 2
    with pytest.raises(ValueError, match="unsupported video suffix"):
        VideoSink(tmp_path / "a.gif", fps=5)


def test_jsonl_sink_to_file_and_stream(tmp_path: Path) -> None:
    with JsonlSink(tmp_path / "ev" / "events.jsonl") as sink:
        sink.write({"a": 1})
        sink.write({"b": [1, 2]})
    lines = (tmp_path / "ev" / "events.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"a": 1}, {"b": [1, 2]}]
    buf = io.StringIO()
    JsonlSink("-", stream=buf).write({"c": 3})
    assert json.loads(buf.getvalue()) == {"c": 3}


def test_live_source_drops_stale_frames_for_a_slow_consumer(tmp_path: Path) -> None:
    import time

    path = write_video(tmp_path / "long.avi", n=120)
    source = LiveSource(str(path), reconnect_s=0)
    seen = []
    for frame in source:
        seen.append(frame.index)
        time.sleep(0.02)  # a pipeline slower than the source
    assert seen == sorted(seen)
    assert source.dropped > 0
    assert len(seen) + source.dropped == 120
