"""``tune_task``: hyperparameter search over a task's ``tune:`` space with Optuna.

Each trial is one ``train_task`` run (a nested MLflow run under the study's parent run) whose
per-epoch validation loss feeds the pruner; the trial's value is its lowest validation loss. The study
lives in an SQLite (or any SQLAlchemy) Optuna storage, so running again with the same study name
continues it. The best trial is written as an experiment config (``configs/experiments/`` format: the
training options it changes, for ``maskops train --config``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from maskops.config import Settings, TaskConfig, TrainConfig, TuneConfig

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

PARENT_RUN_ATTR = "mlflow_parent_run_id"
RUN_ID_ATTR = "mlflow_run_id"
# MLflow's tag that nests a run under another in its UI
PARENT_TAG = "mlflow.parentRunId"


class TuneError(ValueError):
    """The search space or the study cannot be used (the message names the field)."""


@dataclass
class TuneResult:
    """What ``tune_task`` did.

    Attributes:
        study_name, storage: where the study lives.
        n_trials: trials in the study after this call (all states); ``n_new`` of them run now.
        n_complete, n_pruned: finished and pruned trials in the study.
        best_number, best_value: the best trial (lowest validation loss) and its value.
        best_params: its sampled values.
        best_config: the experiment config written for it (None when no trial finished).
        parent_run_id: the MLflow run the trials are nested under.
    """

    study_name: str
    storage: str
    n_trials: int
    n_new: int
    n_complete: int
    n_pruned: int
    best_number: int | None
    best_value: float | None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_config: Path | None = None
    parent_run_id: str | None = None


def default_storage(settings: Settings) -> str:
    """``sqlite:///<work_dir>/optuna.db``."""
    return f"sqlite:///{(settings.work_dir / 'optuna.db').resolve()}"


def check_space(space: TuneConfig) -> None:
    """Fail before the first trial: unknown models or augmentation keys, an empty choice.

    Raises:
        TuneError: naming the ``tune.<field>`` at fault and the valid choices.
    """
    from maskops.data.augment import AugmentConfig
    from maskops.models import list_models

    if space.model is not None:
        known = list_models()
        bad = [m for m in space.model if m not in known]
        if bad or not space.model:
            raise TuneError(f"tune.model: {bad or 'empty'} not registered models (valid: {', '.join(known)})")
    if space.input_size is not None and (not space.input_size or min(space.input_size) < 16):
        raise TuneError(f"tune.input_size: need sides >= 16, got {space.input_size}")
    valid_augment = set(AugmentConfig.__dataclass_fields__)
    bad = sorted(set(space.augment) - valid_augment)
    if bad:
        raise TuneError(f"tune.augment: {bad} are not augmentation options (valid: {sorted(valid_augment)})")
    if not any((space.lr, space.input_size, space.model, space.augment, space.source_weights)):
        raise TuneError("the task's tune: section searches nothing (give lr, input_size, model, ...)")


def suggest(trial: optuna.Trial, space: TuneConfig, base: TrainConfig) -> dict[str, Any]:
    """The trial's training options: the base's, with each searched value sampled.

    Returns:
        The changed ``TrainConfig`` fields (``augment`` and ``source_weights`` merged with the base's).
    """
    out: dict[str, Any] = {}
    if space.lr is not None:
        out["lr"] = trial.suggest_float("lr", space.lr.low, space.lr.high, log=space.lr.log)
    if space.input_size is not None:
        out["input_size"] = trial.suggest_categorical("input_size", list(space.input_size))
    if space.model is not None:
        out["model"] = trial.suggest_categorical("model", list(space.model))
    if space.augment:
        augment = dict(base.augment)
        for key, rng in space.augment.items():
            augment[key] = trial.suggest_float(f"augment.{key}", rng.low, rng.high, log=rng.log)
        out["augment"] = augment
    if space.source_weights:
        weights = dict(base.source_weights)
        for key, rng in space.source_weights.items():
            weights[key] = trial.suggest_float(f"source_weights.{key}", rng.low, rng.high, log=rng.log)
        out["source_weights"] = weights
    return out


def trial_config(base: TrainConfig, changes: dict[str, Any], epochs: int | None) -> TrainConfig:
    """``base`` with a trial's changes; a model's options the new architecture lacks are dropped."""
    from maskops.models import model_options

    data = base.model_dump()
    data.update(changes)
    if data["model"] != base.model:
        valid = set(model_options(data["model"]))
        data["model_options"] = {k: v for k, v in data["model_options"].items() if k in valid}
    if epochs is not None:
        data["epochs"] = epochs
    return TrainConfig.model_validate(data)


def experiment_config(changes: dict[str, Any], base: TrainConfig) -> dict[str, Any]:
    """The experiment-config mapping of a trial: the options it sets, the model's options when the
    architecture changed (so ``resolve_config`` does not keep the base model's)."""
    out = dict(changes)
    if "model" in changes and changes["model"] != base.model:
        from maskops.models import model_options

        valid = set(model_options(changes["model"]))
        out["model_options"] = {k: v for k, v in base.model_options.items() if k in valid}
    return out


def write_experiment_config(
    path: Path, task: str, changes: dict[str, Any], *, study: str, number: int, value: float
) -> Path:
    """Write the best trial's options as YAML with a comment saying where they come from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# {task}: best trial {number} of the Optuna study {study!r} (maskops tune), "
        f"validation loss {value:.4f}; written {datetime.now(UTC).date().isoformat()}.\n"
        f"# use as: maskops train --task {task} --config {path.name}\n"
    )
    body = yaml.safe_dump(changes, sort_keys=True, default_flow_style=False)
    path.write_text(header + body, encoding="utf-8")
    return path


class _Pruning:
    """The epoch hook of a trial: report the validation loss, stop the run when the pruner says so."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.best = math.inf

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        import optuna

        loss = float(metrics["val_loss"])
        if math.isfinite(loss):
            self.best = min(self.best, loss)
        self.trial.report(loss, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} (val_loss {loss:.4f})")


def _parent_run(
    study: optuna.Study, task: TaskConfig, tracking_uri: str | None, params: dict[str, Any]
) -> str:
    """The study's MLflow parent run: created on the first call, reopened when the study continues."""
    from maskops.train.tracking import Tracker

    previous = study.user_attrs.get(PARENT_RUN_ATTR)
    tracker = Tracker(tracking_uri, task.name, run_name=f"tune-{study.study_name}", run_id=previous)
    if previous != tracker.run_id:
        study.set_user_attr(PARENT_RUN_ATTR, tracker.run_id)
        tracker.set_tags({"task": task.name, "stage": "tune", "optuna_study": study.study_name})
        tracker.log_params(params)
    return tracker.run_id


def _nest(run_dir: Path, parent_run_id: str, trial: optuna.Trial, tracking_uri: str | None) -> str | None:
    """Tag the trial's MLflow run (its id is in the run folder) as a child of the study's run."""
    from mlflow.tracking import MlflowClient

    from maskops.registry import resolve_tracking_uri
    from maskops.train.api import RUN_ID_FILE

    id_file = run_dir / RUN_ID_FILE
    if not id_file.is_file():
        return None
    run_id = id_file.read_text(encoding="utf-8").strip()
    client = MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))
    client.set_tag(run_id, PARENT_TAG, parent_run_id)
    client.set_tag(run_id, "optuna_trial", str(trial.number))
    client.set_tag(run_id, "stage", "tune")
    trial.set_user_attr(RUN_ID_ATTR, run_id)
    return run_id


def tune_task(
    task: TaskConfig,
    settings: Settings,
    *,
    n_trials: int,
    timeout: float | None = None,
    base: TrainConfig | None = None,
    study_name: str | None = None,
    storage: str | None = None,
    manifest: Path | None = None,
    out_dir: Path | None = None,
    best_config: Path | None = None,
    tracking_uri: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    pruner: optuna.pruners.BasePruner | None = None,
) -> TuneResult:
    """Search the task's ``tune:`` space: ``n_trials`` more trials (or until ``timeout`` seconds).

    Args:
        task: the task (its ``tune`` section is the space; its ``train`` section the base).
        settings: work folders.
        n_trials: trials to run in this call (a continued study keeps its earlier ones).
        timeout: stop starting trials after this many seconds.
        base: training options the trials start from (default: the task's ``train``).
        study_name: the Optuna study (default ``<task>-tune``); the same name continues the study.
        storage: Optuna storage URL (default ``sqlite:///<work_dir>/optuna.db``).
        manifest: the manifest CSV (default: the prepared one).
        out_dir: trial run folders go to ``<out_dir>/trial-<n>`` (default ``<work_dir>/tune/<study>``).
        best_config: where the best trial's experiment config goes (default
            ``<config_dir>/experiments/<study>.yaml``).
        tracking_uri: MLflow store.
        epochs: epochs per trial (default: ``tune.epochs``, else the base's).
        seed: TPE seed (offset by the trials already in the study, so a continued study does not
            repeat its first draws).
        pruner: default ``MedianPruner(n_startup_trials=3, n_warmup_steps=1)`` on the validation loss.

    Returns:
        TuneResult.

    Raises:
        TuneError: no ``tune:`` section or an invalid space.
    """
    import optuna

    from maskops.train.api import train_task

    if task.tune is None:
        raise TuneError(f"task {task.name!r} has no tune: section (the search space) in its config")
    space = task.tune
    base = base or task.train
    check_space(space)
    study_name = study_name or f"{task.name}-tune"
    storage = storage or default_storage(settings)
    if storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    out_dir = Path(out_dir) if out_dir else settings.work_dir / "tune" / study_name
    best_config = best_config or settings.config_dir / "experiments" / f"{study_name}.yaml"
    trial_epochs = epochs or space.epochs

    probe = optuna.create_study(
        study_name=study_name, storage=storage, direction="minimize", load_if_exists=True
    )
    done_before = len(probe.trials)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed + done_before, n_startup_trials=5),
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    parent = _parent_run(
        study, task, tracking_uri, {"space": space.model_dump(mode="json"), "epochs_per_trial": trial_epochs}
    )

    def objective(trial: optuna.Trial) -> float:
        changes = suggest(trial, space, base)
        cfg = trial_config(base, changes, trial_epochs)
        run_dir = out_dir / f"trial-{trial.number}"
        hook = _Pruning(trial)
        logger.info("trial %d: %s", trial.number, changes)
        try:
            train_task(
                task,
                cfg,
                settings,
                out_dir=run_dir,
                manifest=manifest,
                tracking_uri=tracking_uri,
                progress=False,
                plots=False,
                on_epoch_end=hook,
            )
        except optuna.TrialPruned:
            run_id = _nest(run_dir, parent, trial, tracking_uri)
            if run_id is not None:  # pruned is not a failure: the run was stopped on purpose
                from mlflow.tracking import MlflowClient

                from maskops.registry import resolve_tracking_uri

                MlflowClient(resolve_tracking_uri(tracking_uri)).set_terminated(run_id, "KILLED")
            raise
        _nest(run_dir, parent, trial, tracking_uri)
        return hook.best

    study.optimize(objective, n_trials=n_trials, timeout=timeout)
    return _summarise(study, storage, done_before, base, best_config, task, parent)


def _summarise(
    study: optuna.Study,
    storage: str,
    done_before: int,
    base: TrainConfig,
    best_config: Path,
    task: TaskConfig,
    parent: str,
) -> TuneResult:
    from optuna.trial import TrialState

    trials = study.trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    result = TuneResult(
        study_name=study.study_name,
        storage=storage,
        n_trials=len(trials),
        n_new=len(trials) - done_before,
        n_complete=len(complete),
        n_pruned=sum(t.state == TrialState.PRUNED for t in trials),
        best_number=None,
        best_value=None,
        parent_run_id=parent,
    )
    if not complete:
        logger.warning("study %s has no finished trial: no experiment config written", study.study_name)
        return result
    best = study.best_trial
    assert best.value is not None
    changes = experiment_config(_changes_of(best.params, base), base)
    result.best_number, result.best_value, result.best_params = best.number, best.value, dict(best.params)
    result.best_config = write_experiment_config(
        best_config, task.name, changes, study=study.study_name, number=best.number, value=best.value
    )
    return result


def _changes_of(params: dict[str, Any], base: TrainConfig) -> dict[str, Any]:
    """A trial's flat Optuna params (``augment.downscale``) back as training options."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        group, _, name = key.partition(".")
        if name and group in ("augment", "source_weights"):
            out.setdefault(group, dict(getattr(base, group)))[name] = value
        else:
            out[key] = value
    return out
