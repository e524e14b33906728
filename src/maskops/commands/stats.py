"""``maskops stats``: business stats from the prediction store (the figures of ``/v1/stats``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer

from maskops.commands.monitor import DB, open_for_cli


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)


def stats(
    start: str = typer.Option(
        None, "--from", help="Window start: ISO date/time (UTC) or a period back from now (24h, 7d)."
    ),
    end: str = typer.Option(None, "--to", help="Window end (default: now)."),
    site: str = typer.Option(None, "--site", help="Only this site or camera tag."),
    bucket: str = typer.Option("hour", "--bucket", help="hour or day (UTC)."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    db: str = DB,
) -> None:
    """Requests, faces per class, compliance rate and p50/p95 latency by bucket and site.

    The window defaults to the last 24 hours (hour buckets) or 30 days (day buckets)."""
    from rich.console import Console
    from rich.table import Table

    from maskops.monitor.stats import FACE_COLUMNS, business_stats, report_csv, report_dict, resolve_window

    try:
        t0, t1 = resolve_window(start, end, bucket, datetime.now(UTC))
        engine = open_for_cli(db)
        try:
            report = business_stats(engine, t0, t1, site=site, bucket=bucket)  # type: ignore[arg-type]
        finally:
            engine.dispose()
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if as_csv:
        typer.echo(report_csv(report), nl=False)
        return
    if as_json:
        typer.echo(json.dumps(report_dict(report), indent=2))
        return
    table = Table(title=f"{report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC, by {bucket}")
    for col in ("bucket", "site", "requests", *FACE_COLUMNS, "compliance", "p50 ms", "p95 ms"):
        table.add_column(col, justify="left" if col in ("bucket", "site") else "right")
    for r in [*report.rows, *([report.total] if report.total else [])]:
        table.add_row(
            "total" if r.bucket_start is None else f"{r.bucket_start:%Y-%m-%d %H:%M}",
            r.site or "-",
            str(r.requests),
            *(str(r.faces.get(c, 0)) for c in FACE_COLUMNS),
            "-" if r.compliance_rate is None else f"{r.compliance_rate:.1%}",
            "-" if r.p50_ms is None else f"{r.p50_ms:.1f}",
            "-" if r.p95_ms is None else f"{r.p95_ms:.1f}",
        )
    Console().print(table)
