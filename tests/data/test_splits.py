from __future__ import annotations

from collections import Counter

import pytest

from maskops.data.splits import SplitUnit, assign_splits

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def _units(n: int = 120) -> list[SplitUnit]:
    out = []
    for i in range(n):
        label = "a" if i % 4 else "b"
        out.append(SplitUnit(f"g{i:03d}", {label: 1 + i % 3}))
    return out


def test_deterministic_for_a_seed() -> None:
    units = _units()
    assert assign_splits(units, FRACTIONS, 7) == assign_splits(list(reversed(units)), FRACTIONS, 7)


def test_seed_changes_the_assignment() -> None:
    units = _units()
    assert assign_splits(units, FRACTIONS, 1) != assign_splits(units, FRACTIONS, 2)


def test_fractions_and_every_class_in_every_split() -> None:
    units = _units()
    split_of = assign_splits(units, FRACTIONS, 3)
    per = Counter()
    per_class: Counter[tuple[str, str]] = Counter()
    for u in units:
        n = sum(u.counts.values())
        per[split_of[u.group]] += n
        for lab, k in u.counts.items():
            per_class[(split_of[u.group], lab)] += k
    total = sum(per.values())
    for split, frac in FRACTIONS.items():
        assert per[split] / total == pytest.approx(frac, abs=0.03)
        assert per_class[(split, "a")] > 0 and per_class[(split, "b")] > 0


def test_fixed_and_allowed_are_respected() -> None:
    units = [
        SplitUnit("fixed", {"a": 5}, fixed="test"),
        *[SplitUnit(f"r{i}", {"a": 1}, allowed=("train", "val")) for i in range(30)],
    ]
    split_of = assign_splits(units, FRACTIONS, 0)
    assert split_of["fixed"] == "test"
    assert {split_of[f"r{i}"] for i in range(30)} == {"train", "val"}


def test_rare_class_reaches_all_splits_with_three_groups() -> None:
    units = [SplitUnit(f"c{i}", {"common": 10}) for i in range(20)] + [
        SplitUnit(f"r{i}", {"rare": 1}) for i in range(3)
    ]
    split_of = assign_splits(units, FRACTIONS, 0)
    assert {split_of[f"r{i}"] for i in range(3)} == {"train", "val", "test"}


def test_bad_units() -> None:
    with pytest.raises(ValueError, match="fixed split"):
        SplitUnit("x", {"a": 1}, allowed=("train",), fixed="test")
    with pytest.raises(ValueError, match="unique"):
        assign_splits([SplitUnit("x", {"a": 1}), SplitUnit("x", {"a": 1})], FRACTIONS, 0)
