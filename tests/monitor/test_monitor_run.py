"""``run_checks`` end to end on a store filled with records (SQLite and PostgreSQL): checks and drift
results stored, and a real HTTP receiver and a real SMTP server get exactly one firing and one resolved
message per incident; ``maskops monitor run`` and its exit codes."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
import yaml
from alert_receivers import free_port, http_receiver, smtp_receiver
from monitor_helpers import make_record
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from maskops.commands import monitor as monitor_cmd
from maskops.monitor.alert_config import parse_monitor_config
from maskops.monitor.alerts import retrain_requested
from maskops.monitor.db import open_store
from maskops.monitor.reference import ReferenceProfile, build_reference
from maskops.monitor.runner import ErrorRateTracker, run_checks
from maskops.monitor.schema import AlertEventRow, AlertStateRow, DriftResultRow, MonitorCheckRow
from maskops.monitor.store import write_records
from maskops.monitor.window import load_window

T = datetime(2026, 12, 3, 9, 0, 0)
LABELS = ("with_mask", "with_mask", "without_mask")


def records(
    n: int, end: datetime, seed: int, *, dim: float = 1.0, site: str | None = None, latency_ms: float = 20.0
) -> list[Any]:
    """``n`` one-face requests a minute apart up to ``end``, brightness uniform in [0.3, 0.7] x ``dim``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        r = make_record(
            f"r{seed}-{i}",
            (LABELS[i % 3],),
            created_at=end - timedelta(seconds=59 * (n - 1 - i)),
            site=site,
            latency_ms=latency_ms,
        )
        out.append(
            dataclasses.replace(r, quality={**r.quality, "brightness": float(rng.uniform(0.3, 0.7)) * dim})
        )
    return out


@pytest.fixture
def reference(tmp_path: Path) -> ReferenceProfile:
    engine = open_store(f"sqlite:///{tmp_path / 'ref.db'}")
    write_records(engine, records(300, T - timedelta(days=1), seed=0))
    window = load_window(engine, last=10_000)
    engine.dispose()
    return build_reference(window.numeric, window.categorical, accuracy=0.9)


def config(hook: str, smtp_port: int, **extra: Any) -> Any:
    return parse_monitor_config(
        {
            "interval": "1m",
            "window": {"since": "1h"},
            "delivery": {"retries": 1, "backoff_s": 0.01, "timeout_s": 30},
            "channels": {
                "log": {"kind": "log"},
                "hook": {"kind": "webhook", "url": hook, "format": "json"},
                "mail": {"kind": "email", "host": "127.0.0.1", "port": smtp_port, "starttls": False,
                         "sender": "maskops@example.org", "to": ["ops@example.org"]},
            },
            "rules": [
                {"name": "input-drift", "kind": "drift", "params": {"features": ["brightness"]},
                 "channels": ["log", "hook", "mail"], "cooldown": "10m", "retrain": True},
                {"name": "slow", "kind": "latency_p95", "params": {"max_ms": 500}, "channels": ["log"]},
            ],
            **extra,
        }
    )  # fmt: skip


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_one_firing_and_one_resolved_message_per_incident(store: Engine, reference: ReferenceProfile) -> None:
    with http_receiver() as hook, smtp_receiver() as mail:
        cfg = config(hook.url, mail.port)

        def check(at: datetime) -> Any:
            return run_checks(store, cfg, now=at, reference=reference)

        write_records(store, records(60, T, seed=1))
        first = check(T)
        assert first.report.window.n_requests == 60 and not first.report.drifted and first.notifications == []
        write_records(store, records(60, T + timedelta(hours=1), seed=2, dim=0.5))  # darkened hour
        darker = check(T + timedelta(hours=1))
        assert "brightness" in darker.report.drifted and darker.firing == [("input-drift", "")]
        with store.connect() as conn:
            assert retrain_requested(conn, cfg.rules) == [("input-drift", "")]
        (note,) = darker.notifications
        assert darker.delivery == [
            {c: {"ok": True, "attempts": 1, "error": None} for c in ("log", "hook", "mail")}
        ]
        assert check(T + timedelta(hours=1, minutes=5)).notifications == []  # still drifting: nothing new
        write_records(store, records(60, T + timedelta(hours=2, minutes=10), seed=3))  # back to normal
        back = check(T + timedelta(hours=2, minutes=10))
        assert [(n.state, n.incident_id) for n in back.notifications] == [("resolved", note.incident_id)]
        assert back.firing == []
        assert check(T + timedelta(hours=2, minutes=20)).notifications == []

    assert [(b["state"], b["incident_id"], b["rule"]) for b in hook.bodies] == [
        ("firing", note.incident_id, "input-drift"),
        ("resolved", note.incident_id, "input-drift"),
    ]
    assert hook.bodies[0]["retrain"] is True and "brightness" in hook.bodies[0]["message"]
    assert [m["Subject"] for m in mail.messages] == [
        "maskops [FIRING] input-drift (warning)",
        "maskops [RESOLVED] input-drift (warning)",
    ]
    assert {m["X-Maskops-Incident"] for m in mail.messages} == {note.incident_id}

    assert count(store, MonitorCheckRow) == 5
    with store.connect() as conn:
        checks = conn.execute(select(MonitorCheckRow).order_by(MonitorCheckRow.id)).all()
        assert [c.drifted for c in checks] == [False, True, True, False, False]
        assert checks[1].n_faces == 61 and checks[1].reference_accuracy == 0.9  # 60 + the one at the start
        assert checks[1].expected_accuracy is not None and checks[1].report["drifted"]
        drift = conn.execute(select(DriftResultRow).where(DriftResultRow.check_id == checks[1].id)).all()
        assert {d.feature: d.drifted for d in drift}["brightness"] is True
        events = conn.execute(select(AlertEventRow).order_by(AlertEventRow.id)).all()
        assert [(e.state, e.incident_id) for e in events] == [
            ("firing", note.incident_id),
            ("resolved", note.incident_id),
        ]
        assert all(e.delivery["hook"]["ok"] and e.delivery["mail"]["ok"] for e in events)
        states = {(s.rule, s.key): s for s in conn.execute(select(AlertStateRow)).all()}
        assert not states[("input-drift", "")].firing and states[("input-drift", "")].incident_id is None
        assert not states[("slow", "")].firing and states[("slow", "")].value == pytest.approx(20.0)


def test_a_channel_down_is_recorded_and_the_check_completes(
    store: Engine, reference: ReferenceProfile
) -> None:
    with http_receiver() as hook:
        cfg = config(hook.url, free_port())  # nothing listens on the SMTP port
        write_records(store, records(60, T, seed=2, dim=0.5))
        result = run_checks(store, cfg, now=T, reference=reference)
    (delivery,) = result.delivery
    assert delivery["hook"]["ok"] and delivery["log"]["ok"]
    assert not delivery["mail"]["ok"] and delivery["mail"]["attempts"] == 2
    assert len(hook.bodies) == 1
    with store.connect() as conn:
        (event,) = conn.execute(select(AlertEventRow)).all()
    assert event.delivery["mail"]["ok"] is False and "Connection" in event.delivery["mail"]["error"]


def test_without_a_reference_drift_is_skipped_and_the_rest_runs(
    store: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config("http://127.0.0.1:9/hook", free_port(), reference="/nonexistent/facemask.reference.json")
    cfg = cfg.model_copy(update={"rules": [*cfg.rules[1:], *parse_monitor_config({"rules": [
        {"name": "errors", "kind": "error_rate", "params": {"max_rate": 0.1, "min_requests": 10}},
        {"name": "quiet", "kind": "no_traffic", "params": {"minutes": 30}},
    ]}).rules]})  # fmt: skip
    write_records(store, records(30, T, seed=4, latency_ms=900.0))
    counts = iter([(100, 50), (200, 50)])
    tracker = ErrorRateTracker(lambda: next(counts), started_at=T - timedelta(hours=2))
    with caplog.at_level("WARNING"):
        result = run_checks(store, cfg, now=T + timedelta(hours=1), errors=tracker)
    assert "no reference profile at /nonexistent/facemask.reference.json" in caplog.text
    assert not result.reference
    verdicts = {e.rule: e.firing for e in result.evaluations}
    assert verdicts == {"slow": None, "errors": True, "quiet": True}  # the hour since holds no request
    # the next check's error counts are the difference since the previous sample
    result = run_checks(store, cfg, now=T + timedelta(hours=2, minutes=30), reference=None, errors=tracker)
    (errors,) = [e for e in result.evaluations if e.rule == "errors"]
    assert (errors.firing, errors.value) == (False, 0.0)
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DriftResultRow)).scalar_one() == 0
        assert [c.drifted for c in conn.execute(select(MonitorCheckRow)).all()] == [False, False]


# --- the command


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(monitor_cmd.app, name="monitor")
    return app


def invoke(*args: str | Path) -> tuple[int, str]:
    out = CliRunner().invoke(cli(), ["monitor", "run", *map(str, args)])
    return out.exit_code, out.output


def write_config(tmp_path: Path, minutes: float, reference: Path | None = None) -> Path:
    data: dict[str, Any] = {
        "window": {"last": 100},
        "channels": {"log": {"kind": "log"}},
        "rules": [
            {"name": "quiet", "kind": "no_traffic", "params": {"minutes": minutes}, "channels": ["log"]},
            {"name": "input-drift", "kind": "drift", "channels": ["log"]},
        ],
    }
    if reference is not None:
        data["reference"] = str(reference)
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_command_exit_codes(tmp_path: Path, reference: ReferenceProfile) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    url = f"sqlite:///{tmp_path / 'm.db'}"
    engine = open_store(url)
    write_records(engine, records(40, now - timedelta(minutes=20), seed=5))
    engine.dispose()
    ref = tmp_path / "ref.json"
    reference.save(ref)

    code, out = invoke("--once", "--config", write_config(tmp_path, 60, ref), "--db", url)
    assert code == 0, out
    assert "40 request(s), 40 face(s)" in out and "quiet: ok" in out and "no alert firing" in out

    code, out = invoke("--once", "--config", write_config(tmp_path, 5, ref), "--db", url)
    assert code == 1, out
    assert "quiet: FIRING" in out and "notified firing quiet" in out and "firing: quiet" in out

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"rules": [{"name": "x", "kind": "no_traffic", "params": {"minutes": -1}}]})
    )
    code, out = invoke("--once", "--config", bad, "--db", url)
    assert code == 2 and f"{bad}: rules[0].params.minutes: Input should be greater than 0" in out

    code, out = invoke("--once", "--config", write_config(tmp_path, 5, ref), "--db", "mysql://x/y")
    assert code == 2 and "error:" in out


# --- in the service


@pytest.fixture
def service(tmp_path: Path, linear_model: Path) -> Any:
    """``make(monitor_config=...)``: a started app (TestClient) on a SQLite store in tmp_path."""
    from fastapi.testclient import TestClient

    from maskops.serve.app import create_app
    from maskops.serve.settings import ServeSettings
    from maskops.types import ModelSpec

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(linear_model, models / "facemask.onnx")
    shutil.copy(ModelSpec.card_path(linear_model), models / "facemask.json")
    url = f"sqlite:///{tmp_path / 'work' / 'maskops.db'}"
    clients: list[Any] = []

    def make(**overrides: Any) -> Any:
        values = {"models_dir": models, "work_dir": tmp_path / "work", "workers": 1, "log_format": "text",
                  "warm_up": False, "database_url": url, **overrides}  # fmt: skip
        client = TestClient(create_app(ServeSettings(**values)), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    make.url = url  # type: ignore[attr-defined]
    yield make
    for c in clients:
        c.__exit__(None, None, None)


def wait_for(predicate: Any) -> None:
    """Poll until ``predicate()`` (the check runs in the app's own thread); fail after a generous while."""
    for _ in range(600):
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("the background check did not run")


def test_the_service_runs_checks_in_the_background(service: Any, tmp_path: Path) -> None:
    engine = open_store(service.url)
    write_records(engine, records(30, datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=2), seed=6))
    engine.dispose()
    with http_receiver() as hook:
        path = tmp_path / "monitor.yaml"
        path.write_text(yaml.safe_dump({
            "interval": "1h",
            "channels": {"hook": {"kind": "webhook", "url": hook.url}},
            "rules": [
                {"name": "quiet", "kind": "no_traffic", "params": {"minutes": 30}, "channels": ["hook"]},
                {"name": "errors", "kind": "error_rate", "params": {"max_rate": 0.5, "min_requests": 1}},
            ],
        }))  # fmt: skip
        client = service(monitor_config=path)
        monitor = client.app.state.monitor
        assert monitor is not None and monitor.interval_s == 3600
        wait_for(lambda: monitor.loop.checks >= 1)
        result = monitor.loop.last
        assert result is not None and result.firing == [("quiet", "")]
        assert {e.rule: e.firing for e in result.evaluations} == {"quiet": True, "errors": None}
        wait_for(lambda: len(hook.bodies) == 1)
        # the service's own answer counts feed the error-rate rule (a 4xx is an answer, not an error)
        assert (
            client.post("/v1/detect", files={"file": ("a.txt", b"not an image", "text/plain")}).status_code
            < 500
        )
        again = monitor.loop.check_once()
        assert again is not None
        (errors,) = [e for e in again.evaluations if e.rule == "errors"]
        assert (errors.firing, errors.value) == (False, 0.0) and "0 of 1 answers were 5xx" in errors.message
        client.__exit__(None, None, None)  # shutdown stops the task
        assert client.app.state.monitor is None and monitor._task is None
    assert [(b["rule"], b["state"]) for b in hook.bodies] == [("quiet", "firing")]
    engine = open_store(service.url)
    assert count(engine, MonitorCheckRow) == 2
    engine.dispose()


def test_the_service_counts_its_errors_for_the_error_rate() -> None:
    from maskops.monitor.runner import status_counts

    assert status_counts({"200": 90, "404": 5, "500": 3, "503": 2}) == (100, 5)


def test_monitoring_off_or_misconfigured_never_stops_the_service(
    service: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert service().app.state.monitor is None  # off by default
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"interval": "soon"}))
    with caplog.at_level("ERROR"):
        client = service(monitor_config=bad)
    assert client.app.state.monitor is None
    assert f"{bad}: interval: expected a duration" in caplog.text
    assert client.get("/health").status_code == 200


def test_two_checkers_on_one_store_notify_once(store: Engine, reference: ReferenceProfile) -> None:
    """The service and `maskops monitor run` on the same store: one notification per incident."""
    with http_receiver() as hook:
        cfg = config(hook.url, free_port())
        cfg = cfg.model_copy(update={"rules": [cfg.rules[0].model_copy(update={"channels": ["hook"]})]})
        write_records(store, records(60, T, seed=1))
        run_checks(store, cfg, now=T, reference=reference)  # the state rows exist, not firing
        write_records(store, records(60, T + timedelta(hours=1), seed=2, dim=0.5))
        errors: list[BaseException] = []

        def check() -> None:
            try:
                run_checks(store, cfg, now=T + timedelta(hours=1), reference=reference)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=check) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert [b["state"] for b in hook.bodies] == ["firing"]
    with store.connect() as conn:
        assert [e.state for e in conn.execute(select(AlertEventRow)).all()] == ["firing"]


def test_per_site_rules_on_the_store(store: Engine) -> None:
    write_records(store, records(30, T - timedelta(hours=3), seed=7, site="gate-2"))  # silent since
    write_records(store, records(30, T - timedelta(minutes=2), seed=8, site="gate-1"))
    write_records(store, records(30, T - timedelta(minutes=40), seed=9))  # untagged
    cfg = parse_monitor_config({"rules": [
        {"name": "quiet", "kind": "no_traffic", "params": {"minutes": 30, "per_site": True}},
        {"name": "comp", "kind": "compliance", "params": {"min_rate": 0.7, "min_faces": 10}},
    ]})  # fmt: skip
    result = run_checks(store, cfg, now=T, reference=None)
    verdicts = {
        (e.rule, e.key): (e.firing, None if e.value is None else round(e.value, 2))
        for e in result.evaluations
    }
    assert verdicts == {
        ("quiet", ""): (True, 40.0),
        ("quiet", "gate-1"): (False, 2.0),
        ("quiet", "gate-2"): (True, 180.0),
        ("comp", ""): (True, 0.67),  # 2 of 3 faces masked, under 0.7; gate-2 is out of the 1 h window
        ("comp", "gate-1"): (True, 0.67),
    }
    assert sorted(result.firing) == [("comp", ""), ("comp", "gate-1"), ("quiet", ""), ("quiet", "gate-2")]
