"""Task configs: layering with ``extends`` and the shipped experiment configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from maskops.config import Settings, load_task, merge_layers

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted((REPO / "configs" / "experiments").glob("*.yaml"))

BASE = {
    "name": "t",
    "kind": "classification",
    "classes": ["a", "b"],
    "sources": [{"name": "s", "kind": "folder", "path": "s"}],
    "split": {"fractions": {"train": 0.6, "val": 0.2, "test": 0.2}, "seed": 3},
    "train": {"epochs": 4, "model_options": {"pad_for": 224}, "int8_float_nodes": ["x"]},
}


def _write(path: Path, data: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    _write(tmp_path / "configs" / "tasks" / "base.yaml", BASE)
    return Settings(config_dir=tmp_path / "configs", work_dir=tmp_path / "work")


def test_merge_layers_merges_mappings_replaces_values_and_null_removes() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 2, "c": 3}
    out = merge_layers(base, {"a": {"y": [3]}, "b": None, "d": 4})
    assert out == {"a": {"x": 1, "y": [3]}, "c": 3, "d": 4}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 2, "c": 3}  # inputs untouched


def test_overlay_changes_one_field_and_inherits_the_rest(settings: Settings, tmp_path: Path) -> None:
    one = _write(tmp_path / "exp" / "one.task.yaml", {"extends": "base", "split": {"seed": 9}})
    two = _write(tmp_path / "exp" / "two.task.yaml", {"extends": "one.task.yaml", "train": {"epochs": 7}})
    base = load_task("base", settings)
    first, second = load_task(one, settings), load_task(two, settings)
    assert first.split.seed == 9 and first.split.fractions == base.split.fractions
    assert first.model_copy(update={"split": base.split}) == base
    assert (second.split.seed, second.train.epochs, second.train.model_options) == (9, 7, {"pad_for": 224})


def test_null_restores_a_default(settings: Settings, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "v.yaml", {"extends": "base", "train": {"model_options": None, "int8_float_nodes": None}}
    )
    train = load_task(path, settings).train
    assert train.model_options == {} and train.int8_float_nodes == [] and train.epochs == 4


@pytest.mark.parametrize(
    ("extends", "message"),
    [
        ("nowhere", r"extends 'nowhere': no task file at .*tasks/nowhere\.yaml"),
        ("self.yaml", r"extends 'self\.yaml' makes a cycle"),
        (3, "extends must be a task name or a path"),
    ],
)
def test_bad_extends_is_a_clear_error(
    settings: Settings, tmp_path: Path, extends: object, message: str
) -> None:
    path = _write(tmp_path / "self.yaml", {"extends": extends})
    with pytest.raises(ValueError, match=message):
        load_task(path, settings)


@pytest.mark.parametrize(
    "path", [p for p in EXPERIMENTS if p.name.endswith(".task.yaml")], ids=lambda p: p.name
)
def test_experiment_task_files_are_small_overlays_that_load(path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert "extends" in data and "sources" not in data, "an experiment task says only what differs"
    assert load_task(path).name == "facemask"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_configs_name_no_local_run_paths(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "work/runs" not in text
    data = yaml.safe_load(text) or {}
    for teacher in (data.get("distill") or {}).get("teachers", []):
        assert "/" not in teacher, f"{path.name}: teacher {teacher!r} should be a run name"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_configs_are_quoted_in_the_experiment_log(path: Path) -> None:
    # every experiment config has its dated result and decision in docs/experiments.md
    assert path.name in (REPO / "docs" / "experiments.md").read_text(encoding="utf-8")
