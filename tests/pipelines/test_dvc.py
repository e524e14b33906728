"""The project's ``dvc.yaml`` on a tiny generated task in a temporary git repository: ``dvc repro`` runs
every stage, a second one none, and ``dvc exp run -S train.lr=...`` reruns only the stages downstream
of training; ``dvc metrics diff`` and ``dvc plots diff`` compare the runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import write_dataset, write_task

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
STAGES = ["validate@toy-folder", "prepare", "train", "export", "evaluate", "release"]

pytestmark = pytest.mark.slow


def _repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    repo, shared = tmp_path / "repo", tmp_path / "shared" / "datasets"
    write_dataset(shared / "toy-folder")
    repo.mkdir()
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    for pkg in ("data", "train", "models", "export", "evaluate"):  # code the stages depend on
        shutil.copytree(
            ROOT / "src" / "maskops" / pkg,
            repo / "src" / "maskops" / pkg,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    write_task(repo / "toy.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.update(
        task={"name": "toy", "config": "toy.yaml"},
        data={"root": str(shared), "sources": ["toy-folder"]},
        prepare={"workers": 1},
        train={"lr": 0.003, "epochs": 1, "batch_size": 8, "input_size": 16, "seed": 0},
        export={"weights": "int8", "reference": False},
    )
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("/work/\n/mlflow.db\n/mlartifacts/\n")
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "MASKOPS_NO_PROGRESS": "1",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    env.pop("MASKOPS_WORK_DIR", None)
    env.pop("MASKOPS_DATA_DIR", None)
    _run(["git", "init", "-q"], repo, env)
    _run([str(VENV_BIN / "dvc"), "init", "-q"], repo, env)
    _commit(repo, env, "pipeline")
    return repo, env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], *, stdout_only: bool = False) -> str:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    print(f"{' '.join(Path(c).name if '/' in c else c for c in cmd)}: {time.perf_counter() - started:.1f} s")
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout if stdout_only else proc.stdout + proc.stderr


def _commit(repo: Path, env: dict[str, str], message: str) -> None:
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-q", "-m", message], repo, env)


def _ran(output: str) -> set[str]:
    return {s for s in STAGES if f"Running stage '{s}'" in output}


def test_repro_reruns_only_what_changed(tmp_path: Path) -> None:
    repo, env = _repo(tmp_path)
    dvc = str(VENV_BIN / "dvc")

    out = _run([dvc, "repro"], repo, env)
    assert _ran(out) == set(STAGES), out
    work = repo / "work" / "dvc"
    summary = json.loads((work / "toy" / "validate" / "toy-folder.json").read_text())
    assert summary["ok"] and summary["files"] == 3 * 14
    assert (work / "prepared" / "toy" / "manifest.csv").is_file()
    history = json.loads((work / "toy" / "train" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1.0]
    assert (work / "toy" / "model" / "model_int8.onnx").is_file()
    evaluation = json.loads((work / "toy" / "evaluate.json").read_text())
    assert evaluation["split"] == "test" and 0.0 <= evaluation["macro_f1"] <= 1.0
    release = json.loads((work / "toy" / "release.json").read_text())
    assert release["version"] == 1 and release["promoted"] is True  # no champion yet
    _commit(repo, env, "first run")

    # nothing changed: nothing runs (the figure is reported, not asserted)
    started = time.perf_counter()
    out = _run([dvc, "repro"], repo, env)
    noop_s = time.perf_counter() - started
    assert _ran(out) == set() and "up to date" in out, out
    print(f"dvc repro with nothing changed: {noop_s:.2f} s")
    assert "up to date" in _run([dvc, "status"], repo, env)

    # a training parameter: the data stages are kept, training and everything after it rerun
    out = _run([dvc, "exp", "run", "-S", "train.lr=0.006"], repo, env)
    assert _ran(out) == {"train", "export", "evaluate", "release"}, out
    assert "Stage 'prepare' didn't change, skipping" in out
    saved = yaml.safe_load((work / "toy" / "train" / "config.yaml").read_text())
    assert saved["train"]["lr"] == 0.006  # params.yaml reached the command
    assert json.loads((work / "toy" / "release.json").read_text())["version"] == 2

    diff = json.loads(_run([dvc, "metrics", "diff", "--all", "--json"], repo, env, stdout_only=True))
    metrics = diff["work/dvc/toy/evaluate.json"]
    assert metrics["macro_f1"]["old"] is not None and metrics["macro_f1"]["new"] is not None
    assert diff["work/dvc/toy/release.json"]["version"] == {"old": 1, "new": 2, "diff": 1}
    plots = json.loads(_run([dvc, "plots", "diff", "--json"], repo, env, stdout_only=True))
    plotted = plots.get("data", plots)  # DVC 3: {"data": {plot id: ...}, "errors": ...}
    assert any("history.json" in key for key in plotted), list(plotted)
    assert "work/dvc/toy/evaluate/confusion_matrix.png" in plotted, list(plotted)
