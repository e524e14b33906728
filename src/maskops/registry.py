"""The MLflow Model Registry for exported classifiers: register, promote with a gate, roll back.

One registered model per task (its name is the task name, e.g. ``facemask``). Each version's files
are the ``.onnx`` model and its card, logged as run artifacts under ``onnx_model/``; the card's
metrics are copied to version tags so the registry can compare versions without downloading.

Aliases: ``challenger`` (the latest registered candidate), ``champion`` (what serving uses) and
``previous_champion``. The registered model's ``champion_history`` tag holds the stack of former
champions (a JSON list of versions, oldest first) that ``rollback`` pops.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maskops.types import ModelSpec

# MLflow's embedded default store (tracking and registry); MLFLOW_TRACKING_URI points elsewhere
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

ARTIFACT_DIR = "onnx_model"
CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"
HISTORY_TAG = "champion_history"


class RegistryError(ValueError):
    """A registry operation cannot be done (unknown model, missing alias, nothing to roll back to)."""


@dataclass(frozen=True)
class VersionRow:
    """One registered version, as ``list_versions`` reports it."""

    version: int
    aliases: list[str]
    macro_f1: float | None
    accuracy: float | None
    created: str
    run_id: str


@dataclass
class PromotionDecision:
    """The outcome of ``promote``: whether the challenger became champion, and why (not).

    Attributes:
        promoted: the challenger is now the champion.
        reasons: one line per figure that blocked the promotion, or why it went through.
        challenger_version, champion_version: the versions compared (champion ``None`` if there was none).
        challenger_metrics, champion_metrics: the figures compared: ``macro_f1`` and ``recall/<class>``.
        tolerance: the allowed drop of any class's recall.
    """

    promoted: bool
    reasons: list[str]
    challenger_version: int | None
    champion_version: int | None
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    tolerance: float = 0.02


def _client(tracking_uri: str | None) -> MlflowClient:
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _is_missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower()


def card_metric_tags(metrics: dict[str, Any]) -> dict[str, str]:
    """A card's metrics as version tags, with the promotion figures flat.

    ``maskops train`` writes ``{"val": {...}, "test": {...}}``: each split is tagged with its
    prefix (``test.macro_f1``, ``test.recall/with_mask``) and the *val* figures also flat
    (``macro_f1``, ``recall/<class>``), which the promotion gate and ``models list`` read; test
    figures never decide a promotion. A card with flat metrics is tagged as it is.
    """
    splits = {k: v for k, v in metrics.items() if k in ("val", "test") and isinstance(v, dict)}
    if not splits:
        return metric_tags(metrics)
    tags = {f"{split}.{k}": v for split, figures in splits.items() for k, v in metric_tags(figures).items()}
    if "val" in splits:
        tags.update(metric_tags(splits["val"]))
    return tags


def metric_tags(metrics: dict[str, Any]) -> dict[str, str]:
    """Flatten card metrics to version tags.

    Top-level numbers keep their name (``macro_f1``, ``accuracy``); per-class figures from
    ``classification_metrics`` (``per_class: {name: {precision, recall, ...}}``) become
    ``<figure>/<class>`` (``recall/mask_weared_incorrect``). Other nested dicts are joined with ``.``.
    """
    tags: dict[str, str] = {}

    def put(key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        tags[key] = repr(float(value))

    for key, value in metrics.items():
        if key == "per_class" and isinstance(value, dict):
            for cls, figures in value.items():
                if isinstance(figures, dict):
                    for fig, v in figures.items():
                        put(f"{fig}/{cls}", v)
        elif isinstance(value, dict):
            for sub, v in value.items():
                put(f"{key}.{sub}", v)
        else:
            put(key, value)
    return tags


def _float_tag(tags: dict[str, str], key: str) -> float | None:
    try:
        return float(tags[key])
    except (KeyError, ValueError):
        return None


def _require_registered_model(client: MlflowClient, task_name: str) -> Any:
    try:
        return client.get_registered_model(task_name)
    except Exception as exc:
        if not _is_missing(exc):
            raise
        names = sorted(m.name for m in client.search_registered_models())
        raise RegistryError(
            f"no registered model named {task_name!r}; registered: {', '.join(names) or 'none'}"
        ) from exc


def _alias_version(client: MlflowClient, task_name: str, alias: str) -> int | None:
    aliases = _require_registered_model(client, task_name).aliases or {}
    version = aliases.get(alias)
    return None if version is None else int(version)


def register_onnx_model(
    run_id: str,
    onnx_path: str | Path,
    task_name: str,
    card: ModelSpec | None = None,
    *,
    alias: str | None = CHALLENGER,
    tracking_uri: str | None = None,
) -> int:
    """Log an ONNX model and its card to a run and register them as a new version.

    Args:
        run_id: the MLflow run that produced the model (it must exist in the tracking store).
        onnx_path: the exported ``.onnx`` file.
        task_name: registered model name (created when missing).
        card: the model card; read from beside ``onnx_path`` when not given.
        alias: alias pointed at the new version (``challenger`` by default; ``None`` for none).
        tracking_uri: MLflow tracking/registry URI (see ``resolve_tracking_uri``).

    Returns:
        The new version number.

    Raises:
        FileNotFoundError: the ONNX file or its card is missing.
        RegistryError: the run does not exist.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    if card is None:
        card = ModelSpec.load(ModelSpec.card_path(onnx_path))
    client = _client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        if not _is_missing(exc):
            raise
        raise RegistryError(
            f"MLflow run {run_id!r} not found in {resolve_tracking_uri(tracking_uri)}"
        ) from exc

    # The card travels under the name that ModelSpec.card_path expects beside the model.
    client.log_artifact(run_id, str(onnx_path), ARTIFACT_DIR)
    with tempfile.TemporaryDirectory(prefix="maskops-card-") as tmp:
        card_file = card.save(Path(tmp) / ModelSpec.card_path(onnx_path).name)
        client.log_artifact(run_id, str(card_file), ARTIFACT_DIR)

    try:
        client.get_registered_model(task_name)
    except Exception as exc:
        if not _is_missing(exc):
            raise
        client.create_registered_model(task_name, description=f"maskops classifier for task {task_name!r}")

    tags = {
        **card_metric_tags(card.metrics),
        "task": card.task,
        "architecture": card.architecture,
        "input_size": f"{card.input_size[0]}x{card.input_size[1]}",
        "classes": ",".join(card.class_names),
        "manifest_hash": card.manifest_hash,
        "git_commit": card.git_commit,
        "model_file": onnx_path.name,
        "quantized": str(card.extra.get("quantized", "")),
    }
    mv = client.create_model_version(
        task_name,
        source=f"{run.info.artifact_uri.rstrip('/')}/{ARTIFACT_DIR}",
        run_id=run_id,
        tags=tags,
        description=f"{card.architecture} {card.input_size[0]}x{card.input_size[1]} from {onnx_path.name}",
    )
    version = int(mv.version)
    if alias:
        client.set_registered_model_alias(task_name, alias, str(version))
    logger.info("registered %s version %d (alias %s) from run %s", task_name, version, alias, run_id)
    return version


def set_alias(task_name: str, alias: str, version: int, *, tracking_uri: str | None = None) -> None:
    """Point ``alias`` of ``task_name`` at ``version``.

    Raises:
        RegistryError: unknown registered model or version.
    """
    client = _client(tracking_uri)
    _require_registered_model(client, task_name)
    try:
        client.get_model_version(task_name, str(version))
    except Exception as exc:
        if not _is_missing(exc):
            raise
        raise RegistryError(f"{task_name} has no version {version}") from exc
    client.set_registered_model_alias(task_name, alias, str(version))


def get_alias(task_name: str, alias: str, *, tracking_uri: str | None = None) -> int | None:
    """The version ``alias`` points at, or ``None``."""
    return _alias_version(_client(tracking_uri), task_name, alias)


def _figures(client: MlflowClient, task_name: str, version: int) -> dict[str, float]:
    tags = client.get_model_version(task_name, str(version)).tags or {}
    out: dict[str, float] = {}
    for key in tags:
        if key == "macro_f1" or key.startswith("recall/"):
            value = _float_tag(tags, key)
            if value is not None:
                out[key] = value
    return out


def _history(client: MlflowClient, task_name: str) -> list[int]:
    raw = (_require_registered_model(client, task_name).tags or {}).get(HISTORY_TAG, "[]")
    try:
        return [int(v) for v in json.loads(raw)]
    except (ValueError, TypeError):
        logger.warning("ignoring unreadable %s tag on %s: %r", HISTORY_TAG, task_name, raw)
        return []


def _set_history(client: MlflowClient, task_name: str, history: list[int]) -> None:
    client.set_registered_model_tag(task_name, HISTORY_TAG, json.dumps(history))
    if history:
        client.set_registered_model_alias(task_name, PREVIOUS_CHAMPION, str(history[-1]))
    else:
        try:
            client.delete_registered_model_alias(task_name, PREVIOUS_CHAMPION)
        except Exception as exc:
            if not _is_missing(exc):
                raise


def compare(
    challenger: dict[str, float], champion: dict[str, float], tolerance: float
) -> tuple[bool, list[str]]:
    """The promotion gate, as a pure function of the two versions' figures.

    Args:
        challenger, champion: ``macro_f1`` and ``recall/<class>`` figures.
        tolerance: the largest allowed drop of any class's recall.

    Returns:
        ``(passed, reasons)``; each blocking figure gives one reason naming the numbers compared.
    """
    blocked: list[str] = []
    c_f1, k_f1 = challenger.get("macro_f1"), champion.get("macro_f1")
    if c_f1 is None:
        blocked.append("challenger has no macro_f1 figure")
    elif k_f1 is not None and c_f1 < k_f1:
        blocked.append(f"macro_f1 {c_f1:.4f} < champion {k_f1:.4f}")
    for key in sorted(k for k in champion if k.startswith("recall/")):
        cls = key.split("/", 1)[1]
        if key not in challenger:
            blocked.append(f"challenger has no recall for class {cls} (champion {champion[key]:.4f})")
        elif challenger[key] < champion[key] - tolerance - 1e-12:
            blocked.append(
                f"recall of {cls} {challenger[key]:.4f} < champion {champion[key]:.4f} - {tolerance:g}"
            )
    if blocked:
        return False, blocked
    reasons = []
    if c_f1 is not None and k_f1 is not None:
        reasons.append(f"macro_f1 {c_f1:.4f} >= champion {k_f1:.4f}")
    n_recall = sum(1 for k in champion if k.startswith("recall/"))
    if n_recall:
        reasons.append(f"no class recall dropped by more than {tolerance:g} ({n_recall} classes checked)")
    return True, reasons


def promote(task_name: str, *, tolerance: float = 0.02, tracking_uri: str | None = None) -> PromotionDecision:
    """Promote the ``challenger`` to ``champion`` unless it is worse.

    Refused when the challenger's macro-F1 is below the champion's, or when any class's recall is
    more than ``tolerance`` below the champion's. With no champion yet, the challenger is promoted.
    On promotion the old champion is pushed on the history (alias ``previous_champion``) and the
    ``challenger`` alias is removed.

    Args:
        task_name: the registered model (task) name.
        tolerance: the largest allowed drop of any class's recall (absolute, 0.02 = 2 points).
        tracking_uri: MLflow tracking/registry URI.

    Returns:
        The decision with the figures compared.

    Raises:
        RegistryError: unknown registered model, or no ``challenger`` alias.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    client = _client(tracking_uri)
    challenger = _alias_version(client, task_name, CHALLENGER)
    if challenger is None:
        raise RegistryError(
            f"{task_name} has no {CHALLENGER!r} alias: register a model version first "
            f"(register_onnx_model sets it) or set the alias"
        )
    champion = _alias_version(client, task_name, CHAMPION)
    c_figs = _figures(client, task_name, challenger)
    if champion == challenger:
        return PromotionDecision(
            False, [f"version {challenger} is already the champion"], challenger, champion, c_figs, c_figs
        )
    k_figs = _figures(client, task_name, champion) if champion is not None else {}
    if champion is None:
        passed, reasons = True, ["no champion yet"]
    else:
        passed, reasons = compare(c_figs, k_figs, tolerance)
    decision = PromotionDecision(passed, reasons, challenger, champion, c_figs, k_figs, tolerance)
    if not passed:
        logger.info("promotion of %s v%d refused: %s", task_name, challenger, "; ".join(reasons))
        return decision
    if champion is not None:
        _set_history(client, task_name, [*_history(client, task_name), champion])
    client.set_registered_model_alias(task_name, CHAMPION, str(challenger))
    client.delete_registered_model_alias(task_name, CHALLENGER)
    client.set_model_version_tag(task_name, str(challenger), "promoted_at", _now())
    logger.info("promoted %s v%d to champion (was %s)", task_name, challenger, champion)
    return decision


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def rollback(task_name: str, *, tracking_uri: str | None = None) -> tuple[int | None, int]:
    """Point ``champion`` back at the previous champion.

    Versions deleted since they were champion are skipped.

    Returns:
        ``(from_version, to_version)``.

    Raises:
        RegistryError: unknown registered model, or no previous champion to return to.
    """
    client = _client(tracking_uri)
    current = _alias_version(client, task_name, CHAMPION)
    history = _history(client, task_name)
    while history:
        candidate = history.pop()
        try:
            client.get_model_version(task_name, str(candidate))
        except Exception as exc:
            if not _is_missing(exc):
                raise
            logger.warning("skipping deleted version %d of %s in the champion history", candidate, task_name)
            continue
        _set_history(client, task_name, history)
        client.set_registered_model_alias(task_name, CHAMPION, str(candidate))
        if current is not None:
            client.set_model_version_tag(task_name, str(current), "rolled_back_at", _now())
        logger.info("rolled %s champion back from v%s to v%d", task_name, current, candidate)
        return current, candidate
    _set_history(client, task_name, [])
    raise RegistryError(
        f"nothing to roll back to: {task_name} has no previous champion "
        f"(current champion: {current if current is not None else 'none'})"
    )


def list_versions(task_name: str, *, tracking_uri: str | None = None) -> list[VersionRow]:
    """Every version of ``task_name``, newest first, with its aliases and headline figures.

    Raises:
        RegistryError: unknown registered model.
    """
    client = _client(tracking_uri)
    aliases_map = _require_registered_model(client, task_name).aliases or {}
    by_version: dict[int, list[str]] = {}
    for alias, version in aliases_map.items():
        by_version.setdefault(int(version), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name='{task_name}'"):
        tags = mv.tags or {}
        created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(timespec="seconds")
        rows.append(
            VersionRow(
                version=int(mv.version),
                aliases=sorted(by_version.get(int(mv.version), [])),
                macro_f1=_float_tag(tags, "macro_f1"),
                accuracy=_float_tag(tags, "accuracy"),
                created=created,
                run_id=mv.run_id or "",
            )
        )
    return sorted(rows, key=lambda r: r.version, reverse=True)


def download(
    task_name: str,
    alias: str,
    dst_dir: str | Path | None = None,
    *,
    tracking_uri: str | None = None,
) -> Path:
    """Download the ONNX file (and its card, beside it) that ``alias`` points at.

    Args:
        task_name: the registered model (task) name.
        alias: an alias (``champion``, ``challenger``, ...) or a version number as text.
        dst_dir: target folder; default ``$MASKOPS_WORK_DIR/registry/<task>/v<version>``. An existing
            complete download there is reused (versions are immutable).
        tracking_uri: MLflow tracking/registry URI.

    Returns:
        The path of the downloaded ``.onnx`` file.

    Raises:
        RegistryError: unknown model, alias or version, or the version holds no ONNX file.
    """
    import mlflow

    client = _client(tracking_uri)
    if alias.isdigit():
        version: int | None = int(alias)
        _require_registered_model(client, task_name)
    else:
        version = _alias_version(client, task_name, alias)
        if version is None:
            known = sorted((_require_registered_model(client, task_name).aliases or {}).keys())
            raise RegistryError(f"{task_name} has no alias {alias!r}; aliases: {', '.join(known) or 'none'}")
    try:
        mv = client.get_model_version(task_name, str(version))
    except Exception as exc:
        if not _is_missing(exc):
            raise
        raise RegistryError(f"{task_name} has no version {version}") from exc

    if dst_dir is None:
        from maskops.config import Settings

        dst_dir = Settings().work_dir / "registry" / task_name / f"v{version}"
    dst = Path(dst_dir)
    model_name = (mv.tags or {}).get("model_file", "")
    cached = dst / model_name if model_name else None
    if cached is not None and cached.is_file() and ModelSpec.card_path(cached).is_file():
        return cached

    dst.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="maskops-dl-", dir=dst) as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=mv.source, dst_path=tmp, tracking_uri=resolve_tracking_uri(tracking_uri)
            )
        )
        models = sorted(local.rglob("*.onnx"))
        if not models:
            raise RegistryError(f"{task_name} version {version} ({mv.source}) holds no .onnx file")
        onnx_file = models[0]
        card = ModelSpec.card_path(onnx_file)
        if not card.is_file():
            raise RegistryError(
                f"{task_name} version {version}: no model card {card.name} beside {onnx_file.name}"
            )
        for f in (onnx_file, card):
            shutil.move(str(f), dst / f.name)
    logger.info("downloaded %s v%d to %s", task_name, version, dst)
    return dst / onnx_file.name
