"""Fit one classifier: AdamW, warmup + cosine (or one-cycle) LR, label smoothing, class balance,
early stopping on validation macro-F1 (or loss: ``TrainConfig.select_on``), a checkpoint every epoch
and resume after an interrupt.

``last.pt`` is written (atomically) after every epoch and ``best.pt`` whenever the validation figure
improves; both hold the full state (model, optimizer, scheduler, epoch, early-stopping state, RNG
states). Every random draw of an epoch is derived from ``(seed, epoch)`` (sampler order,
per-item augmentation) or restored from the checkpoint (torch RNG for dropout), so a run that is
interrupted and resumed ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rich.progress import Progress, TaskID, TextColumn
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, Sampler

from maskops.config import TrainConfig
from maskops.data.dataset import ImageDataset, balanced_sampler, class_weights
from maskops.data.progress import progress_bar
from maskops.device import torch_device
from maskops.evaluate.metrics import accuracy, macro_f1
from maskops.train.checkpoint import (
    capture_rng,
    load_checkpoint,
    load_model,
    restore_rng,
    save_checkpoint,
)
from maskops.types import ModelSpec

logger = logging.getLogger(__name__)

Schedule = Literal["cosine", "onecycle"]
LAST = "last.pt"
BEST = "best.pt"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``last.pt`` holds the last completed epoch."""

    def __init__(self, out_dir: Path, epochs_done: int) -> None:
        super().__init__(
            f"training interrupted after {epochs_done} completed epoch(s); "
            f"resume with --resume (checkpoint: {out_dir / LAST})"
        )
        self.out_dir = out_dir
        self.epochs_done = epochs_done


@dataclass
class FitResult:
    """What ``fit`` produced.

    Attributes:
        best_path, last_path: the checkpoints.
        best_epoch: 1-based epoch of the best validation figure (``TrainConfig.select_on``).
        best_metric: that figure, as a score (macro-F1, or minus the validation loss).
        epochs_run: epochs completed in total (including those before a resume).
        stopped_early: patience ran out before ``cfg.epochs``.
        history: per-epoch metrics.
        resumed_epochs: epochs restored from a checkpoint (done before this call).
    """

    best_path: Path
    last_path: Path
    best_epoch: int
    best_metric: float
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_epochs: int = 0

    @property
    def resumed_seconds(self) -> float:
        """Training time of the epochs done before a resume (their ``epoch_seconds``)."""
        return sum(float(h.get("epoch_seconds", 0.0)) for h in self.history[: self.resumed_epochs])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


@torch.no_grad()
def predict_logits(
    model: nn.Module, dataset: ImageDataset, batch_size: int = 128, *, channels_last: bool = False
) -> np.ndarray:
    """(n, C) float32 logits of ``model`` (eval mode) over ``dataset``."""
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    fmt = _memory_format(channels_last)
    device = next(model.parameters()).device
    out = [model(x.to(device).contiguous(memory_format=fmt)).float().cpu().numpy() for x, _ in loader]
    model.train(was_training)
    if not out:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(out).astype(np.float32)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # no weight decay on biases and norm parameters (1-D tensors)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule, total_steps: int, warmup_steps: int, lr: float
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step LR schedule: linear warmup then cosine decay to 1% (``cosine``), or ``onecycle``."""
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps // 2)
    if schedule == "onecycle":
        pct = max(warmup_steps / total_steps, 1.0 / total_steps) if total_steps > 1 else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=total_steps, pct_start=min(pct, 0.5)
        )
    if schedule != "cosine":
        raise ValueError(f"unknown LR schedule {schedule!r}; expected cosine or onecycle")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % 2**63


class WeightAverage:
    """An exponential moving average of a model's parameters and buffers, updated after each step.

    The decay is warmed up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the first
    epochs are not dominated by the random-head start. Buffers (BatchNorm statistics) are averaged
    the same way. In a checkpoint the average is ``model_state`` (what validation, selection and the
    export see) and the trained weights are ``train_state`` (what a resumed run continues from).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = model.state_dict()
        for name, avg in self.module.state_dict().items():
            value = current[name].detach()
            if avg.dtype.is_floating_point:
                avg.mul_(d).add_(value, alpha=1.0 - d)
            else:  # e.g. BatchNorm's num_batches_tracked
                avg.copy_(value)

    def checkpoint_entries(self, model: nn.Module) -> dict[str, Any]:
        return {
            "model_state": self.module.state_dict(),
            "train_state": model.state_dict(),
            "ema": {"decay": self.decay, "updates": self.updates},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the average from a checkpoint (one written without an average starts it afresh
        from that checkpoint's weights)."""
        self.module.load_state_dict(state["model_state"])
        self.updates = int(state.get("ema", {}).get("updates", 0))


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    hard_loss: torch.Tensor,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """``(1 - alpha) * hard_loss + alpha * T^2 * KL(teacher || softmax(student / T))`` (batch mean).

    ``teacher_probs`` are the teachers' probabilities at temperature ``T``; the ``T^2`` factor keeps
    the soft term's gradients on the scale of the hard one (Hinton et al., 2015).
    """
    log_student = torch.log_softmax(student_logits / temperature, dim=1)
    kl = torch.nn.functional.kl_div(log_student, teacher_probs, reduction="batchmean")
    return (1.0 - alpha) * hard_loss + alpha * temperature**2 * kl


class _Teacher(nn.Module):
    """A frozen teacher that sees the student's batch at its own input size (bilinear resize)."""

    def __init__(self, model: nn.Module, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.input_size:
            x = torch.nn.functional.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return self.model(x)


def load_teachers(paths: Sequence[str | Path], spec: ModelSpec) -> list[nn.Module]:
    """Teacher models (eval mode, frozen) for distilling into a student described by ``spec``.

    A teacher may have another input size than the student (e.g. an 80 px teacher for a 64 px
    student): it gets each batch resized to its own size. Its classes, normalisation and colour
    mode must be the student's.

    Raises:
        CheckpointError: a teacher file is missing or not a maskops checkpoint.
        ValueError: a teacher's classes, mean/std or colour mode differ from the student's.
    """
    teachers: list[nn.Module] = []
    for path in paths:
        model, tspec = load_model(path)
        if list(tspec.class_names) != list(spec.class_names):
            raise ValueError(
                f"distill teacher {path}: classes {list(tspec.class_names)} differ from the student's "
                f"{list(spec.class_names)}"
            )
        for field_name in ("mean", "std", "color"):  # ModelSpec holds mean/std as float tuples
            theirs, ours = getattr(tspec, field_name), getattr(spec, field_name)
            if theirs != ours:
                raise ValueError(
                    f"distill teacher {path}: {field_name} {theirs} differs from the student's {ours} "
                    "(the teacher would see wrongly normalised images)"
                )
        for p in model.parameters():
            p.requires_grad_(False)
        teachers.append(_Teacher(model, tspec.input_size).eval())
    return teachers


@torch.no_grad()
def _teacher_probs(teachers: Sequence[nn.Module], x: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.stack([torch.softmax(t(x) / temperature, dim=1) for t in teachers]).mean(0)


def _train_sampler(ds: ImageDataset, cfg: TrainConfig, num_classes: int) -> Sampler[int]:
    if cfg.balanced_sampling and cfg.class_weighting != "none":
        return balanced_sampler(
            ds.labels, num_classes, cfg.class_weighting, seed=cfg.seed, sample_weights=ds.sample_weights
        )
    return RandomSampler(ds, generator=torch.Generator().manual_seed(cfg.seed))


def _progress(enabled: bool) -> Progress:
    return progress_bar(TextColumn("{task.fields[info]}"), enabled=enabled, bar_width=24)


@dataclass
class _Trainer:
    """What a fit trains with: data order, loss, optimiser, LR schedule, weight average, teachers."""

    sampler: Sampler[int]
    loader: DataLoader[Any]
    steps_per_epoch: int
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: WeightAverage | None
    teachers: list[nn.Module]
    fmt: torch.memory_format
    device: torch.device
    scaler: torch.amp.GradScaler  # mixed precision on CUDA; a pass-through elsewhere


@dataclass
class _RunState:
    """Where a fit stands: epochs done, the best validation score, early stopping, per-epoch history."""

    epoch: int = 0
    best_metric: float = -math.inf
    best_epoch: int = 0
    since_best: int = 0
    finished: bool = False
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_epochs: int = 0


def _build_trainer(
    model: nn.Module,
    train_ds: ImageDataset,
    cfg: TrainConfig,
    spec: ModelSpec,
    *,
    schedule: Schedule,
    warmup_epochs: float,
    channels_last: bool,
    teachers: Sequence[nn.Module] | None,
) -> _Trainer:
    fmt = _memory_format(channels_last)
    model.to(memory_format=fmt)  # type: ignore[call-overload]  # torch's stub of Module.to omits memory_format
    sampler = _train_sampler(train_ds, cfg, spec.num_classes)
    drop_last = len(train_ds) > cfg.batch_size  # avoid a 1-sample batch in BatchNorm
    loader = DataLoader(
        train_ds, batch_size=cfg.batch_size, sampler=sampler, drop_last=drop_last, num_workers=0
    )
    steps = max(1, len(loader))
    weight = None
    if not cfg.balanced_sampling and cfg.class_weighting != "none":
        weight = torch.as_tensor(class_weights(train_ds.labels, spec.num_classes, cfg.class_weighting))
    device = next(model.parameters()).device
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing).to(device)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = make_scheduler(optimizer, schedule, cfg.epochs * steps, round(warmup_epochs * steps), cfg.lr)
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    if cfg.distill is not None and teachers is None:
        teachers = load_teachers(cfg.distill.teachers, spec)
    for t in teachers or ():
        t.to(device)
        t.to(memory_format=fmt)  # type: ignore[call-overload]
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    return _Trainer(
        sampler,
        loader,
        steps,
        criterion,
        optimizer,
        scheduler,
        ema,
        list(teachers or ()),
        fmt,
        device,
        scaler,
    )


def _resume(last_path: Path, model: nn.Module, trainer: _Trainer, cfg: TrainConfig) -> _RunState:
    """Model, average, optimiser, schedule, RNG and early-stopping state from ``last.pt``."""
    if not last_path.is_file():
        raise FileNotFoundError(f"nothing to resume: {last_path} does not exist")
    state = load_checkpoint(last_path)
    # with a weight average, model_state is the average and train_state the trained weights
    model.load_state_dict(state.get("train_state", state["model_state"]))
    if trainer.ema is not None:
        trainer.ema.load_state_dict(state)
    trainer.optimizer.load_state_dict(state["optimizer_state"])
    trainer.scheduler.load_state_dict(state["scheduler_state"])
    restore_rng(state["rng"])
    es = state.get("early_stopping", {})
    history = list(state.get("history", []))
    run = _RunState(
        epoch=int(state["epoch"]),
        best_metric=float(state["best_metric"]),
        best_epoch=int(es.get("best_epoch", 0)),
        since_best=int(es.get("since_best", 0)),
        finished=bool(es.get("finished", False)),
        history=history,
        resumed_epochs=len(history),
    )
    run.stopped_early = run.finished and run.epoch < cfg.epochs
    logger.info(
        "resuming from %s after epoch %d (best %s score %.4f)",
        last_path,
        run.epoch,
        cfg.select_on,
        run.best_metric,
    )
    return run


def _checkpoint(
    model: nn.Module,
    trainer: _Trainer,
    run: _RunState,
    *,
    spec: ModelSpec,
    cfg: TrainConfig,
    model_kwargs: dict[str, Any] | None,
) -> dict[str, Any]:
    averaged = {} if trainer.ema is None else trainer.ema.checkpoint_entries(model)
    return {
        "model_state": model.state_dict(),
        **averaged,
        "spec": spec.to_dict(),
        "config": cfg.model_dump(mode="json"),
        "model_kwargs": dict(model_kwargs or {}),
        "epoch": run.epoch,
        "best_metric": run.best_metric,
        "optimizer_state": trainer.optimizer.state_dict(),
        "scheduler_state": trainer.scheduler.state_dict(),
        "rng": capture_rng(),
        "early_stopping": {
            "best_epoch": run.best_epoch,
            "since_best": run.since_best,
            "finished": run.finished,
        },
        "history": run.history,
    }


def _train_epoch(
    model: nn.Module, train_ds: ImageDataset, trainer: _Trainer, cfg: TrainConfig, epoch: int, bar: Progress
) -> tuple[TaskID, float, int]:
    """One pass over the training data; returns the bar's task, the summed loss and the images seen."""
    model.train()
    train_ds.set_epoch(epoch)
    gen = getattr(trainer.sampler, "generator", None)
    if gen is not None:
        gen.manual_seed(_epoch_seed(cfg.seed, epoch))
    task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=trainer.steps_per_epoch, info="")
    distill = cfg.distill
    loss_sum, seen = 0.0, 0
    for x, y in trainer.loader:
        trainer.optimizer.zero_grad(set_to_none=True)
        x = x.to(trainer.device, non_blocking=True).contiguous(memory_format=trainer.fmt)
        y = y.to(trainer.device, non_blocking=True)
        # float16 autocast on CUDA only (the CPU path runs in float32 as before)
        with torch.autocast(trainer.device.type, enabled=trainer.scaler.is_enabled()):
            out = model(x)
            loss = trainer.criterion(out, y)
            if distill is not None and trainer.teachers:
                soft = _teacher_probs(trainer.teachers, x, distill.temperature)
                loss = distillation_loss(out, soft, loss, distill.alpha, distill.temperature)
        trainer.scaler.scale(loss).backward()
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
        trainer.scheduler.step()
        if trainer.ema is not None:
            trainer.ema.update(model)
        loss_sum += loss.detach().item() * len(y)
        seen += len(y)
        lr = trainer.optimizer.param_groups[0]["lr"]
        bar.update(task, advance=1, info=f"loss {loss_sum / seen:.4f} lr {lr:.2e}")
    return task, loss_sum, seen


def _validate(
    model: nn.Module, val_ds: ImageDataset, cfg: TrainConfig, num_classes: int, channels_last: bool
) -> dict[str, float]:
    """Validation loss, macro-F1 and accuracy of ``model``."""
    logits = predict_logits(model, val_ds, batch_size=max(cfg.batch_size, 64), channels_last=channels_last)
    y_val = val_ds.labels
    pred = logits.argmax(axis=1)
    return {
        "val_loss": float(nn.CrossEntropyLoss()(torch.from_numpy(logits), torch.from_numpy(y_val))),
        "val_macro_f1": macro_f1(y_val, pred, num_classes),
        "val_accuracy": accuracy(y_val, pred),
    }


def _epoch(
    model: nn.Module,
    train_ds: ImageDataset,
    val_ds: ImageDataset,
    trainer: _Trainer,
    cfg: TrainConfig,
    epoch: int,
    bar: Progress,
    *,
    num_classes: int,
    channels_last: bool,
) -> tuple[TaskID, dict[str, float]]:
    """Train one epoch and validate (the weight average when there is one); the epoch's metrics."""
    t0 = time.perf_counter()
    task, loss_sum, seen = _train_epoch(model, train_ds, trainer, cfg, epoch, bar)
    train_seconds = time.perf_counter() - t0
    evaluated = trainer.ema.module if trainer.ema is not None else model
    val = _validate(evaluated, val_ds, cfg, num_classes, channels_last)
    return task, {
        "train_loss": loss_sum / max(1, seen),
        **val,
        "lr": float(trainer.optimizer.param_groups[0]["lr"]),
        "epoch_seconds": time.perf_counter() - t0,
        "train_images_per_s": seen / max(train_seconds, 1e-9),
    }


def _select(run: _RunState, metrics: dict[str, float], cfg: TrainConfig) -> bool:
    """Count the finished epoch, update the best score and early stopping; True when it improved."""
    run.epoch += 1
    # a score, higher is better: macro-F1, or minus the loss
    score = metrics["val_macro_f1"] if cfg.select_on == "macro_f1" else -metrics["val_loss"]
    improved = score > run.best_metric
    if improved:
        run.best_metric, run.best_epoch, run.since_best = score, run.epoch, 0
    else:
        run.since_best += 1
    run.stopped_early = run.since_best >= cfg.patience and run.epoch < cfg.epochs
    run.finished = run.stopped_early or run.epoch >= cfg.epochs
    run.history.append({"epoch": float(run.epoch), **metrics})
    return improved


def _report_epoch(
    bar: Progress, task: TaskID, run: _RunState, metrics: dict[str, float], improved: bool, cfg: TrainConfig
) -> None:
    bar.update(
        task,
        info=(
            f"loss {metrics['train_loss']:.4f} val_loss {metrics['val_loss']:.4f} "
            f"val_f1 {metrics['val_macro_f1']:.4f} val_acc {metrics['val_accuracy']:.4f}"
            + (" [green]best" if improved else "")
        ),
    )
    logger.info(
        "epoch %d/%d: train_loss %.4f val_loss %.4f val_macro_f1 %.4f val_acc %.4f (%.0f img/s)",
        run.epoch,
        cfg.epochs,
        metrics["train_loss"],
        metrics["val_loss"],
        metrics["val_macro_f1"],
        metrics["val_accuracy"],
        metrics["train_images_per_s"],
    )
    if run.stopped_early:
        logger.info(
            "early stopping: no validation %s gain for %d epoch(s); best epoch %d",
            cfg.select_on,
            run.since_best,
            run.best_epoch,
        )


def fit(
    model: nn.Module,
    train_ds: ImageDataset,
    val_ds: ImageDataset,
    cfg: TrainConfig,
    *,
    spec: ModelSpec,
    out_dir: Path,
    resume: bool = False,
    schedule: Schedule = "cosine",
    warmup_epochs: float = 1.0,
    model_kwargs: dict[str, Any] | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    channels_last: bool = True,
    teachers: Sequence[nn.Module] | None = None,
    device: str | None = None,
) -> FitResult:
    """Train ``model`` on ``train_ds``, select on ``val_ds`` macro-F1, checkpoint into ``out_dir``.

    Args:
        model: the network (logits out).
        train_ds: training dataset (with augmentation).
        val_ds: validation dataset (no augmentation).
        cfg: the resolved training config (epochs, batch size, lr, patience, seed, ...).
        spec: the model card stored in the checkpoints.
        out_dir: run folder; ``last.pt`` and ``best.pt`` are written here.
        resume: continue from ``out_dir/last.pt``.
        schedule: ``cosine`` (linear warmup + cosine) or ``onecycle``.
        warmup_epochs: warmup length in epochs.
        model_kwargs: builder options stored in the checkpoint (to rebuild the model).
        on_epoch_end: called with ``(epoch (1-based), metrics)`` after each epoch's checkpoint.
        progress: show a progress bar per epoch.
        channels_last: train in NHWC memory format (about 1.5x faster for EfficientNet-Lite0 on
            CPU here); the model is converted in place and left in that format.
        teachers: the models of ``cfg.distill`` already loaded (``load_teachers``); loaded here from
            ``cfg.distill.teachers`` when ``None``.
        device: ``auto``, ``cpu`` or ``cuda`` (``None``: ``MASKOPS_DEVICE``); on CUDA the model is
            moved there and trained with float16 mixed precision (``torch.autocast``).

    Returns:
        FitResult.

    Raises:
        TrainingInterrupted: on Ctrl-C; the last completed epoch is in ``last.pt``.
        FileNotFoundError: ``resume`` without a ``last.pt``.
        DeviceError: ``cuda`` asked and torch sees none.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out_dir / LAST, out_dir / BEST
    torch.set_num_threads(cfg.num_threads)
    model.to(torch_device(device))
    trainer = _build_trainer(
        model,
        train_ds,
        cfg,
        spec,
        schedule=schedule,
        warmup_epochs=warmup_epochs,
        channels_last=channels_last,
        teachers=teachers,
    )
    run = _resume(last_path, model, trainer, cfg) if resume else _RunState()
    try:
        with _progress(progress) as bar:
            while run.epoch < cfg.epochs and not run.finished:
                task, metrics = _epoch(
                    model,
                    train_ds,
                    val_ds,
                    trainer,
                    cfg,
                    run.epoch,
                    bar,
                    num_classes=spec.num_classes,
                    channels_last=channels_last,
                )
                improved = _select(run, metrics, cfg)
                state = _checkpoint(model, trainer, run, spec=spec, cfg=cfg, model_kwargs=model_kwargs)
                save_checkpoint(last_path, state)
                if improved:
                    save_checkpoint(best_path, state)
                _report_epoch(bar, task, run, metrics, improved, cfg)
                if on_epoch_end is not None:
                    on_epoch_end(run.epoch, metrics)
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:
        done = int(load_checkpoint(last_path)["epoch"]) if last_path.is_file() else 0
        raise TrainingInterrupted(out_dir, done) from None
    if not best_path.is_file():  # e.g. resumed a run whose best.pt was deleted
        save_checkpoint(best_path, load_checkpoint(last_path))
    return FitResult(
        best_path=best_path,
        last_path=last_path,
        best_epoch=run.best_epoch,
        best_metric=run.best_metric,
        epochs_run=run.epoch,
        stopped_early=run.stopped_early,
        history=run.history,
        resumed_epochs=run.resumed_epochs,
    )
