"""``maskops monitor drift`` and the store window behind it, on SQLite stores filled with records."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import typer
from monitor_helpers import make_record
from typer.testing import CliRunner

from maskops.commands import monitor as monitor_cmd
from maskops.monitor.db import open_store
from maskops.monitor.feedback import add_feedback
from maskops.monitor.reference import build_reference
from maskops.monitor.store import write_records
from maskops.monitor.window import load_window

NOW = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
LABELS = ("with_mask", "with_mask", "without_mask")


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(monitor_cmd.app, name="monitor")
    return app


def fill(url: str, n: int, seed: int, *, dim: float = 1.0, labels: tuple[str, ...] = LABELS) -> str:
    """``n`` one-face requests, a minute apart up to now, brightness uniform in [0.3, 0.7] x ``dim``."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        r = make_record(f"r{seed}-{i}", (labels[i % len(labels)],), created_at=NOW - timedelta(minutes=n - i))
        quality = {**r.quality, "brightness": float(rng.uniform(0.3, 0.7)) * dim}
        records.append(dataclasses.replace(r, quality=quality))
    engine = open_store(url)
    write_records(engine, records)
    engine.dispose()
    return url


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    """A profile built from a reference store's window: the names match what the command reads."""
    engine = open_store(fill(f"sqlite:///{tmp_path / 'ref.db'}", 300, seed=0))
    window = load_window(engine, last=10_000)
    engine.dispose()
    path = tmp_path / "reference.json"
    build_reference(window.numeric, window.categorical, accuracy=0.9).save(path)
    return path


def run(*args: str | Path) -> tuple[int, str]:
    out = CliRunner().invoke(cli(), ["monitor", "drift", *map(str, args)])
    return out.exit_code, out.output


def test_window_features(tmp_path: Path) -> None:
    engine = open_store(fill(f"sqlite:///{tmp_path / 'w.db'}", 30, seed=1))
    w = load_window(engine, last=10)
    assert (w.n_requests, w.n_faces) == (10, 10)
    assert w.end == NOW - timedelta(minutes=1)
    assert sorted(w.numeric) == [
        "brightness", "confidence", "contrast", "face_count", "face_score", "face_size", "saturation", "sharpness"
    ]  # fmt: skip
    np.testing.assert_allclose(w.numeric["face_size"], 40.0)
    np.testing.assert_allclose(w.numeric["face_count"], 1.0)
    assert w.probabilities.shape == (10, 3)
    assert w.probabilities[0].sum() == pytest.approx(1.0)
    assert sorted(set(w.categorical["label"])) == ["with_mask", "without_mask"]
    since = load_window(engine, since=NOW - timedelta(minutes=5, seconds=30))
    assert since.n_requests == 5
    with pytest.raises(ValueError, match="exactly one"):
        load_window(engine)
    engine.dispose()


def test_unshifted_window_exits_0(tmp_path: Path, reference: Path) -> None:
    url = fill(f"sqlite:///{tmp_path / 'cur.db'}", 120, seed=1)
    code, out = run("--reference", reference, "--db", url, "--last", "100")
    assert code == 0, out
    assert "window: 100 request(s), 100 face(s)" in out
    assert "no drift" in out
    assert "estimated accuracy 0.900 [0.841, 0.959]" in out  # 0.9 +- 1.96 * sqrt(100 * 0.09) / 100
    assert "(reference 0.900)" in out
    assert "measured accuracy" not in out


def test_feedback_gives_measured_accuracy_beside_the_estimate(tmp_path: Path, reference: Path) -> None:
    url = fill(f"sqlite:///{tmp_path / 'fb.db'}", 30, seed=1)
    engine = open_store(url)
    # r1-0 and r1-1 were served as with_mask, r1-2 as without_mask
    add_feedback(engine, request_id="r1-0", face_index=0, true_label="with_mask")
    add_feedback(engine, request_id="r1-1", face_index=0, true_label="without_mask")
    add_feedback(engine, request_id="r1-2", face_index=0, true_label="without_mask")
    add_feedback(engine, request_id="r1-3", face_index=0, true_label="not_a_face")
    window = load_window(engine, last=100)
    engine.dispose()
    assert sorted(t for t in window.true_labels if t) == [
        "not_a_face",
        "with_mask",
        "without_mask",
        "without_mask",
    ]
    assert sorted(window.label_ids().tolist()).count(-1) == 27
    code, out = run("--reference", reference, "--db", url, "--json")
    assert code == 0, out
    estimate = json.loads(out)["estimate"]
    assert estimate["n_labelled"] == 3
    assert estimate["measured_accuracy"] == pytest.approx(2 / 3)
    assert estimate["expected_accuracy_labelled"] == pytest.approx(0.9)
    _, text = run("--reference", reference, "--db", url)
    assert "measured accuracy 0.667 on 3 face(s) with feedback (estimated on them 0.900)" in text


def test_darkened_window_exits_1_json(tmp_path: Path, reference: Path) -> None:
    url = fill(f"sqlite:///{tmp_path / 'dark.db'}", 120, seed=1, dim=0.5)
    code, out = run("--reference", reference, "--db", url, "--since", "3h", "--json")
    assert code == 1, out
    data = json.loads(out)
    assert data["drifted"] == ["brightness"]
    assert data["window"]["requests"] == 120
    brightness = next(f for f in data["features"] if f["feature"] == "brightness")
    assert (brightness["test"], brightness["kind"], brightness["drifted"]) == ("ks", "numeric", True)
    assert brightness["score"] < 1e-10
    assert data["estimate"]["expected_accuracy"] == pytest.approx(0.9)


def test_class_mix_shift_exits_1(tmp_path: Path, reference: Path) -> None:
    url = fill(f"sqlite:///{tmp_path / 'mix.db'}", 100, seed=1, labels=("without_mask",))
    code, out = run("--reference", reference, "--db", url, "--json")
    assert code == 1, out
    assert "label" in json.loads(out)["drifted"]


def test_empty_store_is_not_enough_data(tmp_path: Path, reference: Path) -> None:
    code, out = run("--reference", reference, "--db", f"sqlite:///{tmp_path / 'empty.db'}", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["drifted"] == []
    assert data["estimate"] is None
    assert {f["note"].split(":")[0] for f in data["features"]} == {"not enough data"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "1h", "--last", "10"], "not both"),
        (["--since", "yesterday"], "expected an ISO date"),
        (["--test", "brightness"], "expected FEATURE=TEST"),
        (["--test", "brightness=kl"], "unknown drift test 'kl'; choose one of: chi_square, ks, mmd"),
    ],
)
def test_bad_windows_exit_2(tmp_path: Path, reference: Path, args: list[str], message: str) -> None:
    code, out = run("--reference", reference, "--db", f"sqlite:///{tmp_path / 'x.db'}", *args)
    assert code == 2
    assert message in out


def test_bad_reference_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    code, out = run("--reference", bad, "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 2
    assert "reference profile version None" in out


def test_window_on_sqlite_and_postgresql(store) -> None:  # type: ignore[no-untyped-def]
    write_records(
        store,
        [
            make_record("a", ("with_mask", "uncertain"), site="gate", created_at=NOW - timedelta(minutes=3)),
            make_record("b", ("without_mask",), site="gate", created_at=NOW - timedelta(minutes=2)),
            make_record("c", ("with_mask",), site="yard", created_at=NOW - timedelta(minutes=1)),
        ],
    )
    add_feedback(store, request_id="a", face_index=1, true_label="with_mask")
    last2 = load_window(store, last=2)
    assert (last2.n_requests, last2.n_faces) == (2, 2)
    assert sorted(last2.categorical["label"]) == ["with_mask", "without_mask"]
    gate = load_window(store, since=NOW - timedelta(hours=1), site="gate")
    assert (gate.n_requests, gate.n_faces) == (2, 3)
    np.testing.assert_allclose(sorted(gate.numeric["face_count"]), [1.0, 2.0])
    assert sorted(t or "" for t in gate.true_labels) == ["", "", "with_mask"]
    assert gate.label_ids().tolist().count(0) == 1


def test_test_choice_per_feature(tmp_path: Path, reference: Path) -> None:
    url = fill(f"sqlite:///{tmp_path / 'dark.db'}", 120, seed=1, dim=0.5)
    choices = ["--test", "brightness=psi", "--test", "contrast=wasserstein"]
    code, out = run("--reference", reference, "--db", url, "--json", *choices)
    assert code == 1, out
    tests = {f["feature"]: f["test"] for f in json.loads(out)["features"]}
    assert [tests[k] for k in ("brightness", "contrast", "label", "sharpness")] == [
        "psi",
        "wasserstein",
        "chi_square",
        "ks",
    ]
    code, out = run("--reference", reference, "--db", url, "--test", "label=ks")
    assert code == 2
    assert "drift test 'ks' is for numeric features; label is categorical" in out


def _with_embeddings(records: list, shift: float, seed: int) -> list:  # type: ignore[type-arg]
    from maskops.inference.projection import embedding_bytes

    rng = np.random.default_rng(seed)
    out = []
    for rec in records:
        faces = tuple(
            dataclasses.replace(f, embedding=embedding_bytes(rng.normal(shift, 1.0, 24))) for f in rec.faces
        )
        out.append(dataclasses.replace(rec, faces=faces))
    return out


@pytest.mark.parametrize(("shift", "drifted"), [(0.0, False), (1.5, True)])
def test_logged_embeddings_are_tested_against_the_reference(
    tmp_path: Path, shift: float, drifted: bool
) -> None:
    from maskops.monitor.window import drift_report

    rng = np.random.default_rng(0)
    profile = build_reference(embeddings=rng.normal(0.0, 1.0, (400, 24)))
    engine = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    records = [make_record(f"r{i}", ("with_mask", "without_mask")) for i in range(150)]
    write_records(engine, _with_embeddings(records, shift, seed=1))
    window = load_window(engine, last=1000)
    assert window.embeddings is not None and window.embeddings.shape == (300, 24)
    report = drift_report(engine, profile, last=1000)
    (emb,) = [f for f in report.features if f.feature == "embedding"]
    assert emb.result.drifted is drifted
    engine.dispose()


def test_embeddings_of_another_width_are_not_tested(tmp_path: Path) -> None:
    from maskops.monitor.window import drift_report

    profile = build_reference(embeddings=np.random.default_rng(0).normal(0.0, 1.0, (100, 16)))
    engine = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    write_records(engine, _with_embeddings([make_record(f"r{i}") for i in range(50)], 0.0, seed=1))
    report = drift_report(engine, profile, last=1000)
    assert [f.feature for f in report.features if f.feature == "embedding"] == []
    engine.dispose()
