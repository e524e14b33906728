"""train_task end to end on a tiny generated data set: MLflow logging, resume, early stopping, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from maskops.config import Settings, TaskConfig, TrainConfig
from maskops.data.dataset import ImageDataset
from maskops.train.api import TrainResult, train_task
from maskops.train.checkpoint import CheckpointError, load_checkpoint, load_model
from maskops.train.data import DataError
from maskops.train.loop import TrainingInterrupted


@pytest.fixture
def uri(mlflow_db: Path) -> str:
    return f"sqlite:///{mlflow_db}"


def _train(task: TaskConfig, cfg: TrainConfig, manifest: Path, out: Path, uri: str, **kw: Any) -> TrainResult:
    return train_task(
        task, cfg, Settings(), out_dir=out, manifest=manifest, tracking_uri=uri, progress=False, **kw
    )


def test_train_logs_everything_to_mlflow(
    tmp_path: Path, toy_task: TaskConfig, toy_cfg: TrainConfig, toy_manifest: Path, uri: str
) -> None:
    seen: dict[str, Any] = {}

    def on_finish(result: TrainResult, model: torch.nn.Module) -> None:
        seen["result"], seen["training"] = result, model.training

    result = _train(toy_task, toy_cfg, toy_manifest, tmp_path / "run", uri, on_finish=on_finish, plots=True)

    assert seen["result"] is result and seen["training"] is False
    assert result.epochs == 2 and 1 <= result.best_epoch <= 2
    assert result.val_logits.shape == (11, 3) and result.test_logits.shape == (10, 3)
    assert result.spec.class_names == ["red", "green", "blue"]
    assert result.spec.input_size == (16, 16) and result.spec.architecture == "tiny_cnn"
    assert result.spec.temperature > 0 and result.spec.manifest_hash
    assert set(result.spec.metrics) == {"val", "test"}
    assert set(result.test_metrics["per_class"]) == {"red", "green", "blue"}

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == str(toy_cfg.lr)
    assert run.data.params["train.model"] == "tiny_cnn"
    assert run.data.params["n_train"] == "20"
    assert run.data.tags["task"] == "toy"
    assert run.data.tags["manifest_hash"] == result.spec.manifest_hash
    assert "git_commit" in run.data.tags
    history = client.get_metric_history(result.run_id, "val_macro_f1")
    assert sorted(m.step for m in history) == [1, 2]
    assert run.data.metrics["test.accuracy"] == pytest.approx(result.test_metrics["accuracy"])
    assert "test.per_class.blue.recall" in run.data.metrics
    # artifacts land in <db folder>/mlartifacts, not ./mlruns
    assert run.info.artifact_uri.startswith((Path(uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri())
    names = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "metrics.json", "plots"} <= names
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert "plots/confusion_test.png" in plots

    # the run folder holds the resolved config and checkpoints; best.pt rebuilds the calibrated model
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["batch_size"] == 8 and saved["task"] == "toy"
    model, spec = load_model(result.best_checkpoint)
    assert not model.training and spec.temperature == pytest.approx(result.spec.temperature)
    val = ImageDataset.from_rows(
        [r for r in _rows(toy_manifest) if r.split == "val"], toy_task.classes, spec, progress=False
    )
    with torch.no_grad():
        logits = model(torch.stack([val[i][0] for i in range(len(val))])).numpy()
    np.testing.assert_allclose(logits, result.val_logits, atol=1e-5)


def _rows(manifest: Path) -> list[Any]:
    from maskops.train.data import read_rows

    return read_rows(manifest)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model_state"]


def test_resume_after_interrupt_matches_uninterrupted_run(
    tmp_path: Path,
    toy_task: TaskConfig,
    toy_cfg: TrainConfig,
    toy_manifest: Path,
    monkeypatch: pytest.MonkeyPatch,
    uri: str,
) -> None:
    cfg = toy_cfg.model_copy(update={"epochs": 3})
    reference = _train(toy_task, cfg, toy_manifest, tmp_path / "ref", uri, plots=False)
    again = _train(toy_task, cfg, toy_manifest, tmp_path / "again", uri, plots=False)
    # fixed seeds: two runs are identical
    assert [h["train_loss"] for h in again.history] == [h["train_loss"] for h in reference.history]
    for k, v in _weights(reference.out_dir / "last.pt").items():
        assert torch.equal(v, _weights(again.out_dir / "last.pt")[k]), k

    # interrupt in the middle of epoch 2 (Ctrl-C arrives as KeyboardInterrupt inside the batch loop)
    original = ImageDataset.__getitem__
    calls = {"n": 0}

    def interrupting(self: ImageDataset, index: int) -> tuple[torch.Tensor, int]:
        if self.train:
            calls["n"] += 1
            if calls["n"] == 16 + 5:  # epoch 1 reads 16 items (2 full batches of 8), then 5 more
                raise KeyboardInterrupt
        return original(self, index)

    monkeypatch.setattr(ImageDataset, "__getitem__", interrupting)
    out = tmp_path / "interrupted"
    with pytest.raises(TrainingInterrupted, match="--resume") as info:
        _train(toy_task, cfg, toy_manifest, out, uri, plots=False)
    assert info.value.epochs_done == 1
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    run_id = (out / "mlflow_run_id").read_text().strip()
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(run_id).info.status == "KILLED"

    monkeypatch.setattr(ImageDataset, "__getitem__", original)
    resumed = _train(toy_task, cfg, toy_manifest, out, uri, resume=True, plots=False)
    assert resumed.run_id == run_id and resumed.epochs == 3
    # the training time counts epoch 1, done before the interrupt
    assert resumed.seconds >= sum(h["epoch_seconds"] for h in resumed.history)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run_id, "val_macro_f1")) == [1, 2, 3]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in reference.history]
    for k, v in _weights(reference.out_dir / "last.pt").items():
        assert torch.equal(v, _weights(out / "last.pt")[k]), k


def test_resuming_a_finished_run_releases_it_without_training_again(
    tmp_path: Path, toy_task: TaskConfig, toy_cfg: TrainConfig, toy_manifest: Path, uri: str
) -> None:
    # an experiment trained with --no-release is judged on val first; `--resume --release` then
    # exports the best epoch it already has
    out = tmp_path / "run"
    first = _train(toy_task, toy_cfg, toy_manifest, out, uri, plots=False)
    last_before = _weights(out / "last.pt")
    seen: dict[str, Any] = {}

    def on_finish(result: TrainResult, model: torch.nn.Module) -> None:
        seen["result"] = result
        seen["state"] = {k: v.clone() for k, v in model.state_dict().items()}

    again = _train(toy_task, toy_cfg, toy_manifest, out, uri, resume=True, on_finish=on_finish, plots=False)

    assert seen["result"] is again and again.run_id == first.run_id
    assert again.epochs == first.epochs and again.best_epoch == first.best_epoch
    assert len(again.history) == len(first.history)
    np.testing.assert_allclose(again.val_logits, first.val_logits, atol=1e-6)
    for k, v in _weights(out / "last.pt").items():
        assert torch.equal(v, last_before[k]), k  # no epoch was trained again
    for k, v in _weights(first.best_checkpoint).items():
        assert torch.equal(seen["state"][k], v), k  # the released model is the best epoch


def test_early_stopping_fires(
    tmp_path: Path, toy_task: TaskConfig, toy_cfg: TrainConfig, toy_manifest: Path, uri: str
) -> None:
    # a learning rate too small to learn: macro-F1 soon stops improving (only BatchNorm stats move)
    cfg = toy_cfg.model_copy(update={"epochs": 12, "patience": 2, "lr": 1e-12})
    result = _train(toy_task, cfg, toy_manifest, tmp_path / "run", uri, plots=False)
    assert result.stopped_early
    assert result.epochs < cfg.epochs
    assert result.epochs == result.best_epoch + cfg.patience
    assert len(result.history) == result.epochs
    f1 = [h["val_macro_f1"] for h in result.history]
    assert max(f1[result.best_epoch :]) <= f1[result.best_epoch - 1]
    assert load_checkpoint(result.best_checkpoint)["epoch"] == result.best_epoch


def test_select_on_loss_picks_the_lowest_validation_loss(
    tmp_path: Path, toy_task: TaskConfig, toy_cfg: TrainConfig, toy_manifest: Path, uri: str
) -> None:
    cfg = toy_cfg.model_copy(update={"epochs": 4, "patience": 4, "select_on": "loss"})
    result = _train(toy_task, cfg, toy_manifest, tmp_path / "run", uri, plots=False)
    losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == 1 + losses.index(min(losses))
    assert load_checkpoint(result.best_checkpoint)["epoch"] == result.best_epoch


def test_bad_inputs_give_clear_errors(
    tmp_path: Path,
    toy_task: TaskConfig,
    toy_cfg: TrainConfig,
    toy_manifest: Path,
    make_manifest: Callable[..., Path],
    uri: str,
) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"unknown model 'resnet9000'.*tiny_cnn"):
        _train(toy_task, toy_cfg.model_copy(update={"model": "resnet9000"}), toy_manifest, out, uri)
    with pytest.raises(ValueError, match=r"model_options \['widht'\].*tiny_cnn.*valid: width"):
        _train(toy_task, toy_cfg.model_copy(update={"model_options": {"widht": 8}}), toy_manifest, out, uri)
    with pytest.raises(ValueError, match=r"unknown augment option.*'flip'"):
        _train(toy_task, toy_cfg.model_copy(update={"augment": {"flip": 0.5}}), toy_manifest, out, uri)
    with pytest.raises(ValueError, match=r"no training row has source 'nope'"):
        _train(toy_task, toy_cfg.model_copy(update={"source_weights": {"nope": 0.5}}), toy_manifest, out, uri)

    empty = tmp_path / "empty.csv"
    empty.write_text("path,sha256,label,split,group,source,parent,box\n")
    with pytest.raises(DataError, match="no rows") as info:
        _train(toy_task, toy_cfg, empty, out, uri)
    assert str(empty) in str(info.value)

    with pytest.raises(DataError, match="manifest not found"):
        _train(toy_task, toy_cfg, tmp_path / "missing.csv", out, uri)

    no_blue = make_manifest(
        {"train": {"red": 2, "green": 2}, "val": {"red": 1, "blue": 1}, "test": {"red": 1, "blue": 1}}
    )
    with pytest.raises(DataError, match=r"class 'blue' has no samples in the 'train' split") as info:
        _train(toy_task, toy_cfg, no_blue, out, uri)
    assert str(no_blue) in str(info.value)

    no_val = make_manifest({"train": {"red": 1, "green": 1, "blue": 1}, "test": {"red": 1}}, name="nv")
    with pytest.raises(DataError, match="'val' split has no rows"):
        _train(toy_task, toy_cfg, no_val, out, uri)

    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        _train(toy_task, toy_cfg, toy_manifest, tmp_path / "fresh", uri, resume=True)

    not_ckpt = tmp_path / "x.pt"
    not_ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"x\.pt"):
        load_model(not_ckpt)


def test_decision_bias_is_baked_into_the_model(
    tmp_path: Path, toy_task: TaskConfig, toy_cfg: TrainConfig, toy_manifest: Path, uri: str
) -> None:
    from maskops.train.checkpoint import load_model

    cfg = toy_cfg.model_copy(update={"decision_bias": True, "epochs": 1})
    seen: dict[str, Any] = {}

    def on_finish(result: TrainResult, model: torch.nn.Module) -> None:
        seen["model"] = model

    result = _train(toy_task, cfg, toy_manifest, tmp_path / "run", uri, on_finish=on_finish)
    bias = result.spec.extra["decision_bias"]
    assert len(bias) == 3 and bias[0] == 0.0
    # the reported val logits are what the handed-over model (and best.pt) now computes
    model, spec = load_model(result.best_checkpoint)
    assert spec.extra["decision_bias"] == bias
    for m in (model, seen["model"]):
        head = [x for x in m.modules() if isinstance(x, torch.nn.Linear)][-1]
        assert head.bias is not None
    assert torch.equal(
        [x for x in model.modules() if isinstance(x, torch.nn.Linear)][-1].bias,
        [x for x in seen["model"].modules() if isinstance(x, torch.nn.Linear)][-1].bias,
    )


def test_weight_average_is_what_is_selected_and_resumes_exactly(
    tmp_path: Path,
    toy_task: TaskConfig,
    toy_cfg: TrainConfig,
    toy_manifest: Path,
    monkeypatch: pytest.MonkeyPatch,
    uri: str,
) -> None:
    cfg = toy_cfg.model_copy(update={"epochs": 2, "ema_decay": 0.9})
    straight = _train(toy_task, cfg, toy_manifest, tmp_path / "straight", uri, plots=False)
    last = load_checkpoint(straight.out_dir / "last.pt")
    assert last["ema"]["updates"] > 0
    # model_state is the average, train_state the trained weights: they differ
    assert any(not torch.equal(v, last["train_state"][k]) for k, v in last["model_state"].items())

    # Ctrl-C in epoch 2, then --resume: the same average and the same trained weights
    original = ImageDataset.__getitem__
    calls = {"n": 0}

    def interrupting(self: ImageDataset, index: int) -> tuple[torch.Tensor, int]:
        if self.train:
            calls["n"] += 1
            if calls["n"] == 16 + 5:
                raise KeyboardInterrupt
        return original(self, index)

    monkeypatch.setattr(ImageDataset, "__getitem__", interrupting)
    out = tmp_path / "interrupted"
    with pytest.raises(TrainingInterrupted):
        _train(toy_task, cfg, toy_manifest, out, uri, plots=False)
    monkeypatch.setattr(ImageDataset, "__getitem__", original)
    resumed = _train(toy_task, cfg, toy_manifest, out, uri, resume=True, plots=False)
    assert resumed.epochs == 2
    again = load_checkpoint(out / "last.pt")
    for key in ("model_state", "train_state"):
        for k, v in last[key].items():
            assert torch.equal(v, again[key][k]), (key, k)


def test_distillation_from_a_trained_teacher(
    tmp_path: Path, toy_task: TaskConfig, toy_cfg: TrainConfig, toy_manifest: Path, uri: str
) -> None:
    from maskops.config import DistillConfig

    teacher = _train(toy_task, toy_cfg.model_copy(update={"epochs": 1}), toy_manifest, tmp_path / "t", uri)
    plain_cfg = toy_cfg.model_copy(update={"epochs": 1, "seed": 3})
    plain = _train(toy_task, plain_cfg, toy_manifest, tmp_path / "plain", uri)
    distill = DistillConfig(teachers=[str(teacher.best_checkpoint)] * 2, alpha=1.0, temperature=2.0)
    student = _train(
        toy_task, plain_cfg.model_copy(update={"distill": distill}), toy_manifest, tmp_path / "student", uri
    )
    # the same seed and data: only the teacher's term changes the loss, hence the weights
    a, b = load_checkpoint(plain.best_checkpoint), load_checkpoint(student.best_checkpoint)
    assert a["history"][0]["train_loss"] != b["history"][0]["train_loss"]
    assert any(not torch.equal(v, b["model_state"][k]) for k, v in a["model_state"].items())
    assert b["config"]["distill"]["teachers"] == distill.teachers

    # a teacher with other classes (here another order) or colour mode, or a missing file: a clear
    # error before any training
    other = toy_task.model_copy(update={"classes": ["green", "red", "blue"]})
    with pytest.raises(ValueError, match=r"distill teacher .*best\.pt: classes \['red', 'green', 'blue'\]"):
        _train(other, plain_cfg.model_copy(update={"distill": distill}), toy_manifest, tmp_path / "x", uri)
    gray = toy_task.model_copy(update={"grayscale": True})
    with pytest.raises(
        ValueError, match=r"distill teacher .*best\.pt: color rgb differs from the student's gray"
    ):
        _train(gray, plain_cfg.model_copy(update={"distill": distill}), toy_manifest, tmp_path / "g", uri)
    missing = DistillConfig(teachers=[str(tmp_path / "nope.pt")])
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nope\.pt"):
        _train(toy_task, plain_cfg.model_copy(update={"distill": missing}), toy_manifest, tmp_path / "z", uri)


def test_distillation_from_a_teacher_of_another_input_size(
    tmp_path: Path, toy_task: TaskConfig, toy_cfg: TrainConfig, toy_manifest: Path, uri: str
) -> None:
    """A 16 px teacher distils into a 24 px student: it sees each batch resized to 16 px."""
    from maskops.config import DistillConfig
    from maskops.train.loop import load_teachers

    teacher = _train(toy_task, toy_cfg.model_copy(update={"epochs": 1}), toy_manifest, tmp_path / "t", uri)
    distill = DistillConfig(teachers=[str(teacher.best_checkpoint)], alpha=1.0, temperature=2.0)
    cfg = toy_cfg.model_copy(update={"epochs": 1, "input_size": 24})
    plain = _train(toy_task, cfg, toy_manifest, tmp_path / "plain", uri)
    student = _train(toy_task, cfg.model_copy(update={"distill": distill}), toy_manifest, tmp_path / "s", uri)
    assert student.spec.input_size == (24, 24)
    a, b = load_checkpoint(plain.best_checkpoint), load_checkpoint(student.best_checkpoint)
    assert a["history"][0]["train_loss"] != b["history"][0]["train_loss"]

    # the wrapped teacher gives on a 24 px batch what the bare teacher gives on its 16 px resize
    (wrapped,) = load_teachers(distill.teachers, student.spec)
    bare, _ = load_model(teacher.best_checkpoint)
    x = torch.rand(2, 3, 24, 24)
    small = torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), bare(small))


def test_card_lists_the_training_sources_and_their_licence() -> None:
    from maskops.config import load_task
    from maskops.train.api import training_sources

    sources = training_sources(load_task("facemask"))
    by_name = {s["name"]: s for s in sources}
    assert list(by_name) == ["facemask-voc", "facemask-ilc2021", "facemask-photos", "synthetic masks"]
    assert by_name["facemask-photos"]["splits"] == ["train"]
    assert by_name["facemask-ilc2021"]["splits_file"] == "splits.json"
    assert "research and evaluation" in by_name["facemask-ilc2021"]["licence"]
    assert "licence" not in by_name["facemask-voc"]
