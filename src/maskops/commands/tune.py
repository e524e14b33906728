"""``maskops tune``: hyperparameter search over the task's ``tune:`` space (Optuna, nested MLflow runs)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def tune(
        task: str = typer.Option(..., "--task", help="Task name or task YAML path (its tune: section)."),
        trials: int = typer.Option(..., "--trials", min=1, help="Trials to run now (a study continues)."),
        timeout: float = typer.Option(None, "--timeout", min=0, help="Stop starting trials after S seconds."),
        study: str = typer.Option(None, "--study", help="Optuna study name (default: <task>-tune)."),
        storage: str = typer.Option(
            None, "--storage", help="Optuna storage URL (default: sqlite:///<work>/optuna.db)."
        ),
        config: Path = typer.Option(None, "--config", help="YAML of training options the trials start from."),
        epochs: int = typer.Option(None, "--epochs", min=1, help="Epochs per trial (default: tune.epochs)."),
        manifest: Path = typer.Option(None, "--manifest", help="Manifest CSV (default: the prepared one)."),
        out: Path = typer.Option(None, "--out", help="Trial run folders (default: <work>/tune/<study>)."),
        best_config: Path = typer.Option(
            None, "--best-config", help="Best trial's config (default: configs/experiments/<study>.yaml)."
        ),
        seed: int = typer.Option(0, "--seed", help="Sampler seed."),
    ) -> None:
        """Search training settings with Optuna (TPE, pruned on val loss); write the best as a config."""
        from maskops.config import Settings, load_task
        from maskops.train.api import resolve_config
        from maskops.train.tune import tune_task

        settings = Settings()
        try:
            task_cfg = load_task(task, settings)
            base = resolve_config(task_cfg.train, config)
            result = tune_task(
                task_cfg,
                settings,
                n_trials=trials,
                timeout=timeout,
                base=base,
                study_name=study,
                storage=storage,
                manifest=manifest,
                out_dir=out,
                best_config=best_config,
                epochs=epochs,
                seed=seed,
            )
        except (ValueError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"study          {result.study_name} ({result.storage})")
        typer.echo(
            f"trials         {result.n_trials} in the study ({result.n_new} now): "
            f"{result.n_complete} complete, {result.n_pruned} pruned"
        )
        typer.echo(f"mlflow run     {result.parent_run_id} (trials nested under it)")
        if result.best_number is None:
            typer.echo("best trial     none finished")
            raise typer.Exit(1)
        typer.echo(
            f"best trial     {result.best_number}: val_loss {result.best_value:.4f} {result.best_params}"
        )
        typer.echo(f"best config    {result.best_config}")
