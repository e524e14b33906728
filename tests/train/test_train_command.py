"""``maskops train``: layered config, run folder, clear errors."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from maskops.cli import app

runner = CliRunner()


def _task_file(tmp_path: Path) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "toy",
                "kind": "classification",
                "classes": ["red", "green", "blue"],
                "sources": [],
                "train": {
                    "model": "tiny_cnn",
                    "input_size": 16,
                    "epochs": 5,
                    "batch_size": 8,
                    "num_threads": 1,
                },
            }
        )
    )
    return path


def test_train_command_layers_config_and_writes_run(
    tmp_path: Path, toy_manifest: Path, mlflow_db: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{mlflow_db}")
    cfg = tmp_path / "over.yaml"
    cfg.write_text("epochs: 1\nlr: 0.005\naugment: {jpeg: 0.0}\n")
    out = tmp_path / "run"
    args = ["train", "--task", str(_task_file(tmp_path)), "--config", str(cfg), "--batch-size", "4"]
    result = runner.invoke(app, [*args, "--manifest", str(toy_manifest), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output and "mlflow run" in result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 1  # from --config
    assert saved["train"]["lr"] == 0.005
    assert saved["train"]["batch_size"] == 4  # from the flag
    assert saved["train"]["input_size"] == 16  # from the task
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    # the release step: ONNX + parity, int8, registry version, promotion gate
    assert (out / "model.onnx").is_file() and (out / "model_int8.onnx").is_file()
    assert "parity on 11 val images" in result.output
    assert "registered     toy version" in result.output
    assert "promotion      promoted to champion" in result.output or "not promoted" in result.output


def test_train_command_errors(tmp_path: Path, toy_manifest: Path) -> None:
    result = runner.invoke(app, ["train", "--task", "nosuchtask"])
    assert result.exit_code == 2
    assert "unknown task 'nosuchtask'" in result.output
    task = str(_task_file(tmp_path))
    result = runner.invoke(app, ["train", "--task", task, "--model", "nope", "--manifest", str(toy_manifest)])
    assert result.exit_code == 2 and "unknown model 'nope'" in result.output
    result = runner.invoke(app, ["train", "--task", task, "--resume"])
    assert result.exit_code == 2 and "no run of 'toy' to resume" in result.output
