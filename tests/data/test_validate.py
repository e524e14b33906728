from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from datagen import pattern_image, voc_xml, write_image
from typer.testing import CliRunner

from maskops.cli import app
from maskops.data.sources import parse_voc
from maskops.data.validate import (
    DEFAULT_BLOCKING,
    UnknownRuleError,
    ValidationRules,
    box_statistics,
    validate_dataset,
)


def _rules_fired(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {i.rule for i in report.issues}


def _clean_folder(root: Path) -> Path:
    for k in range(3):
        write_image(root / "with_mask" / f"w{k}.png", pattern_image(10 + k))
        write_image(root / "without_mask" / f"n{k}.jpg", pattern_image(20 + k), ".jpg")
    return root


def test_clean_folder_fires_nothing(tmp_path: Path) -> None:
    report = validate_dataset(_clean_folder(tmp_path / "ds"), workers=1)
    assert report.issues == []
    assert report.ok
    assert report.counts == {"with_mask": 3, "without_mask": 3}
    assert report.formats == {"png": 3, "jpeg": 3}
    assert report.exact_groups == [] and report.near_groups == []


def test_each_folder_rule_fires(tmp_path: Path) -> None:
    root = _clean_folder(tmp_path / "ds")
    w0 = root / "with_mask" / "w0.png"
    shutil.copy(w0, root / "without_mask" / "w0.png")  # same bytes in the other class
    shutil.copy(root / "with_mask" / "w2.png", root / "with_mask" / "w2 copy.png")  # same class
    small = cv2.resize(pattern_image(21), (64, 48), interpolation=cv2.INTER_AREA)
    write_image(root / "without_mask" / "n1_small.jpg", small, ".jpg")  # near duplicate of n1
    data = (root / "with_mask" / "w1.png").read_bytes()
    (root / "with_mask" / "cut.png").write_bytes(data[: len(data) // 2])
    (root / "with_mask" / "notes.jpg").write_text("not an image")
    write_image(root / "with_mask" / "tiny.png", pattern_image(30, (20, 24)))
    write_image(root / "with_mask" / "long.png", pattern_image(31, (40, 400)))
    write_image(root / "loose.png", pattern_image(32))
    bgra = np.dstack([pattern_image(33), np.full((96, 128), 200, np.uint8)])
    write_image(root / "with_mask" / "rgba.jpg_1088Wx1632H", bgra)

    report = validate_dataset(root, workers=1)
    fired = _rules_fired(report)
    assert fired == {
        "exact_duplicate",
        "label_conflict",
        "near_duplicate",
        "truncated",
        "unreadable",
        "tiny_image",
        "extreme_aspect",
        "no_class",
    }
    assert not report.ok
    assert report.blocking_found == ["label_conflict", "truncated", "unreadable"]
    summary = report.duplicate_summary()
    assert summary["exact_groups"] == 2 and summary["exact_files"] == 4
    assert summary["exact_cross_class_groups"] == 1
    near = [g for g in report.near_groups]
    assert len(near) == 1
    assert sorted(Path(p).name for p in near[0].paths) == ["n1.jpg", "n1_small.jpg"]
    assert report.modes["RGBA"] == 1
    reasons = {Path(i.path).name: i.detail for i in report.issues if i.rule in ("truncated", "unreadable")}
    assert reasons["cut.png"].startswith("truncated PNG")
    assert "not an image" in reasons["notes.jpg"]


def test_near_duplicate_across_classes_is_a_warning(tmp_path: Path) -> None:
    root = _clean_folder(tmp_path / "ds")
    small = cv2.resize(pattern_image(10), (64, 48), interpolation=cv2.INTER_AREA)
    write_image(root / "without_mask" / "w0_small.png", small)
    report = validate_dataset(root, workers=1)
    assert _rules_fired(report) == {"near_label_conflict"}
    assert report.ok


def test_blocking_is_configurable(tmp_path: Path) -> None:
    root = _clean_folder(tmp_path / "ds")
    shutil.copy(root / "with_mask" / "w0.png", root / "without_mask" / "w0.png")
    assert not validate_dataset(root, workers=1).ok
    relaxed = ValidationRules().with_blocking(remove=["label_conflict"])
    assert validate_dataset(root, relaxed, workers=1).ok
    strict = ValidationRules(blocking=frozenset()).with_blocking(add=["tiny_image"])
    write_image(root / "with_mask" / "t.png", pattern_image(1, (10, 10)))
    assert validate_dataset(root, strict, workers=1).blocking_found == ["tiny_image"]
    with pytest.raises(UnknownRuleError, match="valid rules"):
        ValidationRules().with_blocking(add=["nope"])
    assert "label_conflict" in DEFAULT_BLOCKING


def test_nested_class_folders(tmp_path: Path) -> None:
    root = tmp_path / "cells"
    write_image(root / "train" / "Parasitized" / "a.png", pattern_image(1))
    write_image(root / "valid" / "Parasitized" / "b.png", pattern_image(2))
    write_image(root / "train" / "Uninfected" / "c.png", pattern_image(3))
    report = validate_dataset(root, classes=["Parasitized", "Uninfected"], workers=1)
    assert report.counts == {"Parasitized": 2, "Uninfected": 1}


def _voc(root: Path) -> Path:
    objs = [("with_mask", 10, 10, 40, 50), ("without_mask", 60, 20, 90, 60)]
    for k in range(2):
        write_image(root / "images" / f"img{k}.jpg", pattern_image(40 + k, (100, 120)), ".jpg")
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"img{k}.xml").write_text(voc_xml(f"img{k}.jpg", 120, 100, objs))
    return root


def test_clean_voc(tmp_path: Path) -> None:
    report = validate_dataset(_voc(tmp_path / "voc"), workers=1)
    assert report.kind == "voc"
    assert report.issues == []
    assert report.box_stats["n_boxes"] == 4
    assert report.box_stats["counts"] == {"with_mask": 2, "without_mask": 2}
    assert report.box_stats["per_class"]["with_mask"]["width"]["p50"] == 30


def test_each_voc_rule_fires(tmp_path: Path) -> None:
    root = _voc(tmp_path / "voc")
    bad = [
        ("with_mask", -5, 10, 40, 50),  # out of bounds
        ("without_mask", 30, 30, 30, 60),  # zero width
        ("beard", 10, 10, 20, 20),  # unknown label
    ]
    write_image(root / "images" / "bad.jpg", pattern_image(50, (100, 120)), ".jpg")
    (root / "annotations" / "bad.xml").write_text(voc_xml("bad.jpg", 120, 100, bad))
    write_image(root / "images" / "resized.jpg", pattern_image(51, (50, 60)), ".jpg")
    (root / "annotations" / "resized.xml").write_text(voc_xml("resized.jpg", 120, 100, []))
    write_image(root / "images" / "lonely.jpg", pattern_image(52, (100, 120)), ".jpg")
    (root / "annotations" / "ghost.xml").write_text(voc_xml("ghost.jpg", 120, 100, []))
    write_image(root / "images" / "broken.jpg", pattern_image(53, (100, 120)), ".jpg")
    (root / "annotations" / "broken.xml").write_text("<annotation><size><width>1")
    report = validate_dataset(root, workers=1)
    assert _rules_fired(report) == {
        "voc_box_out_of_bounds",
        "voc_box_zero_area",
        "voc_unknown_label",
        "voc_size_mismatch",
        "voc_missing_xml",
        "voc_missing_image",
        "voc_xml_unreadable",
    }
    assert report.blocking_found == [
        "voc_missing_image",
        "voc_size_mismatch",
        "voc_unknown_label",
        "voc_xml_unreadable",
    ]
    unknown = [i for i in report.issues if i.rule == "voc_unknown_label"]
    assert "beard" in unknown[0].detail


def test_box_statistics_empty() -> None:
    stats = box_statistics([])
    assert stats["n_boxes"] == 0 and stats["counts"] == {}


def test_parse_voc_names_the_bad_field(tmp_path: Path) -> None:
    p = tmp_path / "x.xml"
    p.write_text(voc_xml("x.jpg", 10, 10, [("a", 1, 2, "three", 4)]))  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"<xmax> in <object> #0 must be a number"):
        parse_voc(p)


def test_cli_json_and_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASKOPS_DATA_DIR", str(tmp_path))
    root = _clean_folder(tmp_path / "ds")
    runner = CliRunner()
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["data", "validate", "ds", "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["counts"] == {"with_mask": 3, "without_mask": 3}
    assert json.loads(out.read_text())["n_files"] == 6
    shutil.copy(root / "with_mask" / "w0.png", root / "without_mask" / "w0.png")
    result = runner.invoke(app, ["data", "validate", str(root)])
    assert result.exit_code == 1
    assert "BLOCKED" in result.stdout and "label_conflict" in result.stdout
    assert runner.invoke(app, ["data", "validate", str(root), "--allow", "label_conflict"]).exit_code == 0
    result = runner.invoke(app, ["data", "validate", "nothing-here"])
    assert result.exit_code == 2 and "ds" in result.output
