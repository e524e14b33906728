"""Labelled image samples read from a manifest split (parity checks, int8 calibration, accuracy)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def split_sample(
    manifest: Path,
    class_names: Sequence[str],
    split: str = "val",
    n: int | None = None,
    *,
    seed: int = 0,
    source: str | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Up to ``n`` images of a manifest split (all when ``n`` is None), with their class ids.

    With ``source``, only the rows of that data source (``maskops.data.manifest.row_source``).

    The sample is drawn per class in turn (round robin over a seeded shuffle), so rare classes are
    represented even in a small sample.

    Raises:
        ValueError: no rows in ``split``, or labels that are not among ``class_names``.
    """
    from maskops.data.images import read_bgr
    from maskops.data.manifest import read_manifest, row_source

    rows = [r for r in read_manifest(manifest) if r.split == split]
    if source is not None:
        rows = [r for r in rows if row_source(r) == source]
    if not rows:
        where = f" of source {source!r}" if source is not None else ""
        raise ValueError(f"{manifest}: no rows{where} in the {split!r} split")
    index = {c: i for i, c in enumerate(class_names)}
    unknown = sorted({r.label for r in rows} - set(index))
    if unknown:
        raise ValueError(f"{manifest}: labels {unknown} are not classes of the model {list(class_names)}")
    rng = np.random.default_rng(seed)
    per_class = {c: [rows[i] for i in rng.permutation(len(rows)) if rows[i].label == c] for c in class_names}
    chosen: list[Any] = []
    limit = len(rows) if n is None else min(n, len(rows))
    while len(chosen) < limit:
        for c in class_names:
            if per_class[c] and len(chosen) < limit:
                chosen.append(per_class[c].pop())
    return [read_bgr(r.path) for r in chosen], np.array([index[r.label] for r in chosen], np.int64)
