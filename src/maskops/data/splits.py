"""Group-aware, stratified, deterministic split assignment (pure).

A *unit* is a group of examples that must stay together (a photo and its copies, a patient's
slide). Units with a fixed split (``splits.json``) keep it; the others are assigned greedily,
largest first (ties in a seeded random order), to the allowed split whose per-class quota is the
most unfilled. That fills every split with every class as long as a class has at least as many
units as there are splits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

SPLIT_ORDER = ("train", "val", "test")


@dataclass(frozen=True)
class SplitUnit:
    """One group to place.

    Attributes:
        group: unique group id.
        counts: examples per label in the group.
        allowed: splits the group may go to.
        fixed: a split imposed from outside (must be in ``allowed``), or ``None``.
    """

    group: str
    counts: Mapping[str, int]
    allowed: tuple[str, ...] = SPLIT_ORDER
    fixed: str | None = None

    def __post_init__(self) -> None:
        bad = [s for s in self.allowed if s not in SPLIT_ORDER]
        if bad or not self.allowed:
            raise ValueError(
                f"group {self.group!r}: allowed splits {list(self.allowed)} must be from {SPLIT_ORDER}"
            )
        if self.fixed is not None and self.fixed not in self.allowed:
            raise ValueError(
                f"group {self.group!r}: fixed split {self.fixed!r} not in allowed {self.allowed}"
            )


@dataclass
class _Bucket:
    splits: tuple[str, ...]
    units: list[SplitUnit] = field(default_factory=list)


def assign_splits(units: Sequence[SplitUnit], fractions: Mapping[str, float], seed: int) -> dict[str, str]:
    """Map every group to a split.

    Args:
        units: the groups; ids must be unique.
        fractions: target share per split (renormalised over each unit's allowed splits).
        seed: makes the order of equally sized units, hence the result, reproducible.

    Returns:
        ``{group: split}``.

    Raises:
        ValueError: duplicate group ids, or a unit whose allowed splits all have fraction 0.
    """
    ids = [u.group for u in units]
    if len(set(ids)) != len(ids):
        raise ValueError("group ids must be unique")
    out: dict[str, str] = {u.group: u.fixed for u in units if u.fixed is not None}
    buckets: dict[tuple[str, ...], _Bucket] = {}
    for u in units:
        if u.fixed is None:
            key = tuple(s for s in SPLIT_ORDER if s in u.allowed)
            buckets.setdefault(key, _Bucket(key)).units.append(u)
    rng = np.random.default_rng(seed)
    for key in sorted(buckets):
        bucket = buckets[key]
        weights = np.array([max(0.0, float(fractions.get(s, 0.0))) for s in key])
        if weights.sum() <= 0:
            raise ValueError(
                f"splits {list(key)} all have fraction 0; cannot place {len(bucket.units)} groups"
            )
        weights = weights / weights.sum()
        labels = sorted({lab for u in bucket.units for lab in u.counts})
        total = np.array([sum(u.counts.get(lab, 0) for u in bucket.units) for lab in labels], float)
        target = weights[:, None] * total[None, :]
        filled = np.zeros_like(target)
        ordered = sorted(bucket.units, key=lambda u: u.group)
        perm = rng.permutation(len(ordered))
        ordered = [ordered[i] for i in perm]
        ordered.sort(key=lambda u: -sum(u.counts.values()))  # stable: ties keep the seeded order
        for u in ordered:
            n = np.array([u.counts.get(lab, 0) for lab in labels], float)
            if n.sum() == 0:
                deficit = (target.sum(1) - filled.sum(1)) / np.maximum(target.sum(1), 1e-9)
            else:
                ratio = (target - filled) / np.maximum(target, 1e-9)
                deficit = (ratio * n[None, :]).sum(1) / n.sum()
            best = int(np.argmax(np.where(weights > 0, deficit, -np.inf)))
            filled[best] += n
            out[u.group] = key[best]
    return out
