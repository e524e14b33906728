"""``maskops detect PATH...``: every face of image files and folders, with its mask status."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from maskops.commands._facemask import DEPRECATED_THRESHOLD, FACE_THRESHOLD
from maskops.detect.base import DEFAULT_DETECTOR


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def register(app: typer.Typer) -> None:
    @app.command()
    def detect(
        paths: list[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
        out: Path = typer.Option(
            None, "--out", help="Write annotated images, detections.jsonl and summary.json here."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON line per image on stdout."),
        model: Path = typer.Option(
            None, "--model", help="Face-mask classifier .onnx (default: <models_dir>/facemask.onnx)."
        ),
        detector: str = typer.Option(
            DEFAULT_DETECTOR, "--detector", help="Face detector (yunet_cal, yunet, haar, ...)."
        ),
        uncertain: bool = typer.Option(
            True, "--uncertain/--no-uncertain", help="Label hard faces 'uncertain' instead of guessing."
        ),
        face_threshold: float = FACE_THRESHOLD,
        threshold: float = DEPRECATED_THRESHOLD,
        min_confidence: float = typer.Option(
            None, "--min-confidence", min=0.0, max=1.0, help="Below this class confidence: uncertain."
        ),
        workers: int = typer.Option(None, "--workers", min=1, help="Worker threads (default: cores)."),
        log_to: str = typer.Option(
            None, "--log-to", help="Record every image in this prediction store (a database URL)."
        ),
        site: str = typer.Option(None, "--site", help="Site or camera tag of the recorded images."),
    ) -> None:
        """Detect faces and classify their masks; unreadable files are reported and skipped (exit 1)."""
        import time
        from itertools import chain

        from rich.console import Console
        from rich.markup import escape

        from maskops.commands._facemask import face_threshold_of, fail, load_pipeline
        from maskops.commands.monitor import run_recorder
        from maskops.data.progress import track
        from maskops.detect.batch import BatchDetector, BatchSummary, collect_images
        from maskops.video.sinks import JsonlSink

        cores = _cores()
        workers = workers or cores
        threads = max(1, cores // workers)  # per worker, for the classifier and YuNet alike
        pipeline, make_detector = load_pipeline(
            model,
            detector=detector,
            face_threshold=face_threshold_of(face_threshold, threshold),
            uncertain=uncertain,
            min_confidence=min_confidence,
            num_threads=threads,
            detector_threads=threads,
        )
        recorder = run_recorder(log_to, "detect", site, model, detector)
        jobs, missing = collect_images(paths, exclude=out)
        if not jobs and not missing:
            raise fail(f"no image files found in {', '.join(escape(str(p)) for p in paths)}")

        err = Console(stderr=True, soft_wrap=True, highlight=False)
        names = pipeline.class_names
        summary = BatchSummary()
        sinks: list[JsonlSink] = []
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "detections.jsonl").unlink(missing_ok=True)  # one run per file, not appended runs
            sinks.append(JsonlSink(out / "detections.jsonl"))
        if as_json:
            sinks.append(JsonlSink(None, stream=typer.get_text_stream("stdout")))
        runner = BatchDetector(pipeline, make_detector, workers=workers, out_dir=out)
        started = time.perf_counter()
        try:
            for record in chain(missing, track(runner.run(jobs), len(jobs), "detect")):
                summary.add(record)
                for sink in sinks:
                    sink.write(record.to_json(names))
                if record.error:
                    err.print(f"[red]skipped:[/red] {escape(str(record.path))}: {escape(record.error)}")
                elif recorder is not None:
                    recorder.add(
                        record.result, width=record.width, height=record.height, timings_ms=record.timings_ms
                    )
        finally:
            summary.elapsed_s = time.perf_counter() - started
            for sink in sinks:
                sink.close()
            if recorder is not None:
                recorder.close()
        result = summary.as_dict(pipeline)
        if out is not None:
            (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        Console(stderr=as_json).print(_table(result, names, workers))
        if summary.failed:
            raise typer.Exit(code=1)


def _table(s: dict[str, Any], names: list[str], workers: int) -> Any:
    from rich.table import Table

    rate = s["compliance_rate"]
    speed = s["images_per_s"]
    table = Table(title="maskops detect", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("images", str(s["images"]))
    table.add_row("failed", str(s["failed"]))
    table.add_row("faces", str(s["faces"]))
    for name in [*names, "uncertain"]:
        table.add_row(f"  {name}", str(s["per_class"][name]))
    table.add_row(f"compliance ({names[0]} / decided)", "-" if rate is None else f"{rate:.1%}")
    table.add_row(f"images/s ({workers} workers)", "-" if speed is None else f"{speed:.1f}")
    stages = "  ".join(f"{k} {v:.1f}" for k, v in s["median_ms"].items())
    table.add_row("median ms per image", stages or "-")
    return table
