"""Distillation teachers named as runs, and the experiment training overlays resolving on their task."""

from __future__ import annotations

from pathlib import Path

import pytest

from maskops.config import Settings, load_task
from maskops.train.api import resolve_config, resolve_teachers
from maskops.train.checkpoint import CheckpointError

EXPERIMENTS = Path(__file__).resolve().parents[2] / "configs" / "experiments"


def test_teachers_resolve_under_the_task_runs(tmp_path: Path) -> None:
    settings = Settings(work_dir=tmp_path / "work")
    runs = tmp_path / "work" / "runs" / "facemask"
    for name in ("pad224", "seed1"):
        (runs / name).mkdir(parents=True)
        (runs / name / "best.pt").write_bytes(b"x")
    (runs / "seed1" / "last.pt").write_bytes(b"x")
    absolute = tmp_path / "elsewhere.pt"
    got = resolve_teachers(["pad224", "seed1/last.pt", str(absolute)], settings, "facemask")
    assert got == [runs / "pad224" / "best.pt", runs / "seed1" / "last.pt", absolute]


def test_a_missing_teacher_run_names_the_path(tmp_path: Path) -> None:
    settings = Settings(work_dir=tmp_path / "work")
    expected = tmp_path / "work" / "runs" / "facemask" / "kd9"
    with pytest.raises(CheckpointError, match=rf"distill teacher 'kd9': no checkpoint at {expected}"):
        resolve_teachers(["kd9"], settings, "facemask")


@pytest.mark.parametrize(
    "path",
    sorted(p for p in EXPERIMENTS.glob("*.yaml") if not p.name.endswith(".task.yaml")),
    ids=lambda p: p.name,
)
def test_experiment_training_overlays_resolve(path: Path) -> None:
    cfg = resolve_config(load_task("facemask").train, path)
    assert cfg.input_size >= 16
