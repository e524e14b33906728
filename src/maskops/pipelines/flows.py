"""Prefect 3 flows: ``retrain`` (validate -> prepare -> train -> export -> evaluate -> quality gate ->
register -> promotion gate) and ``monitor`` (the monitoring checks on a schedule; it starts ``retrain``
when an alert whose rule says ``retrain: true`` is firing and enough reviewed hard cases exist).

Each step is a Prefect task calling one function of ``maskops.pipelines.stages``. The data, training,
export and evaluation steps are cached by the hash of their inputs (the task config, a fingerprint of
the raw data, the manifest hash, the checkpoint's and model's sha256, the task's code), so a rerun with
nothing changed reuses their results; registry steps are never cached. Steps that touch files or the
MLflow store retry; training does not (a failure there is rarely transient and costs the most).

Promotion always goes through the registry's gate (``maskops.registry.promote``). With
``approval="human"`` the flow registers the challenger and stops: a person promotes it with
``maskops models promote --task <task>``, which runs the same gate.

Needs the optional ``pipelines`` extra (``pip install 'maskops[pipelines]'``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

from maskops.config import Settings, SourceConfig, TaskConfig, TrainConfig, load_task
from maskops.pipelines import stages

logger = logging.getLogger(__name__)

CACHED = INPUTS + TASK_SOURCE
STATE_FILE = "monitor_state.json"
REVIEWED_SOURCE = "reviewed"

Approval = Literal["auto", "human"]


def _settings_data(settings: Settings) -> dict[str, str]:
    """The folders a step reads and writes: part of its cache key, and how it rebuilds ``Settings``."""
    return {
        "work_dir": str(settings.work_dir.resolve()),
        "data_dir": str(settings.data_dir.resolve()),
        "config_dir": str(settings.config_dir.resolve()),
        "models_dir": str(settings.models_dir.resolve()),
    }


def _settings(data: dict[str, str]) -> Settings:
    return Settings(**{k: Path(v) for k, v in data.items()})  # type: ignore[arg-type]


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


# --- steps


@task(name="validate", retries=2, retry_delay_seconds=10, cache_policy=CACHED)
def validate_step(
    task_data: dict[str, Any], settings_data: dict[str, str], fingerprint: str
) -> dict[str, Any]:
    """Validate the raw sources (raises ``PipelineError`` when blocked)."""
    return stages.validate_sources(TaskConfig.model_validate(task_data), _settings(settings_data))


@task(name="prepare", retries=2, retry_delay_seconds=10, cache_policy=CACHED)
def prepare_step(
    task_data: dict[str, Any], settings_data: dict[str, str], fingerprint: str
) -> dict[str, Any]:
    return stages.prepare_data(TaskConfig.model_validate(task_data), _settings(settings_data))


@task(name="train", cache_policy=CACHED)
def train_step(
    task_data: dict[str, Any],
    train_data: dict[str, Any],
    settings_data: dict[str, str],
    manifest: str,
    manifest_hash: str,
    run_dir: str,
    tracking_uri: str | None,
) -> dict[str, Any]:
    return stages.train_model(
        TaskConfig.model_validate(task_data),
        TrainConfig.model_validate(train_data),
        _settings(settings_data),
        out_dir=Path(run_dir),
        manifest=Path(manifest),
        tracking_uri=tracking_uri,
    )


@task(name="export", retries=1, retry_delay_seconds=5, cache_policy=CACHED)
def export_step(
    task_data: dict[str, Any],
    checkpoint: str,
    checkpoint_sha256: str,
    manifest: str,
    out_dir: str,
    weights: str,
    reference: bool,
) -> dict[str, Any]:
    return stages.export_model(
        Path(checkpoint),
        Path(out_dir),
        task=TaskConfig.model_validate(task_data),
        manifest=Path(manifest),
        weights=weights,
        reference=reference,
    )


@task(name="evaluate", retries=1, retry_delay_seconds=5, cache_policy=CACHED)
def evaluate_step(
    model: str, model_sha256: str, manifest: str, manifest_hash: str, task_name: str, split: str, out_dir: str
) -> dict[str, Any]:
    return stages.evaluate_model(
        Path(model), Path(manifest), task_name=task_name, split=split, out_dir=Path(out_dir)
    )


@task(name="quality-gate", cache_policy=NO_CACHE)
def quality_gate_step(evaluation: dict[str, Any], min_macro_f1: float | None) -> list[str]:
    """Reasons the model may not even be registered (empty: it may)."""
    if min_macro_f1 is not None and evaluation["macro_f1"] < min_macro_f1:
        return [f"macro_f1 {evaluation['macro_f1']:.4f} < required {min_macro_f1:.4f}"]
    return []


@task(name="register", retries=3, retry_delay_seconds=5, cache_policy=NO_CACHE)
def register_step(model: str, task_name: str, tracking_uri: str | None) -> int:
    return stages.register_model(Path(model), task_name, tracking_uri=tracking_uri)


@task(name="promotion-gate", retries=3, retry_delay_seconds=5, cache_policy=NO_CACHE)
def promotion_gate_step(task_name: str, tolerance: float, tracking_uri: str | None) -> dict[str, Any]:
    return stages.promotion_gate(task_name, tolerance=tolerance, tracking_uri=tracking_uri)


# --- retrain


def with_reviewed(task_cfg: TaskConfig, folders: Sequence[str | Path]) -> TaskConfig:
    """The task with each folder of reviewed hard cases (``export_reviewed``'s layout) as a training
    source."""
    extra = [
        SourceConfig(
            name=f"{REVIEWED_SOURCE}-{i}" if len(folders) > 1 else REVIEWED_SOURCE,
            kind="folder",
            path=str(Path(folder).resolve()),
            splits_for=["train"],
        )
        for i, folder in enumerate(folders)
    ]
    return task_cfg.model_copy(update={"sources": [*task_cfg.sources, *extra]})


def _artifact_key(task_name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"{task_name.lower()}-evaluation").strip("-")


@flow(name="maskops-retrain", log_prints=False)
def retrain(
    task: str = "facemask",
    config: str | None = None,
    approval: Approval = "auto",
    tolerance: float = 0.02,
    weights: str = "int8",
    reference: bool = True,
    split: str = "test",
    min_macro_f1: float | None = None,
    reviewed_dirs: list[str] | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Validate, prepare, train, export and evaluate a task, then register the model and ask the gate.

    Args:
        task: task name or task YAML path.
        config: YAML of training options laid on the task's (as ``maskops train --config``).
        approval: ``auto``: the promotion gate decides; ``human``: register the challenger and stop.
        tolerance: the gate's largest allowed drop of a class recall.
        weights: shipped form (int8, fp16, fp32).
        reference: write the monitoring reference profile beside the shipped model.
        split: the split the evaluation summary is on.
        min_macro_f1: below this evaluated macro-F1 the model is not registered at all.
        reviewed_dirs: folders of reviewed hard cases added as training sources.
        tracking_uri: MLflow store (default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``).

    Returns:
        The figures and decisions of the run (``status`` says what happened to the model).
    """
    from maskops.train.api import resolve_config

    settings = Settings()
    task_cfg = load_task(task, settings)
    if reviewed_dirs:
        task_cfg = with_reviewed(task_cfg, reviewed_dirs)
    cfg = resolve_config(task_cfg.train, Path(config) if config else None)
    task_data = task_cfg.model_dump(mode="json")
    sdata = _settings_data(settings)
    fingerprint = stages.data_fingerprint(task_cfg, settings)

    validation = validate_step(task_data, sdata, fingerprint)
    prepared = prepare_step(task_data, sdata, fingerprint)
    if not Path(prepared["manifest"]).is_file():  # a cached result whose files were deleted since
        prepared = prepare_step.with_options(refresh_cache=True)(task_data, sdata, fingerprint)
    train_data = cfg.model_dump(mode="json")
    key = _key(task_data, train_data, prepared["manifest_hash"])
    run_dir = settings.work_dir / "runs" / task_cfg.name / f"retrain-{key}"
    train_args = (task_data, train_data, sdata, prepared["manifest"], prepared["manifest_hash"], str(run_dir))
    trained = train_step(*train_args, tracking_uri)
    if not Path(trained["checkpoint"]).is_file():
        trained = train_step.with_options(refresh_cache=True)(*train_args, tracking_uri)
    checkpoint = trained["checkpoint"]
    exported = export_step(
        task_data,
        checkpoint,
        stages.file_sha256(Path(checkpoint)),
        prepared["manifest"],
        str(run_dir / "release"),
        weights,
        reference,
    )
    model = exported["shipped"]
    evaluation = evaluate_step(
        model,
        stages.file_sha256(Path(model)),
        prepared["manifest"],
        prepared["manifest_hash"],
        task_cfg.name,
        split,
        str(settings.work_dir / "reports" / task_cfg.name / f"retrain-{key}"),
    )
    outcome: dict[str, Any] = {
        "task": task_cfg.name,
        "validation": validation,
        "manifest_hash": prepared["manifest_hash"],
        "run_dir": str(run_dir),
        "mlflow_run_id": trained["run_id"],
        "model": model,
        "evaluation": evaluation,
        "version": None,
        "promoted": False,
        "reasons": [],
    }
    refused = quality_gate_step(evaluation, min_macro_f1)
    if refused:
        outcome.update(status="not registered: below the quality bar", reasons=refused)
    else:
        outcome["version"] = register_step(model, task_cfg.name, tracking_uri)
        if approval == "human":
            outcome["status"] = (
                f"challenger v{outcome['version']} registered, awaiting approval: "
                f"`maskops models promote --task {task_cfg.name}` (the promotion gate still applies)"
            )
        else:
            decision = promotion_gate_step(task_cfg.name, tolerance, tracking_uri)
            outcome.update(promoted=decision["promoted"], reasons=decision["reasons"])
            verdict = "promoted to champion" if decision["promoted"] else "not promoted (gate)"
            outcome["status"] = f"v{outcome['version']} {verdict}"
    create_markdown_artifact(
        markdown=stages.summary_markdown(task_cfg.name, evaluation, outcome),
        key=_artifact_key(task_cfg.name),
        description=f"{task_cfg.name}: evaluation of the retrained model and the release decision",
    )
    return outcome


# --- monitor

# ``checks(engine, config, now)`` runs one monitoring check and returns a result whose ``firing`` lists
# the (rule, key) of the alerts firing after it (``maskops.monitor.runner.run_checks``)
ChecksFn = Callable[[Any, Any, datetime | None], Any]
# ``reviewed(engine, since)``: reviewed hard cases answered after ``since``
ReviewedFn = Callable[[Any, datetime | None], int]


def _default_checks(engine: Any, config: Any, now: datetime | None) -> Any:
    from maskops.monitor.runner import run_checks

    return run_checks(engine, config, now=now)


def _state_path(settings: Settings) -> Path:
    return settings.work_dir / "pipelines" / STATE_FILE


def _last_retrain(settings: Settings) -> datetime | None:
    path = _state_path(settings)
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8")).get("last_retrain_at")
    return datetime.fromisoformat(value) if value else None


def _save_retrain(settings: Settings, when: datetime, outcome: dict[str, Any]) -> None:
    path = _state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "last_retrain_at": when.isoformat(),
        "status": outcome.get("status"),
        "version": outcome.get("version"),
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


@task(name="monitoring-checks", retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE)
def checks_step(engine: Any, config: Any, now: datetime | None, checks: ChecksFn) -> list[tuple[str, str]]:
    """Run one check; the firing alerts whose rule asks for retraining."""
    result = checks(engine, config, now)
    wanted = {r.name for r in config.rules if r.retrain}
    return [(rule, key) for rule, key in getattr(result, "firing", []) if rule in wanted]


@task(name="reviewed-hard-cases", retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE)
def reviewed_step(engine: Any, since: datetime | None, reviewed: ReviewedFn) -> int:
    return int(reviewed(engine, since))


@flow(name="maskops-monitor")
def monitor(
    config_path: str | None = None,
    task: str = "facemask",
    min_reviewed: int = 50,
    approval: Approval = "human",
    retrain_options: dict[str, Any] | None = None,
    now: datetime | None = None,
    checks: Any = None,
    reviewed: Any = None,
) -> dict[str, Any]:
    """One monitoring check; start ``retrain`` when a ``retrain: true`` alert is firing and at least
    ``min_reviewed`` hard cases were reviewed since the last retrain.

    Args:
        config_path: the monitoring config (default: ``configs/monitor.yaml``).
        task: the task ``retrain`` trains.
        min_reviewed: reviewed hard cases (answered since the last retrain) a retrain needs.
        approval: the retrain's approval mode (``human`` by default: a scheduled retrain waits for a person).
        retrain_options: more ``retrain`` parameters (config, tolerance, weights, ...).
        now: the check's time (default: now).
        checks: ``checks(engine, config, now)`` (default ``maskops.monitor.runner.run_checks``).
        reviewed: ``reviewed(engine, since) -> int`` (default ``stages.count_reviewed``).

    Returns:
        The retrain alerts firing, the reviewed count, and the retrain's outcome (None when not started).
    """
    from maskops.monitor.alert_config import DEFAULT_CONFIG, load_monitor_config
    from maskops.monitor.db import open_store
    from maskops.monitor.review import export_reviewed

    settings = Settings()
    config = load_monitor_config(config_path or DEFAULT_CONFIG)
    since = _last_retrain(settings)
    engine = open_store(settings.store_url())
    try:
        firing = checks_step(engine, config, now, checks or _default_checks)
        n_reviewed = reviewed_step(engine, since, reviewed or stages.count_reviewed)
        out: dict[str, Any] = {"retrain_alerts": firing, "reviewed": n_reviewed, "retrain": None}
        if not firing:
            out["decision"] = "no retrain: no alert marked retrain is firing"
            return out
        if n_reviewed < min_reviewed:
            out["decision"] = f"no retrain: {n_reviewed} reviewed hard cases, {min_reviewed} needed"
            return out
        started = datetime.now(UTC)
        folder = settings.work_dir / "reviewed" / started.strftime("%Y%m%d-%H%M%S")
        written = export_reviewed(engine, folder)
    finally:
        engine.dispose()
    out["decision"] = f"retrain: {', '.join(r for r, _ in firing)} firing, {n_reviewed} reviewed hard cases"
    outcome = retrain(
        task=task,
        approval=approval,
        reviewed_dirs=[str(folder)] if sum(written.values()) else None,
        **(retrain_options or {}),
    )
    _save_retrain(settings, started, outcome)
    out["retrain"] = outcome
    return out


def serve_monitor(**parameters: Any) -> None:
    """Serve ``monitor`` with these parameters every ``interval`` of the monitoring config (blocks)."""
    from maskops.monitor.alert_config import DEFAULT_CONFIG, load_monitor_config

    config = load_monitor_config(parameters.get("config_path") or DEFAULT_CONFIG)
    monitor.serve(
        name="maskops-monitor",
        interval=config.interval.total_seconds(),
        parameters={k: v for k, v in parameters.items() if v is not None},
    )
