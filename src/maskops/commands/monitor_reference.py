"""``maskops monitor reference``: the reference profile of a shipped model, from the task's val and test images."""

from __future__ import annotations

import time
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the command to the ``monitor`` group."""

    @app.command()
    def reference(
        task: str = typer.Option(..., "--task", help="Task name (facemask, malaria) or a task YAML path."),
        model: Path = typer.Option(
            None, "--model", dir_okay=False, help="Classifier .onnx (default: <models_dir>/<task>.onnx)."
        ),
        out: Path = typer.Option(
            None, "--out", dir_okay=False, help="Profile to write (default: <model>.reference.json)."
        ),
        detector: str = typer.Option(
            None, "--detector", help="Face detector (detection tasks; default: the served one)."
        ),
        limit: int = typer.Option(
            None, "--limit", min=1, help="At most this many images per source and split (quick runs)."
        ),
    ) -> None:
        """Run the served pipeline over the task's val and test images and write the model's
        reference profile: the distributions of the logged features and of the embedding, and the
        measured accuracy, for `maskops monitor drift --reference`."""
        from maskops.config import Settings, load_task
        from maskops.data.progress import track
        from maskops.inference.classifier import ModelLoadError
        from maskops.monitor.profile import write_model_reference

        settings = Settings()
        t0 = time.perf_counter()
        try:
            task_cfg = load_task(task, settings)
            model_path = model or settings.models_dir / f"{task_cfg.name}.onnx"
            path, profile = write_model_reference(
                task_cfg,
                model_path,
                out,
                settings=settings,
                detector=detector,
                limit=limit,
                progress=lambda items, n: track(items, n, "reference images"),
            )
        except (ValueError, ModelLoadError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        info = profile.info
        accuracy = "n/a" if profile.accuracy is None else f"{profile.accuracy:.4f}"
        typer.echo(
            f"wrote {path} ({path.stat().st_size / 1024:.1f} KB) in {time.perf_counter() - t0:.0f} s: "
            f"{info.get('images')} images, {info.get('faces')} faces, "
            f"embedding {'none' if profile.embedding is None else f'{profile.n_embedding} rows'}"
        )
        typer.echo(f"measured accuracy {accuracy} on {info.get('scored_faces')} ({info.get('accuracy_on')})")
