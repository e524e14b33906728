from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from monitor_helpers import make_record
from typer.testing import CliRunner

from maskops.commands import monitor as monitor_cmd
from maskops.commands import stats as stats_cmd
from maskops.monitor.db import open_store
from maskops.monitor.feedback import add_feedback
from maskops.monitor.prune import store_counts
from maskops.monitor.stats import parse_time, resolve_window
from maskops.monitor.store import write_records

NOW = datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(monitor_cmd.app, name="monitor")
    stats_cmd.register(app)
    return app


@pytest.fixture
def filled(store_url: str) -> str:
    engine = open_store(store_url)
    write_records(
        engine,
        [
            make_record("a", ("with_mask", "without_mask"), site="gate", created_at=NOW - timedelta(hours=2)),
            make_record("b", ("with_mask",), site="gate", created_at=NOW - timedelta(hours=1)),
            make_record("old", ("uncertain",), created_at=NOW - timedelta(days=40)),
        ],
    )
    add_feedback(engine, request_id="a", face_index=1, true_label="with_mask")
    engine.dispose()
    return store_url


def test_stats_csv_and_json(filled: str) -> None:
    runner = CliRunner()
    out = runner.invoke(cli(), ["stats", "--csv", "--db", filled])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["bucket_start"] for r in rows][-1] == "total"
    total = rows[-1]
    assert (total["requests"], total["faces_with_mask"], total["faces_without_mask"]) == ("2", "2", "1")
    assert float(total["compliance_rate"]) == pytest.approx(2 / 3, abs=1e-4)
    out = runner.invoke(cli(), ["stats", "--json", "--bucket", "day", "--db", filled])
    data = json.loads(out.stdout)
    assert data["bucket"] == "day"
    assert data["total"]["requests"] == 2  # "old" is outside the default 30 days
    out = runner.invoke(cli(), ["stats", "--db", filled, "--site", "gate"])
    assert out.exit_code == 0
    assert "gate" in out.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["stats", "--from", "yesterday"], "ISO date"),
        (["stats", "--bucket", "week"], "bucket"),
        (["stats", "--db", "nonsense"], "MASKOPS_DATABASE_URL"),
        (["monitor", "prune", "--older-than", "soon"], "period"),
    ],
)
def test_bad_input_exits_2(args: list[str], message: str, tmp_path: Path) -> None:
    if "--db" not in args:
        args = [*args, "--db", f"sqlite:///{tmp_path / 'm.db'}"]
    out = CliRunner().invoke(cli(), args)
    assert out.exit_code == 2
    assert message in out.output


def test_prune_and_accuracy(filled: str) -> None:
    runner = CliRunner()
    out = runner.invoke(cli(), ["monitor", "accuracy", "--db", filled])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["accuracy"] == 0.0
    out = runner.invoke(cli(), ["monitor", "prune", "--older-than", "30d", "--db", filled])
    assert out.exit_code == 0, out.output
    assert "deleted 1 request(s), 1 face(s)" in out.stdout
    engine = open_store(filled)
    assert store_counts(engine) == {"requests": 2, "faces": 3, "feedback": 1, "face_crops": 0}
    engine.dispose()


def test_migrate(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli(), ["monitor", "migrate", "--db", f"sqlite:///{tmp_path / 'new.db'}"])
    assert out.exit_code == 0, out.output
    assert "revision 0007" in out.stdout


def test_window_parsing() -> None:
    now = datetime(2026, 12, 3, 10, 30)
    assert parse_time("24h", now) == datetime(2026, 12, 2, 10, 30)
    assert parse_time("2026-12-01", now) == datetime(2026, 12, 1)
    assert parse_time("2026-12-01T09:00:00+01:00", now) == datetime(2026, 12, 1, 8)
    assert resolve_window(None, None, "hour", now) == (datetime(2026, 12, 2, 10, 30), now)
    assert resolve_window(None, None, "day", now) == (now - timedelta(days=30), now)
    assert resolve_window("7d", "2026-12-03", "day", now) == (now - timedelta(days=7), datetime(2026, 12, 3))


def test_malformed_database_url_stops_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    from maskops.cli import app

    monkeypatch.setenv("MASKOPS_DATABASE_URL", "postgres:/nohost")
    out = CliRunner().invoke(app, ["serve", "--port", "8999"])
    assert out.exit_code == 2
    assert "MASKOPS_DATABASE_URL" in out.output
