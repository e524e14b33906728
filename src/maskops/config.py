"""Settings (``MASKOPS_*`` environment) and task configs (``configs/tasks/*.yaml``).

Tasks are data, not code: a task names its kind, its classes, its data sources and its split rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent.parent


def _default_shared() -> Path:
    """``../shared`` beside the project root, as the workplace lays it out."""
    return (REPO_ROOT.parent / "shared").resolve()


def _default_data_dir() -> Path:
    return _default_shared() / "datasets"


def _default_yunet() -> Path | None:
    candidate = _default_shared() / "models" / "face_detection_yunet_2026may.onnx"
    return candidate if candidate.is_file() else None


class Settings(BaseSettings):
    """Process-wide settings, read from ``MASKOPS_*`` environment variables (and ``.env``)."""

    model_config = SettingsConfigDict(env_prefix="MASKOPS_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir, description="root of the raw datasets")
    work_dir: Path = Field(default=Path("work"), description="prepared manifests, crops, runs, reports")
    models_dir: Path = Field(default=REPO_ROOT / "models", description="shipped models and their cards")
    config_dir: Path = Field(default=REPO_ROOT / "configs", description="task configs live in tasks/")
    yunet_path: Path | None = Field(default_factory=_default_yunet)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="where models run (maskops.device): auto (CUDA when present, else CPU), cpu, or cuda "
        "(an error when there is none)",
    )
    database_url: str | None = Field(
        default=None,
        description="prediction store, e.g. postgresql+psycopg://user:password@host/maskops "
        "(default: SQLite at <work_dir>/maskops.db)",
    )
    store_predictions: bool = Field(default=True, description="record every served prediction in the store")
    store_faces: Literal["off", "hard"] = Field(
        default="off",
        description="face pixels in the store: off (none), or hard (crops of hard cases only, for review; "
        "deleted with their rows by maskops monitor prune)",
    )
    hard_case_confidence: float = Field(
        default=0.6, gt=0, le=1, description="a face answered uncertain or below this top probability is hard"
    )
    hard_case_rate: float = Field(
        default=1.0, ge=0, le=1, description="share of hard cases whose crop is kept"
    )

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, v: str | None) -> str | None:
        if v:
            from maskops.monitor.db import parse_database_url  # sqlalchemy only when a URL is set

            parse_database_url(v)
        return v or None

    def prepared_dir(self, task: str) -> Path:
        return self.work_dir / "prepared" / task

    def store_url(self) -> str:
        """The prediction store's URL: ``database_url``, or SQLite in the work dir."""
        return self.database_url or f"sqlite:///{self.work_dir / 'maskops.db'}"


class SourceConfig(BaseModel):
    """One raw dataset feeding a task."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["voc", "folder"]
    path: str = Field(description="folder under the data dir (or absolute)")
    splits_file: str | None = Field(default=None, description="fixed split by image stem (VOC)")
    label_map: dict[str, str] = Field(default_factory=dict, description="raw label -> task class")
    crop: Literal["boxes", "face", "none"] = Field(
        default="none", description="boxes: VOC boxes; face: single-face crop by the face detector"
    )
    group_pattern: str | None = Field(default=None, description="regex whose group(1) is the group id")
    splits_for: list[str] | None = Field(default=None, description="restrict this source to these splits")
    licence: str | None = Field(
        default=None, description="the data's licence or terms of use; a model card trained on it repeats it"
    )


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fractions: dict[str, float] = Field(default_factory=lambda: {"train": 0.7, "val": 0.15, "test": 0.15})
    seed: int = 20261122

    @field_validator("fractions")
    @classmethod
    def _check_fractions(cls, v: dict[str, float]) -> dict[str, float]:
        if set(v) != {"train", "val", "test"}:
            raise ValueError(f"fractions must name train, val and test, got {sorted(v)}")
        if any(x < 0 for x in v.values()) or abs(sum(v.values()) - 1.0) > 1e-6:
            raise ValueError(f"fractions must be >= 0 and sum to 1, got {v}")
        return v


class CropConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    margin: float = Field(default=0.15, ge=0.0, le=1.0, description="extra context around a box, per side")
    min_size: int = Field(
        default=8, ge=1, description="boxes smaller than this (px, shorter side) are dropped"
    )
    min_size_splits: list[str] = Field(
        default_factory=lambda: ["train", "val"],
        description="splits the min_size filter applies to; boxes of a fixed test split are all kept so "
        "reported figures cover every annotated face",
    )


# where a synthetic mask sits -> the class it makes (maskops.data.synth)
PLACEMENT_LABELS: dict[str, str] = {
    "correct": "with_mask",
    "under_nose": "mask_weared_incorrect",
    "chin": "mask_weared_incorrect",
}


class SynthConfig(BaseModel):
    """Synthetic masks painted on unmasked training faces (``maskops.data.synth``)."""

    model_config = ConfigDict(extra="forbid")

    from_label: str = Field(default="without_mask", description="the class whose faces get a mask painted on")
    placements: dict[Literal["correct", "under_nose", "chin"], int] = Field(
        description="crops to make per placement: correct -> with_mask, under_nose/chin -> mask_weared_incorrect"
    )
    min_face_px: int = Field(
        default=40, ge=16, description="source crops with a shorter side below this are skipped"
    )
    seed: int = 0
    real_texture: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="share of the crops whose mask is real fabric cut from a texture_label training face "
        "(maskops.data.synth.transplant_mask) instead of painted",
    )
    texture_label: str = Field(
        default="with_mask", description="the class of correctly masked faces the real fabric is cut from"
    )
    max_donors: int = Field(default=600, ge=1, description="at most this many faces give their mask's fabric")
    under_nose_top: tuple[float, float] = Field(
        default=(0.2, 0.6),
        description="range of an under_nose mask's top edge: share of the way from the nose tip (0) to the mouth (1)",
    )
    side_lift: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="a wrong mask's top corners ride up to this share of the nose depth above its middle",
    )

    @model_validator(mode="after")
    def _check(self) -> SynthConfig:
        bad = {k: v for k, v in self.placements.items() if v < 0}
        if bad:
            raise ValueError(f"placement counts must be >= 0, got {bad}")
        lo, hi = self.under_nose_top
        if not 0.0 <= lo <= hi < 1.0:
            raise ValueError(
                f"under_nose_top must be 0 <= low <= high < 1 (nose tip 0, mouth 1), got {[lo, hi]}"
            )
        return self


class DistillConfig(BaseModel):
    """Knowledge distillation: the student also learns the teachers' softened probabilities."""

    model_config = ConfigDict(extra="forbid")

    teachers: list[str] = Field(
        min_length=1,
        description="maskops runs of the same task: run names under <work_dir>/runs/<task>/ (their "
        "best.pt; e.g. pad224) or absolute checkpoint paths; their probabilities at the distillation "
        "temperature are averaged",
    )
    alpha: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="weight of the distillation term; the cross-entropy with the labels gets 1 - alpha",
    )
    temperature: float = Field(default=2.0, gt=0, description="softening temperature of both sides")


class TrainConfig(BaseModel):
    """Training defaults of a task; the CLI and ``--config`` override them."""

    model_config = ConfigDict(extra="forbid")

    model: str = "efficientnet_lite0"
    model_options: dict[str, Any] = Field(
        default_factory=dict,
        description="extra keyword options of the model builder (maskops.models.model_options(model) "
        "lists them), e.g. {pad_for: 224} for efficientnet_lite0; stored in the checkpoint",
    )
    input_size: int = Field(default=128, ge=16)
    epochs: int = Field(default=12, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    schedule: Literal["cosine", "onecycle"] = "cosine"
    warmup_epochs: float = Field(default=1.0, ge=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    patience: int = Field(default=4, ge=1)
    select_on: Literal["macro_f1", "loss"] = Field(
        default="macro_f1",
        description="validation figure for the best epoch and early stopping: macro-F1 (higher is better) "
        "or cross-entropy loss (lower is better; steadier when a class has few validation samples)",
    )
    seed: int = 0
    num_threads: int = Field(default=2, ge=1)
    class_weighting: Literal["none", "sqrt_inverse", "inverse"] = "sqrt_inverse"
    balanced_sampling: bool = True
    source_weights: dict[str, float] = Field(
        default_factory=dict,
        description="relative draw weight of training rows by manifest source (a key matches the source "
        "and its ':'-suffixed variants, e.g. facemask-photos also matches facemask-photos:whole); "
        "unlisted sources weigh 1; applies with balanced_sampling",
    )
    label_smoothing: float = Field(default=0.05, ge=0, lt=1)
    ema_decay: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="exponential moving average of the weights (and BatchNorm statistics) with this decay "
        "per step, warmed up as min(decay, (1 + n) / (10 + n)); validation, selection and export use the "
        "average; 0 = off",
    )
    int8_float_nodes: list[str] = Field(
        default_factory=list,
        description="regular expressions of node names kept in float by --weights int8, beyond the first "
        "convolution and the classifier layer (e.g. '/_blocks\\.0/': EfficientNet's first block)",
    )
    decision_bias: bool = Field(
        default=False,
        description="fit a per-class logit bias on validation that maximises macro-F1 and bake it into "
        "the final layer (helps a rare class); recorded in the card",
    )
    distill: DistillConfig | None = Field(
        default=None, description="learn from trained teachers as well as from the labels (off when unset)"
    )
    augment: dict[str, Any] = Field(default_factory=dict)


class FloatRange(BaseModel):
    """A range searched by ``maskops tune``: uniform, or log-uniform with ``log: true``."""

    model_config = ConfigDict(extra="forbid")

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> FloatRange:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"need low < high (and low > 0 when log), got low={self.low} high={self.high}")
        return self


class TuneConfig(BaseModel):
    """The search space of ``maskops tune`` (the task's optional ``tune:`` section); an unset entry
    keeps the task's training value."""

    model_config = ConfigDict(extra="forbid")

    lr: FloatRange | None = Field(default=None, description="peak learning rate")
    input_size: list[int] | None = Field(default=None, description="square input sides to choose from")
    model: list[str] | None = Field(default=None, description="registered model names to choose from")
    augment: dict[str, FloatRange] = Field(
        default_factory=dict, description="augmentation strengths (TrainConfig.augment keys, e.g. downscale)"
    )
    source_weights: dict[str, FloatRange] = Field(
        default_factory=dict, description="draw weight of training rows by source"
    )
    epochs: int | None = Field(default=None, ge=1, description="epochs per trial (default: the task's)")


class TaskConfig(BaseModel):
    """A task: its kind, classes, sources and split rule."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["detection", "classification"]
    classes: list[str]
    sources: list[SourceConfig]
    split: SplitConfig = Field(default_factory=SplitConfig)
    crops: CropConfig = Field(default_factory=CropConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    grayscale: bool = False
    synthetic: SynthConfig | None = None
    tune: TuneConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> TaskConfig:
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be at least two unique names, got {self.classes}")
        for src in self.sources:
            bad = sorted(set(src.label_map.values()) - set(self.classes))
            if bad:
                raise ValueError(
                    f"source {src.name!r}: label_map targets {bad} are not task classes {self.classes}"
                )
        if self.synthetic is not None:
            wanted = {self.synthetic.from_label} | {PLACEMENT_LABELS[p] for p in self.synthetic.placements}
            if self.synthetic.real_texture > 0:
                wanted.add(self.synthetic.texture_label)
            missing = sorted(wanted - set(self.classes))
            if missing:
                raise ValueError(f"synthetic: labels {missing} are not task classes {self.classes}")
        return self


def list_tasks(settings: Settings | None = None) -> list[str]:
    settings = settings or Settings()
    return sorted(p.stem for p in (settings.config_dir / "tasks").glob("*.yaml"))


# key of a task file naming the task it layers on (``extends: facemask`` or a path to a task yaml)
EXTENDS_KEY = "extends"


def merge_layers(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` laid on ``base``: mappings merge key by key, any other value (a list too) replaces
    the base's, and ``null`` removes the key, so the field is back to its default."""
    out = dict(base)
    for key, value in overlay.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_layers(out[key], value)
        else:
            out[key] = value
    return out


def _task_file(name_or_path: str | Path, settings: Settings, relative_to: Path | None = None) -> Path:
    path = Path(name_or_path)
    if not path.suffix:
        return settings.config_dir / "tasks" / f"{name_or_path}.yaml"
    return relative_to / path if relative_to is not None and not path.is_absolute() else path


def _task_data(path: Path, settings: Settings, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The task file's mapping, laid on the task it ``extends`` (recursively)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    parent = data.pop(EXTENDS_KEY, None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ValueError(
            f"{path}: {EXTENDS_KEY} must be a task name or a path to a task yaml, got {parent!r}"
        )
    parent_path = _task_file(parent, settings, relative_to=path.parent)
    if parent_path.resolve() in {p.resolve() for p in (*chain, path)}:
        raise ValueError(f"{path}: {EXTENDS_KEY} {parent!r} makes a cycle ({parent_path})")
    if not parent_path.is_file():
        raise ValueError(f"{path}: {EXTENDS_KEY} {parent!r}: no task file at {parent_path}")
    return merge_layers(_task_data(parent_path, settings, (*chain, path)), data)


def load_task(name_or_path: str | Path, settings: Settings | None = None) -> TaskConfig:
    """Load a task config by name (``configs/tasks/<name>.yaml``) or by path.

    A task file may layer on another with ``extends: <task name or path>`` (a path is relative to the
    file) and give only what differs: see ``merge_layers`` (mappings merge, lists and values replace,
    ``null`` restores a field's default).

    Raises:
        ValueError: unknown task (the message lists the known ones), an invalid file, or an
            ``extends`` that names no file or makes a cycle.
    """
    settings = settings or Settings()
    path = _task_file(name_or_path, settings)
    if not path.is_file():
        raise ValueError(
            f"unknown task {str(name_or_path)!r}; known tasks: {', '.join(list_tasks(settings)) or 'none'}"
        )
    data = _task_data(path, settings)
    try:
        return TaskConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid task config:\n{exc}") from exc


def resolve_source_path(source: SourceConfig, settings: Settings | None = None) -> Path:
    settings = settings or Settings()
    p = Path(source.path)
    return p if p.is_absolute() else settings.data_dir / p
