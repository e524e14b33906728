"""``maskops tune``: an Optuna study on the toy task, trials nested in MLflow, resumable, best config."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from maskops.cli import app
from maskops.config import Settings, TaskConfig, TuneConfig
from maskops.train.api import resolve_config
from maskops.train.tune import TuneError, check_space, tune_task

runner = CliRunner()

SPACE = {
    "lr": {"low": 1e-3, "high": 1e-2, "log": True},
    "input_size": [16, 24],
    "model": ["tiny_cnn"],
    "augment": {"hflip": {"low": 0.0, "high": 0.5}},
    "source_weights": {"toy": {"low": 0.5, "high": 1.0}},
    "epochs": 1,
}


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
                    "augment": {"jpeg": 0.0},
                },
                "tune": SPACE,
            }
        )
    )
    return path


def test_tune_command_runs_a_resumable_study(
    tmp_path: Path, toy_manifest: Path, mlflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{mlflow_db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MASKOPS_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("MASKOPS_NO_PROGRESS", "1")
    best = tmp_path / "experiments" / "toy_best.yaml"
    task = str(_task_file(tmp_path))
    args = ["tune", "--task", task, "--manifest", str(toy_manifest), "--best-config", str(best)]
    result = runner.invoke(app, [*args, "--trials", "2"])
    assert result.exit_code == 0, result.output
    assert "2 in the study (2 now): 2 complete" in result.output
    storage = f"sqlite:///{tmp_path / 'work' / 'optuna.db'}"
    assert (tmp_path / "work" / "optuna.db").is_file()

    # the same study name continues: one more trial, three in all
    result = runner.invoke(app, [*args, "--trials", "1"])
    assert result.exit_code == 0, result.output
    assert "3 in the study (1 now)" in result.output
    study = optuna.load_study(study_name="toy-tune", storage=storage)
    assert len(study.trials) == 3
    assert all(1e-3 <= t.params["lr"] <= 1e-2 for t in study.trials)
    assert all(t.params["input_size"] in (16, 24) for t in study.trials)
    # one epoch per trial (tune.epochs), reported to the pruner as the validation loss
    assert all(sorted(t.intermediate_values) == [1] for t in study.trials)

    # every trial is an MLflow run nested under the study's one parent run
    client = MlflowClient(tracking_uri=uri)
    parent = study.user_attrs["mlflow_parent_run_id"]
    children = [t.user_attrs["mlflow_run_id"] for t in study.trials]
    assert len(set(children)) == 3
    for run_id in children:
        run = client.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.info.status == "FINISHED"
    assert client.get_run(parent).data.tags["optuna_study"] == "toy-tune"

    # the best trial as an experiment config that `maskops train --config` reads
    written = yaml.safe_load(best.read_text())
    assert written["lr"] == pytest.approx(study.best_trial.params["lr"])
    assert written["source_weights"]["toy"] == pytest.approx(study.best_trial.params["source_weights.toy"])
    assert "epochs" not in written  # the trial budget is not the recipe
    base = TaskConfig.model_validate(yaml.safe_load(Path(task).read_text())).train
    cfg = resolve_config(base, best)
    assert cfg.lr == pytest.approx(written["lr"]) and cfg.augment["jpeg"] == 0.0
    assert "best trial" in result.output and str(best) in result.output


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def test_pruned_trial_stops_its_run(
    tmp_path: Path, toy_manifest: Path, toy_task: TaskConfig, mlflow_db: Path
) -> None:
    uri = f"sqlite:///{mlflow_db}"
    task = toy_task.model_copy(
        update={
            "tune": TuneConfig.model_validate({"lr": {"low": 1e-3, "high": 1e-2}}),
            "train": toy_task.train.model_copy(
                update={"model": "tiny_cnn", "input_size": 16, "batch_size": 8, "num_threads": 1}
            ),
        }
    )
    settings = Settings(work_dir=tmp_path / "work", config_dir=tmp_path / "configs")
    result = tune_task(
        task,
        settings,
        n_trials=1,
        epochs=3,
        manifest=toy_manifest,
        tracking_uri=uri,
        pruner=_AlwaysPrune(),
        study_name="pruned",
    )
    assert result.n_pruned == 1 and result.n_complete == 0 and result.best_config is None
    study = optuna.load_study(study_name="pruned", storage=result.storage)
    trial = study.trials[0]
    assert sorted(trial.intermediate_values) == [1]  # stopped after its first epoch
    run = MlflowClient(tracking_uri=uri).get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED"
    assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"model": ["nope"]}, "tune.model"),
        ({"augment": {"wobble": {"low": 0, "high": 1}}}, "tune.augment"),
        ({}, "searches nothing"),
        ({"input_size": [8]}, "tune.input_size"),
    ],
)
def test_bad_space_is_refused_before_training(space: dict, message: str) -> None:
    with pytest.raises(TuneError, match=message):
        check_space(TuneConfig.model_validate(space))


def test_task_without_tune_section(toy_task: TaskConfig, tmp_path: Path) -> None:
    with pytest.raises(TuneError, match="no tune: section"):
        tune_task(toy_task, Settings(work_dir=tmp_path), n_trials=1)
