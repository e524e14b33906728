"""Integration tests on ../shared/datasets (skipped with the reason when absent)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from maskops.config import Settings, load_task
from maskops.data.manifest import read_manifest
from maskops.data.prepare import prepare_task
from maskops.data.sources import parse_voc, voc_items
from maskops.data.validate import validate_dataset

pytestmark = pytest.mark.integration


def _dataset(data_dir: Path, name: str) -> Path:
    path = data_dir / name
    if not path.is_dir():
        pytest.skip(f"dataset {name!r} not found at {path} (set MASKOPS_DATA_DIR to the shared datasets)")
    return path


def test_photos_exact_duplicates(data_dir: Path) -> None:
    report = validate_dataset(_dataset(data_dir, "facemask-photos"))
    summary = report.duplicate_summary()
    assert summary["exact_groups"] == 86
    assert summary["exact_files"] == 189
    assert summary["exact_cross_class_groups"] == 0
    assert summary["near_groups"] > 0
    assert report.counts == {"with_mask": 2164, "without_mask": 1930}


def test_voc_has_4072_boxes(data_dir: Path) -> None:
    items = voc_items(_dataset(data_dir, "facemask-voc"))
    assert sum(len(parse_voc(it.xml).objects) for it in items if it.xml is not None) == 4072


def test_malaria_splits_share_no_slide(data_dir: Path, tmp_path: Path) -> None:
    """Prepare on a slice of the real files (every 20th, linked) with the real task config."""
    root = _dataset(data_dir, "malaria-nih")
    task = load_task("malaria")
    sub = tmp_path / "data" / "malaria-nih"
    for k, path in enumerate(sorted(root.rglob("*.png"))):
        if k % 20 == 0:
            link = sub / path.relative_to(root)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
    report = prepare_task(task, Settings(data_dir=tmp_path / "data", work_dir=tmp_path / "work"))
    rows = read_manifest(report.manifest_path)
    pattern = re.compile(task.sources[0].group_pattern or "", re.IGNORECASE)
    splits_of_slide: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        m = pattern.search(Path(r.path).name)
        assert m is not None
        splits_of_slide[m.group(1)].add(r.split)
        assert r.group == f"malaria-nih:C{m.group(1)}"
    assert len(splits_of_slide) > 50
    assert all(len(s) == 1 for s in splits_of_slide.values())
    assert all(min(c.values()) > 0 for c in report.counts.values())
