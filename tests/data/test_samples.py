"""``split_sample``: a manifest split's images with class ids, optionally of one data source."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from maskops.data.manifest import ManifestRow, write_manifest
from maskops.data.samples import split_sample


def test_split_sample_by_source(tmp_path: Path) -> None:
    rows = []
    for i, (source, label) in enumerate(
        [
            ("voc", "a"),
            ("voc", "b"),
            ("ilc", "b"),
            ("synth_x:ilc", "b"),  # a synthetic row made from an ilc face belongs to ilc
            ("ilc", "a"),
        ]
    ):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), np.full((8, 8, 3), i * 40, np.uint8))
        rows.append(ManifestRow(str(path), f"{i:064d}", label, "test", f"g{i}", source, "", ""))
    manifest = tmp_path / "manifest.csv"
    write_manifest(rows, manifest)
    images, labels = split_sample(manifest, ["a", "b"], "test", source="ilc")
    assert sorted(int(im[0, 0, 0]) for im in images) == [80, 120, 160]
    assert sorted(labels.tolist()) == [0, 1, 1]
    assert len(split_sample(manifest, ["a", "b"], "test")[0]) == 5
    with pytest.raises(ValueError, match="no rows of source 'photos' in the 'test' split"):
        split_sample(manifest, ["a", "b"], "test", source="photos")
