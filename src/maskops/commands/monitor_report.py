"""``maskops monitor report``: an Evidently report of a window (reference against current)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the command to the monitor command group."""
    app.command("report")(report)


def report(
    evidently: Path = typer.Option(
        ..., "--evidently", dir_okay=False, help="HTML file to write: Evidently's data drift report."
    ),
    since: str = typer.Option(
        None, "--since", help="Window: requests of a period back (1h, 24h) or since an ISO time."
    ),
    last: int = typer.Option(None, "--last", min=1, help="Window: the latest N faces (default 1000)."),
    site: str = typer.Option(None, "--site", help="Only this site or camera tag."),
    reference: Path = typer.Option(
        None,
        "--reference",
        dir_okay=False,
        help="Reference profile (JSON); default: <models_dir>/facemask.reference.json.",
    ),
    db: str = typer.Option(
        None, "--db", help="Store URL (default: MASKOPS_DATABASE_URL, or SQLite at <work_dir>/maskops.db)."
    ),
) -> None:
    """Write Evidently's data drift report of a store window against the reference profile (HTML).

    Needs the optional extra: pip install 'maskops[monitor-report]'."""
    from maskops.commands.monitor import _fail, cli_store
    from maskops.config import Settings
    from maskops.monitor.evidently_report import (
        EvidentlyMissingError,
        require_evidently,
        write_evidently_report,
    )
    from maskops.monitor.reference import ReferenceProfile
    from maskops.monitor.stats import parse_time

    try:
        require_evidently()
        if since is not None and last is not None:
            raise ValueError("give --since or --last, not both")
        t0 = parse_time(since, datetime.now(UTC).replace(tzinfo=None)) if since else None
        path = reference or Settings().models_dir / "facemask.reference.json"
        if not path.is_file():
            raise ValueError(
                f"reference profile {path} not found: give --reference PATH "
                "(a profile written by `maskops monitor reference` or `maskops train`)"
            )
        profile = ReferenceProfile.load(path)
    except (EvidentlyMissingError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    with cli_store(db) as engine:
        try:
            result = write_evidently_report(
                engine, profile, evidently, since=t0, last=None if t0 else (last or 1000), site=site
            )
        except ValueError as exc:
            raise _fail(exc) from None
    features = ", ".join(result.numeric + result.categorical)
    typer.echo(
        f"wrote {result.path}: {result.n_faces} face(s) in {result.n_requests} request(s) against "
        f"{result.n_reference} reference row(s); features: {features}"
    )
    typer.echo(
        f"Evidently calls drifted: {', '.join(result.drifted)}" if result.drifted else "Evidently: no drift"
    )
