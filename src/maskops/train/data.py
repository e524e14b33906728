"""Manifest rows for training: read (``maskops.data.manifest``), check against the task, split."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """The manifest cannot be trained on (missing, empty, a split or a class without rows)."""


class RowLike(Protocol):
    path: str
    label: str
    split: str
    source: str


def default_manifest_path(prepared_dir: Path) -> Path:
    """The manifest the data stage writes for a task: ``<prepared_dir>/manifest.csv``."""
    return prepared_dir / "manifest.csv"


def read_rows(path: Path) -> list[Any]:
    """Read a manifest; raises DataError when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"manifest not found: {path} (run `maskops data prepare <task>` first or pass --manifest)"
        )
    from maskops.data.manifest import read_manifest

    return list(read_manifest(path))


def rows_hash(rows: Sequence[Any]) -> str:
    """The manifest's content hash (``maskops.data.manifest.manifest_hash``)."""
    from maskops.data.manifest import manifest_hash

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
