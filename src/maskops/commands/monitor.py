"""``maskops monitor migrate|prune|accuracy|drift``: the prediction store's upkeep, measured accuracy
and drift against the reference profile."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from maskops.monitor.recorder import RunRecorder
    from maskops.monitor.window import DriftReport

app = typer.Typer(no_args_is_help=True)

DB = typer.Option(
    None, "--db", help="Store URL (default: MASKOPS_DATABASE_URL, or SQLite at <work_dir>/maskops.db)."
)


def open_for_cli(db: str | None) -> Engine:
    """The store at ``db`` (or the settings' one), migrated to the latest schema.

    Raises:
        ValueError: a malformed URL, or a database that does not answer.
    """
    from sqlalchemy.exc import OperationalError

    from maskops.config import Settings
    from maskops.monitor.db import open_store

    url = db or Settings().store_url()
    try:
        return open_store(url)
    except OperationalError as exc:
        raise ValueError(f"the prediction store does not answer: {str(exc).splitlines()[0]}") from None


def run_recorder(
    log_to: str | None, source: str, site: str | None, model: Path | None, detector: str
) -> RunRecorder | None:
    """The run's recorder for ``--log-to`` of ``detect``/``watch`` (None without it); a bad URL exits 2."""
    if not log_to:
        return None
    from maskops.commands._facemask import default_model_path, fail
    from maskops.config import Settings
    from maskops.monitor.recorder import RunRecorder

    try:
        return RunRecorder(
            log_to,
            Settings().work_dir,
            source,
            site=site,
            model_path=model or default_model_path(),
            detector=detector,
        )
    except ValueError as exc:
        raise fail(str(exc)) from None


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2)


@contextmanager
def cli_store(db: str | None) -> Iterator[Engine]:
    """``open_for_cli`` for a command: a store that cannot be opened exits 2; the engine is disposed."""
    try:
        engine = open_for_cli(db)
    except ValueError as exc:
        raise _fail(exc) from None
    try:
        yield engine
    finally:
        engine.dispose()


@app.command()
def migrate(db: str = DB) -> None:
    """Create or upgrade the store's schema to the latest revision."""
    from maskops.monitor.db import current_revision

    with cli_store(db) as engine:
        typer.echo(f"prediction store at revision {current_revision(engine)}")


@app.command()
def prune(
    older_than: str = typer.Option(..., "--older-than", help="Retention period: 30d, 12h, 2w, ..."),
    db: str = DB,
) -> None:
    """Delete stored requests older than the period, with their faces and feedback.

    The hourly and daily counts behind the business stats are kept (they hold no per-request data)."""
    from maskops.monitor.prune import parse_period
    from maskops.monitor.prune import prune as prune_store

    try:
        period = parse_period(older_than)
    except ValueError as exc:
        raise _fail(exc) from None
    with cli_store(db) as engine:
        result = prune_store(engine, period)
    typer.echo(
        f"deleted {result.requests} request(s), {result.faces} face(s) and {result.feedback} feedback "
        f"answer(s) served before {result.cutoff.isoformat(timespec='seconds')}Z"
    )


@app.command()
def accuracy(
    start: str = typer.Option(
        None, "--from", help="Window start: ISO date/time (UTC) or a period back (7d)."
    ),
    end: str = typer.Option(None, "--to", help="Window end (default: now)."),
    site: str = typer.Option(None, "--site", help="Only this site or camera tag."),
    db: str = DB,
) -> None:
    """Accuracy measured on the faces that got feedback (JSON)."""
    from maskops.monitor.feedback import measured_accuracy
    from maskops.monitor.stats import parse_time

    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        t0 = parse_time(start, now) if start else None
        t1 = parse_time(end, now) if end else None
    except ValueError as exc:
        raise _fail(exc) from None
    with cli_store(db) as engine:
        report = measured_accuracy(engine, t0, t1, site=site)
    typer.echo(json.dumps(asdict(report), indent=2))


@app.command()
def replay(
    source: Path = typer.Argument(..., help="Image file or folder (searched recursively)."),
    url: str = typer.Option(
        None, "--url", help="The running service (e.g. http://127.0.0.1:8000); default: an app in process."
    ),
    rate: float = typer.Option(
        None, "--rate", min=0.01, help="Images per second (default: as fast as answered)."
    ),
    transform: str = typer.Option(
        None,
        "--transform",
        help="Changes on the way, in order: darken=0.5,blur=2,noise=8,scale=0.5,desaturate=1.",
    ),
    limit: int = typer.Option(None, "--limit", min=1, help="Stop after this many images."),
    loop: bool = typer.Option(False, "--loop", help="Start over at the end of the folder (until --limit)."),
    site: str = typer.Option(None, "--site", help="Site tag sent with every image (X-Site)."),
    api_key: str = typer.Option(None, "--api-key", envvar="MASKOPS_API_KEY", help="API key of the service."),
) -> None:
    """Send a folder of images through the service to simulate traffic (every answer is recorded)."""
    from maskops.monitor.replay import http_sender, image_files, parse_transforms
    from maskops.monitor.replay import replay as run_replay

    try:
        transforms = parse_transforms(transform)
    except ValueError as exc:
        raise _fail(exc) from None
    files = image_files(source)
    if not files:
        raise _fail(ValueError(f"no image files found in {source}"))
    if url:
        summary = run_replay(
            files,
            http_sender(url, site=site, api_key=api_key),
            rate=rate,
            transforms=transforms,
            limit=limit,
            loop=loop,
        )
    else:
        summary = _replay_in_process(files, rate, transforms, limit, loop, site)
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(summary.statuses.items()))
    typer.echo(
        f"sent {summary.sent} image(s) in {summary.elapsed_s:.1f} s ({summary.rate:.1f}/s); "
        f"answered 200: {summary.ok}; statuses {statuses or '-'}"
    )
    for line in summary.unreadable:
        typer.echo(f"skipped: {line}", err=True)
    if summary.ok < summary.sent:
        raise typer.Exit(code=1)


def _replay_in_process(files, rate, transforms, limit, loop, site):  # type: ignore[no-untyped-def]
    """The service as an app in this process (``fastapi.testclient``: needs httpx, the dev extra)."""
    try:
        from fastapi.testclient import TestClient
    except ImportError as exc:  # pragma: no cover - the dev extra installs httpx
        raise _fail(
            ValueError(f"replay in process needs httpx (pip install -e '.[dev]'), or use --url: {exc}")
        ) from None
    from maskops.monitor.replay import replay as run_replay
    from maskops.serve.app import create_app

    headers = {"X-Site": site} if site else {}
    with TestClient(create_app(), raise_server_exceptions=False) as client:

        def send(data: bytes, name: str) -> int:
            r = client.post("/v1/detect", files={"file": (name, data, "image/jpeg")}, headers=headers)
            return r.status_code

        return run_replay(files, send, rate=rate, transforms=transforms, limit=limit, loop=loop)


@app.command("export-reviewed")
def export_reviewed(
    out: Path = typer.Option(
        ..., "--out", help="Folder to write: one sub-folder per class (a folder source)."
    ),
    db: str = DB,
) -> None:
    """Write the reviewed hard-case crops as <out>/<class>/<request>_<face>.jpg for the next training run.

    Add the folder to a task config as a source (kind: folder); `maskops data validate` checks it."""
    from maskops.monitor.review import export_reviewed as export

    with cli_store(db) as engine:
        counts = export(engine, out)
    total = sum(counts.values())
    per_class = ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
    typer.echo(f"wrote {total} reviewed crop(s) to {out} ({per_class})")


@app.command()
def drift(
    reference: Path = typer.Option(
        ..., "--reference", exists=True, dir_okay=False, help="Reference profile (JSON) to test against."
    ),
    since: str = typer.Option(
        None, "--since", help="Window: requests of a period back (1h, 24h) or since an ISO time."
    ),
    last: int = typer.Option(None, "--last", min=1, help="Window: the latest N faces (default 1000)."),
    site: str = typer.Option(None, "--site", help="Only this site or camera tag."),
    test: list[str] = typer.Option(
        [],
        "--test",
        metavar="FEATURE=TEST",
        help="A test for a feature, e.g. brightness=psi (repeatable; default: by feature kind).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    db: str = DB,
) -> None:
    """Test a window of the store against the reference profile (exit 1 when a feature drifted)."""
    from maskops.monitor.reference import ReferenceProfile
    from maskops.monitor.stats import parse_time
    from maskops.monitor.window import drift_report, parse_test_choices

    try:
        tests = parse_test_choices(test)
        if since is not None and last is not None:
            raise ValueError("give --since or --last, not both")
        t0 = parse_time(since, datetime.now(UTC).replace(tzinfo=None)) if since else None
        profile = ReferenceProfile.load(reference)
    except ValueError as exc:
        raise _fail(exc) from None
    with cli_store(db) as engine:
        try:
            report = drift_report(
                engine, profile, since=t0, last=None if t0 else (last or 1000), site=site, tests=tests
            )
        except ValueError as exc:
            raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        typer.echo(_drift_text(report))
    if report.drifted:
        raise typer.Exit(code=1)


def _drift_text(report: DriftReport) -> str:
    w, lines = report.window, []
    lines.append(f"window: {w.n_requests} request(s), {w.n_faces} face(s)")
    for f in report.features:
        r = f.result
        verdict = "DRIFT" if r.drifted else ("no data" if r.score is None else "ok")
        score = "-" if r.score is None else f"{r.score:.4g}"
        lines.append(
            f"  {f.feature:<12} {r.test:<12} score {score:<10} threshold {r.threshold:<9.3g} "
            f"({r.threshold_source}) {verdict}"
        )
    e = report.estimate
    if e is not None and e.expected_accuracy is not None:
        lines.append(
            f"estimated accuracy {e.expected_accuracy:.3f} [{e.accuracy_low:.3f}, {e.accuracy_high:.3f}]"
            + ("" if report.reference_accuracy is None else f" (reference {report.reference_accuracy:.3f})")
        )
    if e is not None and e.measured_accuracy is not None:
        lines.append(
            f"measured accuracy {e.measured_accuracy:.3f} on {e.n_labelled} face(s) with feedback "
            f"(estimated on them {e.expected_accuracy_labelled:.3f})"
        )
    lines.append(f"drifted: {', '.join(report.drifted)}" if report.drifted else "no drift")
    return "\n".join(lines)


# commands kept in their own modules
from maskops.commands import monitor_reference, monitor_report, monitor_run  # noqa: E402

for _module in (monitor_reference, monitor_report, monitor_run):
    _module.register(app)
