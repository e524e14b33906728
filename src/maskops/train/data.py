"""Manifest rows for training: read, check against the task, split into train/val/test.

Reads the data stage's manifest through ``maskops.data.manifest.read_manifest`` when that module is
present; otherwise a private CSV reader with the same columns is used (``path, sha256, label,
split, group, source, parent, box``).
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ("path", "sha256", "label", "split", "group", "source", "parent", "box")


class DataError(ValueError):
    """The manifest cannot be trained on (missing, empty, a split or a class without rows)."""


class RowLike(Protocol):
    path: str
    label: str
    split: str


@dataclass(frozen=True)
class _Row:
    path: str
    sha256: str
    label: str
    split: str
    group: str = ""
    source: str = ""
    parent: str = ""
    box: str = ""


def default_manifest_path(prepared_dir: Path) -> Path:
    """The manifest the data stage writes for a task: ``<prepared_dir>/manifest.csv``."""
    return prepared_dir / "manifest.csv"


def _read_manifest_csv(path: Path) -> list[_Row]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("path", "label", "split") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"{path}: manifest is missing column(s) {missing}; expected {list(MANIFEST_COLUMNS)}"
            )
        rows = []
        for rec in reader:
            p = Path(rec["path"])
            if not p.is_absolute():
                p = (path.parent / p).resolve()
            rows.append(
                _Row(
                    path=str(p),
                    sha256=rec.get("sha256") or "",
                    label=rec["label"],
                    split=rec["split"],
                    group=rec.get("group") or "",
                    source=rec.get("source") or "",
                    parent=rec.get("parent") or "",
                    box=rec.get("box") or "",
                )
            )
    return rows


def read_rows(path: Path) -> list[Any]:
    """Read a manifest; raises DataError when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path} (run `maskops data prepare` first or pass --manifest)")
    try:
        from maskops.data.manifest import read_manifest
    except ImportError:
        return _read_manifest_csv(path)
    return list(read_manifest(path))


def rows_hash(rows: Sequence[Any]) -> str:
    """The manifest's content hash (``maskops.data.manifest.manifest_hash`` when present)."""
    try:
        from maskops.data.manifest import manifest_hash
    except ImportError:
        h = hashlib.sha256()
        for r in sorted(rows, key=lambda r: (r.split, r.label, r.path)):
            h.update(f"{getattr(r, 'sha256', '') or r.path}\t{r.label}\t{r.split}\n".encode())
        return h.hexdigest()[:16]
    return str(manifest_hash(list(rows)))


def split_rows(rows: Sequence[RowLike], classes: Sequence[str], manifest: Path) -> dict[str, list[RowLike]]:
    """Group rows by split after checking that training is possible.

    Raises:
        DataError: empty manifest, a split without rows, labels that are not task classes, or a task
            class without a training sample. Messages name the manifest path and the class.
    """
    if not rows:
        raise DataError(f"{manifest}: the manifest has no rows")
    unknown = sorted({r.label for r in rows} - set(classes))
    if unknown:
        raise DataError(f"{manifest}: labels {unknown} are not classes of the task {list(classes)}")
    out: dict[str, list[RowLike]] = {s: [] for s in SPLITS}
    for r in rows:
        if r.split not in out:
            raise DataError(f"{manifest}: row {r.path} has split {r.split!r}; expected one of {list(SPLITS)}")
        out[r.split].append(r)
    for s in SPLITS:
        if not out[s]:
            raise DataError(f"{manifest}: the {s!r} split has no rows")
    counts = Counter(r.label for r in out["train"])
    for c in classes:
        if counts[c] == 0:
            raise DataError(f"{manifest}: class {c!r} has no samples in the 'train' split")
    for s in ("val", "test"):
        absent = [c for c in classes if not any(r.label == c for r in out[s])]
        if absent:
            logger.warning("%s: the %s split has no samples of %s", manifest, s, absent)
    return out
