"""``maskops monitor run``: all monitoring checks and alert rules, once or on an interval."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from maskops.commands.monitor import DB, cli_store

if TYPE_CHECKING:
    from maskops.monitor.runner import CheckResult


def register(app: typer.Typer) -> None:
    """Add the command to the monitor command group."""
    app.command("run")(run)


def run(
    config: Path = typer.Option(
        None, "--config", help="Monitoring config (default: monitor.yaml in MASKOPS_CONFIG_DIR, configs/)."
    ),
    once: bool = typer.Option(False, "--once", help="One check, then exit (1 when an alert is firing)."),
    db: str = DB,
) -> None:
    """Check the store's latest window against the reference and evaluate the alert rules.

    Every check is stored (monitor_checks, drift_results) and a rule that starts firing or resolves is
    notified on its channels. Without --once, checks repeat every `interval` of the config until
    interrupted. Exit codes: 0 ok, 1 an alert firing (--once), 2 a bad config or store."""
    from maskops.config import Settings
    from maskops.monitor.alert_config import MonitorConfigError, load_monitor_config
    from maskops.monitor.runner import MonitorLoop, config_reference, interval_seconds

    try:
        cfg = load_monitor_config(config or Settings().config_dir / "monitor.yaml")
    except MonitorConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    with cli_store(db) as engine:
        try:
            loop = MonitorLoop(engine, cfg, reference=config_reference(cfg))
        except MonitorConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        try:
            if once:
                result = loop.check_once()
                if result is None:
                    typer.echo("error: the check failed (see the log)", err=True)
                    raise typer.Exit(code=2)
                typer.echo(_summary(result))
                if result.firing:
                    raise typer.Exit(code=1)
                return
            typer.echo(f"checking every {interval_seconds(cfg):g} s (Ctrl-C to stop)")
            while True:
                started = time.monotonic()
                result = loop.check_once()
                if result is not None:
                    typer.echo(_summary(result))
                time.sleep(max(0.0, interval_seconds(cfg) - (time.monotonic() - started)))
        except KeyboardInterrupt:
            typer.echo("stopped")
        finally:
            loop.close()


def _summary(result: CheckResult) -> str:
    w = result.report.window
    lines = [
        f"check {result.check_id} at {result.now.isoformat(timespec='seconds')}Z: "
        f"{w.n_requests} request(s), {w.n_faces} face(s)"
        + ("" if result.reference else " (no reference profile: drift not tested)")
    ]
    if result.report.drifted and result.reference:
        lines.append(f"  drifted: {', '.join(result.report.drifted)}")
    for ev in result.evaluations:
        verdict = "no verdict" if ev.firing is None else ("FIRING" if ev.firing else "ok")
        key = f" [{ev.key}]" if ev.key else ""
        lines.append(f"  {ev.rule}{key}: {verdict}: {ev.message}")
    for note, outcome in zip(result.notifications, result.delivery, strict=False):
        sent = (
            ", ".join(f"{c} {'ok' if o.get('ok') else 'failed'}" for c, o in outcome.items()) or "no channel"
        )
        lines.append(f"  notified {note.state} {note.rule} (incident {note.incident_id[:8]}): {sent}")
    lines.append(
        "firing: " + ", ".join(f"{r}[{k}]" if k else r for r, k in result.firing)
        if result.firing
        else "no alert firing"
    )
    return "\n".join(lines)
