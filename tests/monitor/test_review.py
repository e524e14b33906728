"""Hard-case crops (MASKOPS_STORE_FACES=hard), the review queue and the export of answered crops."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from monitor_helpers import image, make_record, record
from sqlalchemy.engine import Engine

from maskops.monitor.capture import HardCasePolicy, face_crop_jpeg
from maskops.monitor.feedback import add_feedback
from maskops.monitor.prune import parse_period, prune, store_counts
from maskops.monitor.records import PredictionRecord
from maskops.monitor.review import crop_jpeg, export_reviewed, next_for_review
from maskops.monitor.store import write_records


def test_only_hard_faces_keep_a_crop() -> None:
    rec = record("r", HardCasePolicy(confidence=0.6))
    assert [f.crop is not None for f in rec.faces] == [False, True, True]
    crop = cv2.imdecode(np.frombuffer(rec.faces[1].crop, np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == (70, 56, 3)  # 40x50 box with 20 % margin, cut at the image's top
    assert all(f.crop is None for f in record("r", None).faces)  # privacy by default
    assert all(f.crop is None for f in record("r", HardCasePolicy(rate=0.0)).faces)
    assert PredictionRecord.from_json(rec.to_json()) == rec  # the spool keeps crops


def test_sampling_rate_is_seeded() -> None:
    policy = HardCasePolicy(rate=0.5, seed=3)
    kept = sum(policy.keep() for _ in range(1000))
    assert 420 < kept < 580


def test_crop_outside_the_image_is_none() -> None:
    assert face_crop_jpeg(image(), (500, 500, 600, 600)) is None


def test_queue_answers_skip_and_export(store: Engine, tmp_path: Path) -> None:
    write_records(store, [record("a", HardCasePolicy()), record("b", HardCasePolicy()), make_record("c")])
    assert store_counts(store)["face_crops"] == 4
    first = next_for_review(store)
    assert (first.request_id, first.face_index, first.label, first.waiting) == ("a", 1, "without_mask", 4)
    assert crop_jpeg(store, "a", 1)[:2] == b"\xff\xd8"
    assert crop_jpeg(store, "a", 0) is None
    add_feedback(store, request_id="a", face_index=1, true_label="with_mask", origin="review")
    skipped = next_for_review(store)
    assert (skipped.request_id, skipped.face_index, skipped.waiting) == ("a", 2, 3)
    after_skip = next_for_review(store, after=("a", 2))
    assert (after_skip.request_id, after_skip.face_index) == ("b", 1)
    add_feedback(store, request_id="b", face_index=1, true_label="not_a_face", origin="review")
    add_feedback(store, request_id="b", face_index=2, true_label="without_mask", origin="review")
    # the end of a pass starts over with the skipped face
    again = next_for_review(store, after=("b", 2))
    assert (again.request_id, again.face_index) == ("a", 2)
    counts = export_reviewed(store, tmp_path / "reviewed")
    assert counts == {"with_mask": 1, "without_mask": 1}
    assert (tmp_path / "reviewed" / "with_mask" / "a_1.jpg").is_file()
    assert not (tmp_path / "reviewed" / "not_a_face").exists()
    add_feedback(store, request_id="a", face_index=2, true_label="with_mask")
    assert next_for_review(store) is None


def test_prune_deletes_crops(store: Engine) -> None:
    from datetime import datetime, timedelta

    old = record("old", HardCasePolicy())
    old = PredictionRecord(**{**old.__dict__, "created_at": datetime(2026, 1, 1)})
    write_records(store, [old])
    result = prune(store, parse_period("30d"), now=datetime(2026, 1, 1) + timedelta(days=31))
    assert (result.requests, result.faces, result.crops) == (1, 3, 2)
    assert store_counts(store)["face_crops"] == 0


@pytest.mark.parametrize("rate", [-0.1, 1.1])
def test_settings_check_the_rate(rate: float) -> None:
    from maskops.config import Settings

    with pytest.raises(ValueError, match="hard_case_rate"):
        Settings(hard_case_rate=rate)


def test_exported_folder_passes_data_validate(store_url: str, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from maskops.cli import app
    from maskops.monitor.db import open_store

    engine = open_store(store_url)
    write_records(engine, [record("a", HardCasePolicy(), seed=1), record("b", HardCasePolicy(), seed=2)])
    for rid, idx, label in [
        ("a", 1, "with_mask"),
        ("a", 2, "without_mask"),
        ("b", 1, "mask_weared_incorrect"),
    ]:
        add_feedback(engine, request_id=rid, face_index=idx, true_label=label, origin="review")
    engine.dispose()
    out_dir = tmp_path / "reviewed"
    runner = CliRunner()
    out = runner.invoke(app, ["data", "export-reviewed", "--out", str(out_dir), "--db", store_url])
    assert out.exit_code == 0, out.output
    assert "wrote 3 reviewed crop(s)" in out.output
    classes = "with_mask,without_mask,mask_weared_incorrect"
    out = runner.invoke(app, ["data", "validate", str(out_dir), "--classes", classes, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["counts"] == {"mask_weared_incorrect": 1, "with_mask": 1, "without_mask": 1}
