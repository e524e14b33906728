"""``maskops train``: fit a classifier for a task, tracked in MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        task: str = typer.Option(..., "--task", help="Task name (facemask, malaria) or a task YAML path."),
        config: Path = typer.Option(
            None, "--config", help="YAML of training options (overrides the task's)."
        ),
        epochs: int = typer.Option(None, "--epochs", help="Maximum epochs."),
        batch_size: int = typer.Option(None, "--batch-size", help="Batch size."),
        lr: float = typer.Option(None, "--lr", help="Peak learning rate."),
        input_size: int = typer.Option(None, "--input-size", help="Square input side in pixels."),
        model: str = typer.Option(None, "--model", help="Registered model name."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out (default: latest)."),
        out: Path = typer.Option(None, "--out", help="Run folder (default: <work>/runs/<task>/<time>)."),
        manifest: Path = typer.Option(None, "--manifest", help="Manifest CSV (default: the prepared one)."),
        release: bool = typer.Option(
            True, "--release/--no-release", help="Export ONNX, check parity, register and promote."
        ),
        weights: str = typer.Option(
            "int8",
            "--weights",
            help="Form of the shipped model: int8 (quantized), fp16 (half-size weights, fp32 compute), fp32.",
        ),
        promote: bool = typer.Option(True, "--promote/--no-promote", help="Run the promotion gate."),
        ship: bool = typer.Option(False, "--ship", help="Copy the shipped model to models/<task>.onnx."),
        reference: bool = typer.Option(
            True,
            "--reference/--no-reference",
            help="Write the reference profile (val and test images) beside the shipped model.",
        ),
    ) -> None:
        """Train, evaluate on val/test, calibrate and track a classifier."""
        from maskops.config import Settings, load_task
        from maskops.detect.pipeline import DEFAULT_THRESHOLDS
        from maskops.train.api import default_run_dir, latest_run_dir, resolve_config, train_task
        from maskops.train.data import default_manifest_path
        from maskops.train.loop import TrainingInterrupted
        from maskops.train.release import WEIGHT_FORMS, ReleaseResult
        from maskops.train.release import release as release_model

        settings = Settings()
        try:
            if weights not in WEIGHT_FORMS:
                raise ValueError(f"--weights must be one of {', '.join(WEIGHT_FORMS)}, got {weights!r}")
            task_cfg = load_task(task, settings)
            cfg = resolve_config(
                task_cfg.train,
                config,
                {
                    "epochs": epochs,
                    "batch_size": batch_size,
                    "lr": lr,
                    "input_size": input_size,
                    "model": model,
                },
            )
            if out is None and resume:
                out = latest_run_dir(settings, task_cfg.name)
                if out is None:
                    raise ValueError(f"--resume: no run of {task_cfg.name!r} to resume; pass --out")
            run_dir = out or default_run_dir(settings, task_cfg.name)
            released: list[ReleaseResult] = []
            manifest_path = manifest or default_manifest_path(settings.prepared_dir(task_cfg.name))

            def on_finish(res: Any, model: Any) -> None:
                released.append(
                    release_model(
                        res,
                        model,
                        manifest=manifest_path,
                        weights=weights,
                        promote=promote,
                        ship_dir=settings.models_dir if ship else None,
                        thresholds=dict(DEFAULT_THRESHOLDS) if task_cfg.kind == "detection" else None,
                        int8_float_nodes=cfg.int8_float_nodes,
                        reference_task=task_cfg if reference else None,
                    )
                )

            result = train_task(
                task_cfg,
                cfg,
                settings,
                out_dir=run_dir,
                manifest=manifest,
                resume=resume,
                on_finish=on_finish if release else None,
            )
        except TrainingInterrupted as exc:
            typer.echo(f"interrupted: {exc}", err=True)
            raise typer.Exit(130) from None
        except (ValueError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        m = result.test_metrics
        typer.echo(f"run folder     {result.out_dir}")
        typer.echo(f"best model     {result.best_checkpoint} (epoch {result.best_epoch}/{result.epochs})")
        typer.echo(f"mlflow run     {result.run_id}")
        typer.echo(
            f"test accuracy  {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  (T={result.spec.temperature:.3f})"
        )
        for name, pc in m["per_class"].items():
            typer.echo(
                f"  {name:<24} recall {pc['recall']:.4f}  precision {pc['precision']:.4f}  n={pc['support']}"
            )
        typer.echo(f"time           {result.seconds:.0f} s")
        for rel in released:
            typer.echo(
                f"onnx           {rel.fp32_path} (parity on {rel.parity['n']} val images: "
                f"max |diff| {rel.parity['max_abs_diff']:.1e})"
            )
            if rel.quantization:
                q = rel.quantization["test"]
                typer.echo(
                    f"{weights:<15}{rel.shipped_path}: test accuracy {q['fp32_accuracy']:.4f} -> "
                    f"{q[weights + '_accuracy']:.4f} ({q['accuracy_change']:+.4f})"
                )
            sm = rel.shipped_metrics["test"]
            typer.echo(f"shipped model  test accuracy {sm['accuracy']:.4f}  macro-F1 {sm['macro_f1']:.4f}")
            if rel.version is not None:
                typer.echo(f"registered     {result.spec.task} version {rel.version}")
            if rel.promotion is not None:
                verdict = "promoted to champion" if rel.promotion["promoted"] else "not promoted"
                typer.echo(f"promotion      {verdict}: {'; '.join(rel.promotion['reasons'])}")
            if rel.reference_path is not None:
                typer.echo(f"reference      {rel.reference_path}")
            if rel.copied_to is not None:
                typer.echo(f"shipped to     {rel.copied_to}")
