"""``maskops models list|promote|rollback``: the MLflow Model Registry of a task."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer

app = typer.Typer(no_args_is_help=True)

TASK = typer.Option(..., "--task", help="Task name = registered model name (e.g. facemask).")
TRACKING_URI = typer.Option(
    None, "--tracking-uri", help="MLflow URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)."
)


def _fail(exc: Exception) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


@app.command("list")
def list_cmd(
    task: str = TASK,
    tracking_uri: str | None = TRACKING_URI,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the registered versions of a task with their aliases and figures."""
    from rich.console import Console
    from rich.table import Table

    from maskops.registry import RegistryError, list_versions

    try:
        rows = list_versions(task, tracking_uri=tracking_uri)
    except RegistryError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    table = Table(title=f"registered model {task}")
    for col in ("version", "aliases", "macro_f1", "accuracy", "created", "run_id"):
        table.add_column(col, justify="right" if col in ("version", "macro_f1", "accuracy") else "left")

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    for r in rows:
        table.add_row(
            str(r.version), ", ".join(r.aliases), fmt(r.macro_f1), fmt(r.accuracy), r.created, r.run_id
        )
    Console().print(table)


@app.command()
def promote(
    task: str = TASK,
    tolerance: float = typer.Option(0.02, min=0.0, help="Largest allowed drop of any class's recall."),
    tracking_uri: str | None = TRACKING_URI,
    as_json: bool = typer.Option(False, "--json", help="Print the decision as JSON."),
) -> None:
    """Promote the challenger to champion unless it is worse; exit 1 when refused."""
    from rich.console import Console

    from maskops.registry import RegistryError
    from maskops.registry import promote as promote_fn

    try:
        decision = promote_fn(task, tolerance=tolerance, tracking_uri=tracking_uri)
    except RegistryError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(asdict(decision), indent=2))
    else:
        console = Console(highlight=False)
        champ = "none" if decision.champion_version is None else f"v{decision.champion_version}"
        if decision.promoted:
            console.print(
                f"[green]promoted[/green] {task} v{decision.challenger_version} to champion (was {champ})"
            )
        else:
            console.print(
                f"[red]refused[/red]: {task} v{decision.challenger_version} stays challenger "
                f"(champion {champ})"
            )
        for reason in decision.reasons:
            console.print(f"  - {reason}", soft_wrap=True)
    if not decision.promoted:
        raise typer.Exit(code=1)


@app.command()
def rollback(task: str = TASK, tracking_uri: str | None = TRACKING_URI) -> None:
    """Point champion back at the previous champion."""
    from maskops.registry import RegistryError
    from maskops.registry import rollback as rollback_fn

    try:
        old, new = rollback_fn(task, tracking_uri=tracking_uri)
    except RegistryError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{task}: champion rolled back from v{old} to v{new}")


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="models", help="Model registry: list, promote, rollback.")
