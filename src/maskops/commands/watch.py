"""``maskops watch SOURCE``: faces in a video file, webcam or stream, tracked, with mask events."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from maskops.commands._facemask import DEPRECATED_THRESHOLD, FACE_THRESHOLD
from maskops.detect.base import DEFAULT_DETECTOR

if TYPE_CHECKING:
    from maskops.video.watch import WatchSummary


def register(app: typer.Typer) -> None:
    @app.command()
    def watch(
        source: str = typer.Argument(..., help="Video file, webcam index (0) or rtsp:// / http:// URL."),
        out: Path = typer.Option(None, "--out", help="Write the annotated video here (.mp4, .avi, ...)."),
        events: Path = typer.Option(None, "--events", help="Append one JSON line per track event here."),
        show: bool = typer.Option(False, "--show", help="Show the annotated frames in a window (q: quit)."),
        evidence_dir: Path = typer.Option(
            None, "--evidence-dir", help="Save a face crop (JPEG) per non-compliant event here."
        ),
        max_frames: int = typer.Option(None, "--max-frames", min=1, help="Stop after this many frames."),
        model: Path = typer.Option(
            None, "--model", help="Face-mask classifier .onnx (default: <models_dir>/facemask.onnx)."
        ),
        detector: str = typer.Option(
            DEFAULT_DETECTOR, "--detector", help="Face detector (yunet_cal, yunet, haar, ...)."
        ),
        uncertain: bool = typer.Option(
            True, "--uncertain/--no-uncertain", help="Hard faces are 'uncertain' and do not vote."
        ),
        face_threshold: float = FACE_THRESHOLD,
        threshold: float = DEPRECATED_THRESHOLD,
        min_confidence: float = typer.Option(
            None, "--min-confidence", min=0.0, max=1.0, help="Below this class confidence: uncertain."
        ),
        log_to: str = typer.Option(
            None, "--log-to", help="Record every frame in this prediction store (a database URL)."
        ),
        site: str = typer.Option(None, "--site", help="Site or camera tag of the recorded frames."),
    ) -> None:
        """Detect, classify and track faces frame by frame; one event per track class, not per frame."""
        from contextlib import ExitStack

        from rich.console import Console
        from rich.markup import escape

        from maskops.commands._facemask import face_threshold_of, fail, load_pipeline
        from maskops.commands.monitor import run_recorder
        from maskops.data.progress import progress_bar
        from maskops.video.sinks import JsonlSink, VideoSink
        from maskops.video.sources import SourceError, open_source
        from maskops.video.watch import DisplayError, FaceWatcher, WatchConfig, Window

        if out is not None and out.suffix.lower() not in VideoSink.CODECS:
            raise fail(
                f"--out {escape(str(out))}: use one of the suffixes {', '.join(sorted(VideoSink.CODECS))}"
            )
        pipeline, _ = load_pipeline(
            model,
            detector=detector,
            face_threshold=face_threshold_of(face_threshold, threshold),
            uncertain=uncertain,
            min_confidence=min_confidence,
            # one stream: YuNet on every core; the few small face crops run fastest on one thread
            # beside it (measured: 14.7 ms/frame vs 21.6 with both on every core)
            num_threads=1,
            detector_threads=None,
        )
        err = Console(stderr=True, soft_wrap=True, highlight=False)
        recorder = run_recorder(log_to, "watch", site, model, detector)
        with ExitStack() as stack:
            if recorder is not None:
                stack.callback(recorder.close)
            try:
                window = Window(f"maskops watch {source}") if show else None
            except DisplayError as exc:
                raise fail(f"--show: {escape(str(exc))}") from exc
            if window is not None:
                stack.callback(window.close)
            try:
                frames = open_source(source)
            except SourceError as exc:
                raise fail(escape(str(exc))) from exc
            stack.callback(frames.close)
            video = stack.enter_context(VideoSink(out, fps=frames.fps)) if out is not None else None
            sink = stack.enter_context(JsonlSink(events)) if events is not None else None
            if out is None and events is None and window is None:
                err.print("[yellow]note:[/yellow] no --out, --events or --show: only the summary is printed")
            total = getattr(frames, "frame_count", 0) or None
            if max_frames is not None and total is not None:
                total = min(total, max_frames)
            if total is None:
                err.print("live source: frames are dropped when the pipeline is slower; Ctrl-C stops")
            watcher = FaceWatcher(
                pipeline, config=WatchConfig(max_frames=max_frames, evidence_dir=evidence_dir)
            )
            with progress_bar() as bar:
                task = bar.add_task("watch", total=total)

                def on_frame(frame: Any) -> None:
                    bar.advance(task)
                    if recorder is not None and watcher.last_result is not None:
                        h, w = frame.image.shape[:2]
                        recorder.add(
                            watcher.last_result,
                            width=w,
                            height=h,
                            timings_ms=watcher.last_timings,
                            image=frame.image,
                        )

                summary = watcher.run(
                    frames,
                    video=video,
                    events=sink,
                    window=window,
                    source_name=source,
                    on_frame=on_frame,
                )
        Console().print(_table(summary, out, events, evidence_dir))


def _table(s: WatchSummary, out: Path | None, events: Path | None, evidence: Path | None) -> Any:
    from rich.table import Table

    title = "maskops watch" + (" (interrupted)" if s.interrupted else "")
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value")
    table.add_row("source", s.source)
    table.add_row("frames", f"{s.frames} processed, {s.dropped} dropped")
    table.add_row("speed", f"{s.fps:.1f} frames/s over {s.elapsed_s:.1f} s")
    table.add_row("tracks", str(s.tracks))
    per_class = ", ".join(f"{k} {v}" for k, v in sorted(s.events_per_class.items()))
    table.add_row("events", f"{s.events}" + (f" ({per_class})" if per_class else ""))
    table.add_row("median ms", "  ".join(f"{k} {v:.1f}" for k, v in s.median_ms.items()) or "-")
    for name, path in (("video", out), ("events file", events), ("evidence", evidence)):
        if path is not None:
            table.add_row(name, str(path))
    return table
