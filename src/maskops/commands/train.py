"""``maskops train``: fit a classifier for a task, tracked in MLflow."""

from __future__ import annotations

from pathlib import Path

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
    ) -> None:
        """Train, evaluate on val/test, calibrate and track a classifier."""
        from maskops.config import Settings, load_task
        from maskops.train.api import default_run_dir, latest_run_dir, resolve_config, train_task
        from maskops.train.loop import TrainingInterrupted

        settings = Settings()
        try:
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
            result = train_task(task_cfg, cfg, settings, out_dir=run_dir, manifest=manifest, resume=resume)
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
