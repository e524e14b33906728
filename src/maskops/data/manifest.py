"""The versioned data manifest: one CSV row per training example, and its content hash.

Columns: ``path, sha256, label, split, group, source, parent, box``. ``path`` is written relative
to the manifest's folder when the file lives under it (the crops) and absolute otherwise (raw
files); ``read_manifest`` resolves every path to an absolute, existing file. ``box`` is
``"x1,y1,x2,y2"`` of the face in ``parent`` pixels (the crop file adds ``crops.margin`` around it,
clipped to the image), or ``""`` for whole images.

``sha256`` is the file's sha256 for raw files and, for crops, the sha256 of the crop's decoded
pixels (``maskops.data.crops.pixel_sha256``), so re-encoding a PNG (another OpenCV build) keeps it.
The content hash covers ``(sha256, label, split, group, box)`` only, so it does not change when
the data moves.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

COLUMNS = ("path", "sha256", "label", "split", "group", "source", "parent", "box")
SPLITS = ("train", "val", "test")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file, the row and the field."""


@dataclass(frozen=True)
class ManifestRow:
    """One example: a file, its label and split, the group that keeps copies together."""

    path: str
    sha256: str
    label: str
    split: str
    group: str
    source: str
    parent: str
    box: str


if tuple(f.name for f in fields(ManifestRow)) != COLUMNS:  # pragma: no cover - a coding error
    raise RuntimeError("ManifestRow fields and COLUMNS disagree")


def manifest_hash(rows: Iterable[ManifestRow]) -> str:
    """sha256 over the sorted ``(sha256, label, split, group, box)`` of every row (path-independent)."""
    keys = sorted(f"{r.sha256}\t{r.label}\t{r.split}\t{r.group}\t{r.box}" for r in rows)
    h = hashlib.sha256()
    for k in keys:
        h.update(k.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def _portable(path: str, base: Path) -> str:
    p = Path(path)
    try:
        return p.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(p.resolve())


def write_manifest(rows: Sequence[ManifestRow], path: str | Path) -> str:
    """Write rows as CSV (atomically) and return the content hash.

    Paths under the manifest's folder are stored relative to it; others absolute.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow((_portable(r.path, path.parent), *astuple(r)[1:]))
    os.replace(tmp, path)
    return manifest_hash(rows)


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read a manifest CSV; every row's ``path`` is resolved to an absolute, existing file.

    Raises:
        ManifestError: missing file or columns, an empty field that must be set, an unknown split,
            or files that do not exist (the first few are named).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    base = path.parent.resolve()
    rows: list[ManifestRow] = []
    missing: list[str] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        absent = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise ManifestError(f"{path}: missing columns {absent}; expected {list(COLUMNS)}")
        for lineno, rec in enumerate(reader, start=2):
            for col in ("path", "sha256", "label", "split", "group"):
                if not rec[col]:
                    raise ManifestError(f"{path}, line {lineno}: empty {col!r}")
            if rec["split"] not in SPLITS:
                raise ManifestError(
                    f"{path}, line {lineno}: split {rec['split']!r} is not one of {list(SPLITS)}"
                )
            p = Path(rec["path"])
            full = p if p.is_absolute() else base / p
            if not full.is_file():
                missing.append(f"line {lineno}: {full}")
            rows.append(ManifestRow(**{**{c: rec[c] or "" for c in COLUMNS}, "path": str(full)}))
    if missing:
        raise ManifestError(
            f"{path}: {len(missing)} files listed in the manifest do not exist, e.g. {'; '.join(missing[:3])}"
        )
    return rows


def row_source(row: Any) -> str:
    """The data source of a manifest row: ``facemask-voc`` for ``facemask-voc`` and ``synth_x:facemask-voc``.

    Synthetic rows name their origin after the colon; a derived row (``facemask-photos:whole``) its
    source before it. Rows without a ``source`` field give ``""``.
    """
    parts = str(getattr(row, "source", "") or "").split(":")
    return parts[1] if parts[0].startswith("synth_") and len(parts) > 1 else parts[0]
