from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from maskops.data.manifest import ManifestError, ManifestRow, manifest_hash, read_manifest, write_manifest


def _rows(tmp_path: Path) -> list[ManifestRow]:
    inside = tmp_path / "m" / "crops" / "a.png"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(b"x")
    outside = tmp_path / "raw" / "b.png"
    outside.parent.mkdir(parents=True)
    outside.write_bytes(b"y")
    return [
        ManifestRow(str(inside), "s1", "with_mask", "train", "g1", "voc", "/p/a.jpg", "1,2,3,4"),
        ManifestRow(str(outside), "s2", "without_mask", "test", "g2", "photos", "", ""),
    ]


def test_round_trip_resolves_paths(tmp_path: Path) -> None:
    rows = _rows(tmp_path)
    path = tmp_path / "m" / "manifest.csv"
    digest = write_manifest(rows, path)
    text = path.read_text()
    assert "crops/a.png" in text and str(tmp_path / "m" / "crops") not in text  # stored relative
    back = read_manifest(path)
    assert [Path(r.path) for r in back] == [Path(r.path).resolve() for r in rows]
    assert all(Path(r.path).is_absolute() for r in back)
    assert manifest_hash(back) == digest
    assert [replace(r, path="") for r in back] == [replace(r, path="") for r in rows]


def test_hash_ignores_paths_and_order_but_not_labels(tmp_path: Path) -> None:
    rows = _rows(tmp_path)
    moved = [replace(r, path="/elsewhere/" + Path(r.path).name, source="x") for r in reversed(rows)]
    assert manifest_hash(moved) == manifest_hash(rows)
    relabelled = [replace(rows[0], label="without_mask"), rows[1]]
    assert manifest_hash(relabelled) != manifest_hash(rows)
    resplit = [replace(rows[0], split="val"), rows[1]]
    assert manifest_hash(resplit) != manifest_hash(rows)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    rows = _rows(tmp_path)
    path = tmp_path / "m" / "manifest.csv"
    write_manifest(rows, path)
    Path(rows[1].path).unlink()
    with pytest.raises(ManifestError, match="do not exist"):
        read_manifest(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("path,sha256,label\nx,y,z\n", "missing columns"),
        ("path,sha256,label,split,group,source,parent,box\nx,s,a,holdout,g,src,,\n", "split 'holdout'"),
        ("path,sha256,label,split,group,source,parent,box\nx,s,,train,g,src,,\n", "empty 'label'"),
    ],
)
def test_bad_manifests(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "manifest.csv"
    path.write_text(content)
    with pytest.raises(ManifestError, match=match):
        read_manifest(path)
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "nope.csv")
