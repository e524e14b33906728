"""Loop pieces: LR schedules, config layering, tracking helpers."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from maskops.config import TrainConfig
from maskops.train.api import resolve_config
from maskops.train.loop import FitResult, make_scheduler
from maskops.train.tracking import artifact_location, flatten, numeric_metrics, resolve_tracking_uri


def _lrs(schedule: str, total: int, warmup: int) -> list[float]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, schedule, total, warmup, 1.0)  # type: ignore[arg-type]
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_warms_up_then_decays() -> None:
    lrs = _lrs("cosine", 20, 4)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:]))
    assert lrs[-1] < 0.05


def test_onecycle_peaks_in_the_middle() -> None:
    lrs = _lrs("onecycle", 20, 5)
    peak = max(range(20), key=lambda i: lrs[i])
    assert 2 <= peak <= 7 and lrs[peak] == pytest.approx(1.0, rel=0.05)
    assert lrs[0] < 0.2 and lrs[-1] < 0.01
    with pytest.raises(ValueError, match="unknown LR schedule"):
        _lrs("step", 5, 1)


def test_config_layers_task_then_yaml_then_flags(tmp_path: Path) -> None:
    base = TrainConfig(epochs=12, lr=1e-3, batch_size=64, augment={"hflip": 0.5})
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: 3\n  lr: 0.01\n  augment: {jpeg: 0.0}\n")
    cfg = resolve_config(base, f, {"lr": 0.02, "batch_size": None})
    assert (cfg.epochs, cfg.lr, cfg.batch_size) == (3, 0.02, 64)
    assert cfg.augment == {"hflip": 0.5, "jpeg": 0.0}
    f.write_text("epochs: 0\n")
    with pytest.raises(ValueError, match=r"c\.yaml: invalid training config"):
        resolve_config(base, f)
    f.write_text("epoch: 3\n")
    with pytest.raises(ValueError, match="epoch"):
        resolve_config(base, f)
    with pytest.raises(ValueError, match="config file not found"):
        resolve_config(base, tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="invalid training option"):
        resolve_config(base, None, {"batch_size": 0})


def test_tracking_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri() == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"
    assert (
        artifact_location(f"sqlite:///{tmp_path}/m.db", "facemask")
        == (tmp_path / "mlartifacts/facemask").as_uri()
    )
    monkeypatch.chdir(tmp_path)
    assert artifact_location("sqlite:///mlflow.db", "t") == (tmp_path / "mlartifacts/t").as_uri()
    assert artifact_location("http://127.0.0.1:5000", "t") is None
    assert flatten({"a": {"b": 1, "c": {}}, "d": [1, 2]}) == {"a.b": "1", "a.c": "{}", "d": "[1, 2]"}
    got = numeric_metrics({"x": 1, "y": {"z": 0.5, "n": None, "nan": float("nan"), "ok": True}, "l": [1]})
    assert got == {"x": 1.0, "y.z": 0.5}


def test_resumed_seconds_count_only_the_epochs_before_the_resume() -> None:
    history = [
        {"epoch": 1.0, "epoch_seconds": 2.0},
        {"epoch": 2.0, "epoch_seconds": 3.0},
        {"epoch": 3.0, "epoch_seconds": 5.0},
    ]
    fit = FitResult(Path("b"), Path("l"), 3, 0.5, 3, False, history, resumed_epochs=2)
    assert fit.resumed_seconds == 5.0
    assert FitResult(Path("b"), Path("l"), 3, 0.5, 3, False, history).resumed_seconds == 0.0


def test_weight_average_follows_the_warmed_up_decay() -> None:
    from maskops.train.loop import WeightAverage

    model = torch.nn.Sequential(torch.nn.Linear(2, 1, bias=False), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    ema = WeightAverage(model, 0.9)
    expected = 1.0
    for step, value in enumerate([3.0, 5.0, -1.0, 2.0] + [4.0] * 30, start=1):
        with torch.no_grad():
            model[0].weight.fill_(value)
            model[1].num_batches_tracked.fill_(step)
        ema.update(model)
        d = min(0.9, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * value
        assert float(ema.module[0].weight[0, 0]) == pytest.approx(expected, rel=1e-6)
        assert int(ema.module[1].num_batches_tracked) == step  # integer buffers are copied
    assert (1 + 30) / (10 + 30) < 0.9 and ema.updates == 34
    # the average is a copy: training the model does not move it, and it takes no gradients
    assert float(model[0].weight[0, 0]) == 4.0 and float(ema.module[0].weight[0, 0]) != 4.0
    assert not any(p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage(model, 1.0)


def test_distillation_loss_hand_computed() -> None:
    from maskops.train.loop import distillation_loss

    hard = torch.tensor(0.8)
    teacher = torch.tensor([[0.7, 0.2, 0.1]])
    # a student whose softened output equals the teacher's: no soft loss
    same = torch.log(teacher) * 2.0
    assert float(distillation_loss(same, teacher, hard, 1.0, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(same, teacher, hard, 0.25, 2.0)) == pytest.approx(0.75 * 0.8, abs=1e-6)
    # uniform student at T = 1: KL(t || u) = sum t log(t / (1/3))
    uniform = torch.zeros(1, 3)
    kl = sum(t * math.log(t * 3) for t in (0.7, 0.2, 0.1))
    assert float(distillation_loss(uniform, teacher, hard, 0.5, 1.0)) == pytest.approx(
        0.4 + 0.5 * kl, rel=1e-5
    )
    # T^2 scaling: at T = 3 the soft term of a uniform student is 9x its KL
    assert float(distillation_loss(uniform, teacher, hard, 1.0, 3.0)) == pytest.approx(9 * kl, rel=1e-5)


def test_distill_config_is_checked() -> None:
    from pydantic import ValidationError

    cfg = TrainConfig(distill={"teachers": ["a.pt"], "alpha": 0.7})
    assert cfg.distill is not None and cfg.distill.temperature == 2.0
    for bad in ({"teachers": []}, {"teachers": ["a.pt"], "alpha": 0}, {"teachers": ["a.pt"], "bogus": 1}):
        with pytest.raises(ValidationError):
            TrainConfig(distill=bad)
