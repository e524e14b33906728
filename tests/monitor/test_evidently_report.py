"""``maskops monitor report --evidently``: Evidently's drift report of a small SQLite store."""

from __future__ import annotations

import builtins
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from monitor_helpers import make_record
from typer.testing import CliRunner

from maskops.commands import monitor as monitor_cmd
from maskops.monitor import evidently_report
from maskops.monitor.db import open_store
from maskops.monitor.reference import build_reference
from maskops.monitor.store import write_records
from maskops.monitor.window import load_window

NOW = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
LABELS = ("with_mask", "with_mask", "without_mask")
FEATURES = ("brightness", "contrast", "sharpness", "saturation", "face_count", "confidence", "face_size")


def fill(url: str, n: int, seed: int, *, dim: float = 1.0) -> None:
    """``n`` one-face requests a minute apart up to now, brightness uniform in [0.3, 0.7] x ``dim``."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        r = make_record(f"r{seed}-{i}", (LABELS[i % 3],), created_at=NOW - timedelta(minutes=n - i))
        quality = {**r.quality, "brightness": float(rng.uniform(0.3, 0.7)) * dim}
        records.append(dataclasses.replace(r, quality=quality))
    engine = open_store(url)
    write_records(engine, records)
    engine.dispose()


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path / 'ref.db'}"
    fill(url, 200, seed=0)
    engine = open_store(url)
    window = load_window(engine, last=10_000)
    engine.dispose()
    path = tmp_path / "reference.json"
    build_reference(window.numeric, window.categorical, accuracy=0.9).save(path)
    return path


def run(*args: str | Path) -> tuple[int, str]:
    app = typer.Typer()
    app.add_typer(monitor_cmd.app, name="monitor")
    out = CliRunner().invoke(app, ["monitor", "report", *map(str, args)])
    return out.exit_code, out.output


def test_report_written_with_the_feature_names(tmp_path: Path, reference: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cur.db'}"
    fill(url, 120, seed=1, dim=0.5)
    out = tmp_path / "report" / "drift.html"
    code, output = run("--evidently", out, "--reference", reference, "--db", url, "--last", 100)
    assert code == 0, output
    html = out.read_text()
    for name in (*FEATURES, "label"):
        assert name in html, name
    assert "100 face(s)" in output
    assert "brightness" in output.split("drifted:")[-1]  # halved brightness: Evidently sees it


def test_frames_line_up_with_the_profile(tmp_path: Path, reference: Path) -> None:
    from maskops.monitor.reference import ReferenceProfile

    url = f"sqlite:///{tmp_path / 'cur.db'}"
    fill(url, 30, seed=2)
    engine = open_store(url)
    window = load_window(engine, last=30)
    engine.dispose()
    profile = ReferenceProfile.load(reference)
    ref = evidently_report.reference_frame(profile)
    cur = evidently_report.window_frame(window)
    assert len(ref) == 200  # every feature's stand-in sample has the profile's 200 values
    assert sorted(ref["label"].value_counts().to_dict().items()) == sorted(
        profile.categorical["label"].items()
    )
    assert set(FEATURES) | {"label", "face_score"} <= set(cur.columns)
    assert cur["confidence"].notna().sum() == 30 and cur["brightness"].notna().sum() == 30


def test_class_mix_scaled_by_largest_remainder() -> None:
    rows = evidently_report._class_mix_rows({"a": 2, "b": 1}, 10)
    assert len(rows) == 10 and rows.count("a") == 7 and rows.count("b") == 3


def test_missing_evidently_names_the_extra(
    tmp_path: Path, reference: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_evidently(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "evidently" or name.startswith("evidently."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_evidently)
    code, output = run("--evidently", tmp_path / "x.html", "--reference", reference, "--db", "sqlite://")
    assert code == 2
    assert "maskops[monitor-report]" in output
    assert not (tmp_path / "x.html").exists()


def test_missing_reference_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    code, output = run("--evidently", tmp_path / "x.html", "--reference", missing, "--db", "sqlite://")
    assert code == 2
    assert str(missing) in output and "--reference" in output


def test_empty_window_is_a_clear_error(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "x.html"
    code, output = run(
        "--evidently", out, "--reference", reference, "--db", f"sqlite:///{tmp_path / 'empty.db'}"
    )
    assert code == 2
    assert "nothing to compare" in output and "0 face(s)" in output
    assert not out.exists()
