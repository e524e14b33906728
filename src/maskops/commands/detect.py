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
        paths: list[str] = typer.Argument(
            None, help="Image files, folders (searched recursively) and/or file:// URIs."
        ),
        from_list: list[Path] = typer.Option(
            [], "--from-list", help="A text file naming one image, folder or file:// URI per line."
        ),
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
        engine: str = typer.Option(
            "local", "--engine", help="local (a thread pool here) or ray (an actor pool on a Ray cluster)."
        ),
        address: str = typer.Option(
            None, "--address", help="Ray cluster to join (--engine ray; default: a private local instance)."
        ),
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
        from maskops.scale.inputs import InputError, resolve_inputs
        from maskops.video.sinks import JsonlSink

        if engine not in ("local", "ray"):
            raise fail(f"--engine must be local or ray, got {escape(engine)!r}")
        if address and engine != "ray":
            raise fail("--address needs --engine ray")
        try:
            inputs = resolve_inputs(paths or [], from_list)
        except InputError as exc:
            raise fail(escape(str(exc))) from exc
        if not inputs:
            raise fail("no inputs: give image files, folders or file:// URIs, or --from-list FILE")
        cores = _cores()
        workers = workers or cores
        # per worker, for the classifier and YuNet alike (a Ray actor has one CPU: one thread)
        threads = 1 if engine == "ray" else max(1, cores // workers)
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
        jobs, missing = collect_images(inputs, exclude=out)
        if not jobs and not missing:
            raise fail(f"no image files found in {', '.join(escape(str(p)) for p in inputs)}")

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
        runner: Any = BatchDetector(pipeline, make_detector, workers=workers, out_dir=out)
        if engine == "ray":
            runner = _ray_runner(
                model,
                detector,
                face_threshold_of(face_threshold, threshold),
                uncertain,
                min_confidence,
                workers=workers,
                address=address,
                out=out,
            )
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
        except _ray_errors() as exc:
            raise fail(escape(str(exc))) from exc
        finally:
            if engine == "ray":
                runner.close()
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


def _ray_errors() -> tuple[type[Exception], ...]:
    """The Ray engine's error type, without importing Ray (nothing is caught when it is absent)."""
    from maskops.scale.ray_engine import RayEngineError

    return (RayEngineError,)


def _ray_runner(
    model: Path | None,
    detector: str,
    face_threshold: float | None,
    uncertain: bool,
    min_confidence: float | None,
    *,
    workers: int,
    address: str | None,
    out: Path | None,
) -> Any:
    """The Ray engine's runner (``run(jobs)`` like ``BatchDetector``), started; exit 2 when Ray is absent."""
    from rich.markup import escape

    from maskops.commands._facemask import default_model_path, fail
    from maskops.scale.ray_engine import PipelineSpec, RayDetector, RayEngineError

    spec = PipelineSpec(
        model=(model or default_model_path()).resolve(),
        detector=detector,
        face_threshold=face_threshold,
        uncertain=uncertain,
        min_confidence=min_confidence,
    )
    try:
        runner = RayDetector(spec, workers=workers, address=address, out_dir=out.resolve() if out else None)
        runner.start()
    except RayEngineError as exc:
        raise fail(escape(str(exc))) from exc
    return runner


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
