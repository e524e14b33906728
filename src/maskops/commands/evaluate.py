"""``maskops evaluate``: evaluate an exported classifier on a manifest split and write its report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from maskops.evaluate.run import EvaluationRun


def register(app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        task: str = typer.Option(..., "--task", help="Task name (configs/tasks/<task>.yaml)."),
        model: Path = typer.Option(
            None,
            "--model",
            help=(
                "The .onnx file (its model card .json beside it), or a registry alias or version of the "
                "task's registered model (champion, challenger, 3). --detection: default models/<task>.onnx."
            ),
        ),
        split: str = typer.Option("test", "--split", help="Manifest split to evaluate."),
        manifest: Path = typer.Option(
            None, "--manifest", help="Manifest CSV (default: <work_dir>/prepared/<task>/manifest.csv)."
        ),
        out: Path = typer.Option(None, "--out", help="Report folder (default: work/reports/<task>/<model>)."),
        fit_temperature_on: str = typer.Option(
            None,
            "--fit-temperature-on",
            help="Fit the temperature on this split (e.g. val) instead of the card's.",
        ),
        batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per ONNX Runtime call."),
        min_macro_f1: float = typer.Option(
            None, "--min-macro-f1", help="Exit with code 1 when macro-F1 is below this value."
        ),
        detection: bool = typer.Option(
            False, "--detection", help="Evaluate the detection pipeline (mAP) instead of the classifier."
        ),
        detector: str = typer.Option(
            None, "--detector", help="--detection: face detector name (default: the evaluation default)."
        ),
        scoring: str = typer.Option(
            "face_x_class", "--scoring", help="--detection: ranking score (face_x_class, class, face, sqrt)."
        ),
        multi_label: bool = typer.Option(
            False, "--multi-label", help="--detection: score every face once per class (YOLO-style)."
        ),
        face_threshold: float = typer.Option(
            None,
            "--face-threshold",
            min=0.0,
            max=1.0,
            help="--detection: minimum face-detector score (default 0.05: AP wants it low).",
        ),
        face_score: float = typer.Option(
            None, "--face-score", min=0.0, max=1.0, hidden=True, help="Deprecated name of --face-threshold."
        ),
        oracle: bool = typer.Option(
            False, "--oracle-labels", help="--detection: label faces from the ground truth (detector only)."
        ),
        dataset: str = typer.Option(
            None,
            "--dataset",
            help="--detection: the task's VOC source to evaluate on (facemask-voc, facemask-ilc2021, "
            "or all; default: the first).",
        ),
        limit: int = typer.Option(None, "--limit", min=1, help="--detection: first N images only."),
        min_map: float = typer.Option(
            None, "--min-map", help="--detection: exit with code 1 when mAP@0.5 is below this value."
        ),
    ) -> None:
        """Evaluate a classifier: metrics, calibration, slices, plots (report.md, report.json, PNGs)."""
        from rich.console import Console

        from maskops.config import Settings
        from maskops.evaluate.run import evaluate_classifier

        err = Console(stderr=True, soft_wrap=True)
        if detection:
            _evaluate_detection(
                task,
                model=model,
                split=split,
                out=out,
                detector=detector,
                scoring=scoring,
                multi_label=multi_label,
                face_score=_face_threshold(face_threshold, face_score),
                oracle=oracle,
                dataset=dataset,
                limit=limit,
                min_map=min_map,
            )
            return
        if model is None:
            err.print("[red]error:[/] --model is required (the classifier .onnx to evaluate)")
            raise typer.Exit(code=2)
        settings = Settings()
        model = _resolve_model(task, model, err)
        manifest = manifest or settings.prepared_dir(task) / "manifest.csv"
        out = out or settings.work_dir / "reports" / task / model.stem
        try:
            run = evaluate_classifier(
                model,
                manifest,
                task=task,
                split=split,
                out_dir=out,
                fit_temperature_on=fit_temperature_on,
                batch_size=batch_size,
            )
        except (FileNotFoundError, ValueError) as exc:
            # EvaluationError, ModelLoadError and bad cards are ValueErrors that name the file and field
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(code=2) from exc
        _print_summary(run, out)
        macro_f1 = float(run.report.metrics["macro_f1"])
        if min_macro_f1 is not None and macro_f1 < min_macro_f1:
            err.print(f"[red]macro-F1 {macro_f1:.4f} is below --min-macro-f1 {min_macro_f1:.4f}[/]")
            raise typer.Exit(code=1)


def _looks_like_alias(value: Path) -> bool:
    text = str(value)
    return not value.suffix and "/" not in text and "\\" not in text and not value.exists()


def _resolve_model(task: str, model: Path, err: Any) -> Path:
    """A model file as given, or the file a registry alias/version of ``task`` points at (downloaded)."""
    if not _looks_like_alias(model):
        return model
    from maskops.registry import RegistryError, download

    try:
        path = download(task, str(model))
    except RegistryError as exc:
        err.print(f"[red]error:[/] --model {model}: not a file, and not a registry alias: {exc}")
        raise typer.Exit(code=2) from exc
    err.print(f"--model {model}: registry {task} -> {path}")
    return path


def _face_threshold(face_threshold: float | None, face_score: float | None) -> float:
    """``--face-threshold``, or the deprecated ``--face-score`` (with a warning); default 0.05."""
    if face_score is not None:
        logging.getLogger(__name__).warning("--face-score is deprecated: use --face-threshold")
    value = face_threshold if face_threshold is not None else face_score
    return 0.05 if value is None else value


def _evaluate_detection(
    task: str,
    *,
    model: Path | None,
    split: str,
    out: Path | None,
    detector: str | None,
    scoring: str,
    multi_label: bool,
    face_score: float,
    oracle: bool,
    dataset: str | None,
    limit: int | None,
    min_map: float | None,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from maskops.config import Settings
    from maskops.evaluate.detection_run import DEFAULT_DETECTOR, evaluate_task_detection

    err = Console(stderr=True, soft_wrap=True)
    detector = detector or DEFAULT_DETECTOR
    name = "oracle" if oracle else (model.stem if model else task)
    where = f"-{dataset}" if dataset else ""
    out = out or Settings().work_dir / "reports" / task / f"detection-{detector}-{name}{where}-{split}"
    try:
        run = evaluate_task_detection(
            task,
            model_path=model,
            detector=detector,
            split=split,
            out_dir=out,
            scoring=scoring,
            multi_label=multi_label,
            face_score=face_score,
            oracle=oracle,
            dataset=dataset,
            limit=limit,
        )
    except (FileNotFoundError, ValueError) as exc:
        # DetectionDataError, DetectorError and ModelLoadError are ValueErrors naming the file and field
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=2) from exc
    ev = run.evaluation
    sources = ", ".join(run.info.get("sources", []))
    table = Table(title=f"{task} / {sources} {split} detection ({ev.num_images} images, detector {detector})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("mAP@0.5", f"{ev.map50:.4f}")
    table.add_row("mAP@0.5:0.95", f"{ev.map50_95:.4f}")
    for c, cname in enumerate(ev.class_names):
        table.add_row(f"AP@0.5 {cname}", f"{ev.ap50[c]:.4f} (n={int(ev.gt_counts[c])})")
    table.add_row("face recall (IoU 0.5)", f"{run.face_recall['all']['recall']:.4f}")
    table.add_row("ms / image (detect + classify)", f"{run.ms_per_image:.1f}")
    Console().print(table)
    Console().print(f"report: {out / 'report.md'}")
    if min_map is not None and ev.map50 < min_map:
        err.print(f"[red]mAP@0.5 {ev.map50:.4f} is below --min-map {min_map:.4f}[/]")
        raise typer.Exit(code=1)


def _print_summary(run: EvaluationRun, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    m = run.report.metrics
    console = Console()
    table = Table(title=f"{run.report.info.get('task')} / {run.report.info.get('split')} (n={m['n']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("accuracy", f"{m['accuracy']:.4f}")
    table.add_row("macro-F1", f"{m['macro_f1']:.4f}")
    table.add_row("balanced accuracy", f"{m['balanced_accuracy']:.4f}")
    for name, pc in m["per_class"].items():
        table.add_row(f"recall {name}", f"{pc['recall']:.4f} (n={pc['support']})")
    before = run.report.ece_before
    table.add_row("ECE before calibration", "n/a" if before is None else f"{before:.4f}")
    table.add_row(
        f"ECE after (T={run.temperature:.3f}, {run.temperature_source})", f"{run.report.ece_after:.4f}"
    )
    console.print(table)
    if run.skipped:
        console.print(
            f"[yellow]{len(run.skipped)} unreadable images skipped[/] (listed in {out / 'skipped.txt'})"
        )
    console.print(f"report: {out / 'report.md'}")
