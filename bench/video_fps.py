"""End-to-end video throughput on 640x480 frames with 1-5 faces, side by side in one process.

A clip is built from facemask-voc photos holding 1-5 annotated faces, each letterboxed to 640x480
and shown for a second while it pans slowly (so the tracker has something to follow), and written
as an MP4. Three pipelines then read that same file, one after another, in alternating rounds:

- ``maskops``: ``FaceWatcher`` (decode -> YuNet -> shipped int8 classifier -> tracker -> annotate);
- ``haar+mobilenetv2``: the public projects' approach: Haar cascade on the gray frame, each face
  resized to 224x224 and classified by a MobileNetV2 (ONNX, random weights), boxes drawn;
- ``yolov8n-640``: a YOLOv8n-sized single-stage detector (ONNX, random weights) on the frame
  letterboxed to 640x640, confidence filter + NMS, boxes drawn.

Every pipeline may use both cores (ONNX Runtime and OpenCV default threading). Reported: median
ms per frame and frames/s per pipeline, the per-stage split of ``maskops``, and the ratios.

    .venv/bin/python bench/video_fps.py [--frames 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def build_clip(path: Path, frames: int, fps: int = 15) -> Path:
    """An MP4 of 640x480 frames made from VOC photos with 1-5 faces (reused when present)."""
    if path.is_file():
        return path
    from maskops.config import Settings
    from maskops.video.sinks import VideoSink

    voc = Settings().data_dir / "facemask-voc"
    picked = []
    for xml in sorted((voc / "annotations").glob("*.xml")):
        n = len(ET.parse(xml).getroot().findall("object"))
        image = voc / "images" / f"{xml.stem}.jpg"
        if 1 <= n <= 5 and image.is_file():
            picked.append(image)
        if len(picked) >= max(1, frames // fps):
            break
    if not picked:
        raise SystemExit(f"no facemask-voc images with 1-5 faces under {voc}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoSink(path, fps) as sink:
        for i in range(frames):
            src = cv2.imread(str(picked[(i // fps) % len(picked)]))
            h, w = src.shape[:2]
            scale = min(600 / w, 440 / h)
            small = cv2.resize(src, (round(w * scale), round(h * scale)))
            canvas = np.full((480, 640, 3), 40, np.uint8)
            dx = 10 + (i % fps) * 2  # slow pan
            y0 = (480 - small.shape[0]) // 2
            x0 = min(640 - small.shape[1], dx)
            canvas[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
            sink.write(canvas)
    return path


def run_maskops(clip: Path, model: Path) -> tuple[list[float], dict[str, float]]:
    from maskops.detect.pipeline import FaceMaskPipeline
    from maskops.video.sources import FileSource
    from maskops.video.watch import FaceWatcher

    watcher = FaceWatcher(FaceMaskPipeline.from_paths(model))
    per_frame: list[float] = []
    last = [time.perf_counter()]

    def tick(_: object) -> None:
        now = time.perf_counter()
        per_frame.append((now - last[0]) * 1000.0)
        last[0] = now

    summary = watcher.run(FileSource(clip), on_frame=tick)
    return per_frame, summary.median_ms


def run_haar_mobilenet(clip: Path, ref: ort.InferenceSession) -> list[float]:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    name = ref.get_inputs()[0].name
    mean = np.array([127.5, 127.5, 127.5], np.float32)
    cap = cv2.VideoCapture(str(clip))
    times = []
    while True:
        t0 = time.perf_counter()
        ok, frame = cap.read()
        if not ok:
            break
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20))
        if len(faces):
            batch = np.stack(
                [
                    (
                        (cv2.resize(frame[y : y + h, x : x + w], (224, 224))[:, :, ::-1] - mean) / 127.5
                    ).transpose(2, 0, 1)
                    for x, y, w, h in faces
                ]
            ).astype(np.float32)
            ref.run(None, {name: batch})
            for x, y, w, h in faces:
                cv2.rectangle(frame, (x, y), (x + w, y + h), (0, 255, 0), 2)
        times.append((time.perf_counter() - t0) * 1000.0)
    cap.release()
    return times


def run_yolo(clip: Path, yolo: ort.InferenceSession) -> list[float]:
    name = yolo.get_inputs()[0].name
    cap = cv2.VideoCapture(str(clip))
    times = []
    while True:
        t0 = time.perf_counter()
        ok, frame = cap.read()
        if not ok:
            break
        canvas = np.full((640, 640, 3), 114, np.uint8)
        canvas[80:560] = frame  # 640x480 letterboxed to 640x640
        x = (canvas[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)) / 255.0
        out = yolo.run(None, {name: np.ascontiguousarray(x)})[0][0]  # (4 + nc, anchors)
        scores = out[4:].max(0)
        keep = np.flatnonzero(scores > 0.25)[:300]
        boxes = [[float(v) for v in out[:4, k]] for k in keep]
        idx = cv2.dnn.NMSBoxes(boxes, scores[keep].tolist(), 0.25, 0.45) if boxes else []
        for i in np.asarray(idx).reshape(-1)[:50]:
            x1, y1, w, h = (int(v) for v in boxes[i])
            cv2.rectangle(frame, (x1, y1), (x1 + w, y1 + h), (0, 255, 0), 2)
        times.append((time.perf_counter() - t0) * 1000.0)
    cap.release()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "facemask.onnx")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "work" / "bench" / "video_fps")
    args = parser.parse_args()

    from latency_sizes import export_mobilenetv2
    from reference_models import export_yolov8n_like

    args.work_dir.mkdir(parents=True, exist_ok=True)
    clip = build_clip(args.work_dir / f"clip_{args.frames}.mp4", args.frames)
    ref_path = args.work_dir / "mobilenetv2_224.onnx"
    if not ref_path.is_file():
        export_mobilenetv2(args.work_dir)
    yolo_path = args.work_dir / "yolov8n_like_640.onnx"
    if not yolo_path.is_file():
        export_yolov8n_like(yolo_path)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    ref = ort.InferenceSession(str(ref_path), opts, providers=["CPUExecutionProvider"])
    yolo = ort.InferenceSession(str(yolo_path), opts, providers=["CPUExecutionProvider"])

    results: dict[str, list[float]] = {"maskops": [], "haar+mobilenetv2": [], "yolov8n-640": []}
    stages: list[dict[str, float]] = []
    for r in range(args.rounds):
        order = list(results) if r % 2 == 0 else list(reversed(results))
        for name in order:
            if name == "maskops":
                times, st = run_maskops(clip, args.model)
                stages.append(st)
            elif name == "haar+mobilenetv2":
                times = run_haar_mobilenet(clip, ref)
            else:
                times = run_yolo(clip, yolo)
            results[name].extend(times[5:])  # the first frames warm up
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"clip {clip.name}: {args.frames} frames 640x480, 1-5 faces; {args.rounds} alternating rounds")
    print(
        f"{platform.machine()}, 2 cores, onnxruntime {ort.__version__}, OpenCV {cv2.__version__}, {datetime.now(UTC).date()}\n"
    )
    print("| pipeline | median ms/frame | frames/s | maskops speed-up |")
    print("| --- | --- | --- | --- |")
    for k, v in med.items():
        print(f"| {k} | {v:.1f} | {1000.0 / v:.1f} | {v / med['maskops']:.2f}x |")
    keys = [k for k in ("decode", "detect", "classify", "track", "annotate", "write") if k in stages[0]]
    split = {k: statistics.median(s[k] for s in stages) for k in keys}
    print("\nmaskops per-stage medians (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in split.items()))


if __name__ == "__main__":
    main()
