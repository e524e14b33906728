"""ImageDataset: serving-identical eval preprocessing, reproducible augmentation, class balance."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from maskops.data.augment import AugmentConfig
from maskops.data.dataset import (
    ImageDataset,
    balanced_sampler,
    class_counts,
    class_weights,
    source_weights,
)
from maskops.inference.preprocess import preprocess
from maskops.types import ModelSpec


def _write(tmp_path: Path, n: int, shape: tuple[int, ...] = (37, 29, 3)) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), rng.integers(0, 256, size=shape, dtype=np.uint8))
        paths.append(p)
    return paths


def _spec(color: str = "rgb", size: int = 16) -> ModelSpec:
    return ModelSpec(task="t", class_names=["a", "b"], input_size=(size, size), color=color)


@pytest.mark.parametrize("color", ["rgb", "gray"])
def test_eval_items_equal_serving_preprocess(tmp_path: Path, color: str) -> None:
    paths = _write(tmp_path, 3)
    spec = _spec(color)
    ds = ImageDataset(paths, [0, 1, 0], spec, progress=False)
    want = preprocess([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in paths], spec)
    got = torch.stack([ds[i][0] for i in range(3)]).numpy()
    np.testing.assert_array_equal(got, want)
    assert [ds[i][1] for i in range(3)] == [0, 1, 0]
    if color == "gray":
        assert np.array_equal(got[:, 0], got[:, 1]) and np.array_equal(got[:, 1], got[:, 2])


def test_train_items_reproducible_per_seed_epoch_index(tmp_path: Path) -> None:
    paths = _write(tmp_path, 2)
    spec = _spec()
    a = ImageDataset(paths, [0, 1], spec, augment_cfg=AugmentConfig(), seed=3, progress=False)
    b = ImageDataset(paths, [0, 1], spec, augment_cfg=AugmentConfig(), seed=3, progress=False)
    x0 = a[0][0]
    assert x0.shape == (3, 16, 16) and x0.dtype == torch.float32
    assert torch.equal(x0, b[0][0]) and torch.equal(a[0][0], x0)  # same seed/epoch/index, any order
    a.set_epoch(1)
    assert not torch.equal(a[0][0], x0)
    c = ImageDataset(paths, [0, 1], spec, augment_cfg=AugmentConfig(), seed=4, progress=False)
    assert not torch.equal(c[0][0], x0)


def test_augment_off_train_item_matches_eval_item_for_small_images(tmp_path: Path) -> None:
    paths = _write(tmp_path, 1, shape=(16, 16, 3))
    spec = _spec()
    train = ImageDataset(paths, [0], spec, augment_cfg=AugmentConfig.off(), progress=False)
    evald = ImageDataset(paths, [0], spec, progress=False)
    assert torch.equal(train[0][0], evald[0][0])


def test_large_train_images_are_cached_small(tmp_path: Path) -> None:
    paths = _write(tmp_path, 1, shape=(300, 200, 3))
    ds = ImageDataset(paths, [0], _spec(size=16), augment_cfg=AugmentConfig(), progress=False)
    assert max(ds.images[0].shape[:2]) == 24  # 1.5 x input size
    assert ds[0][0].shape == (3, 16, 16)


def test_from_rows_and_errors(tmp_path: Path) -> None:
    class Row:
        def __init__(self, path: Path, label: str) -> None:
            self.path, self.label = str(path), label

    paths = _write(tmp_path, 2)
    ds = ImageDataset.from_rows([Row(paths[0], "b"), Row(paths[1], "a")], ["a", "b"], _spec(), progress=False)
    assert ds.labels.tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"labels \['zebra'\] are not among the classes"):
        ImageDataset.from_rows([Row(paths[0], "zebra")], ["a", "b"], _spec(), progress=False)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"broken\.png: not a decodable image"):
        ImageDataset([bad], [0], _spec(), progress=False)
    with pytest.raises(ValueError, match="2 paths but 1 labels"):
        ImageDataset(paths, [0], _spec(), progress=False)


def test_class_weights() -> None:
    labels = [0] * 16 + [1] * 4 + [2] * 1
    assert class_counts(labels, 4).tolist() == [16, 4, 1, 0]
    inv = class_weights(labels, 3, "inverse")
    # 1/freq, normalised so the mean weight over samples is 1: each class carries n/C
    assert np.allclose(inv * class_counts(labels, 3), 21 / 3)
    sq = class_weights(labels, 3, "sqrt_inverse")
    assert sq[0] / sq[1] == pytest.approx(0.5) and sq[1] / sq[2] == pytest.approx(0.5)
    assert float((sq * class_counts(labels, 3)).sum()) == pytest.approx(21)
    assert class_weights(labels, 3, "none").tolist() == [1, 1, 1]
    assert class_weights(labels, 4, "inverse")[3] == 0
    with pytest.raises(ValueError, match="unknown class weighting"):
        class_weights(labels, 3, "square")  # type: ignore[arg-type]


def test_balanced_sampler_oversamples_rare_class() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    drawn = labels[list(balanced_sampler(labels, 2, "inverse", seed=0))]
    assert len(drawn) == 100
    assert 30 < (drawn == 1).sum() < 70  # ~50% instead of 10%
    again = labels[list(balanced_sampler(labels, 2, "inverse", seed=0))]
    assert np.array_equal(drawn, again)


def test_source_weights_match_sources_and_variants() -> None:
    sources = ["voc", "photos", "photos:whole", "voc"]
    assert source_weights(sources, {}) is None
    assert source_weights(sources, {"photos": 0.25}).tolist() == [1, 0.25, 0.25, 1]
    with pytest.raises(ValueError, match=r"no training row has source 'phots'.*photos"):
        source_weights(sources, {"phots": 0.5})
    with pytest.raises(ValueError, match=">= 0"):
        source_weights(sources, {"voc": -1})


def test_balanced_sampler_with_sample_weights_keeps_class_shares() -> None:
    # class 0: 50 rows of source A (weight 1) + 50 of source B (weight 0.25); class 1: 20 rows
    labels = np.array([0] * 100 + [1] * 20)
    sw = np.array([1.0] * 50 + [0.25] * 50 + [1.0] * 20)
    sampler = balanced_sampler(labels, 2, "inverse", seed=0, sample_weights=sw)
    p = np.asarray(sampler.weights, np.float64)
    p /= p.sum()
    assert p[labels == 0].sum() == pytest.approx(0.5) and p[labels == 1].sum() == pytest.approx(0.5)
    assert p[0] == pytest.approx(4 * p[60])  # source A drawn 4x as often as B within class 0
    with pytest.raises(ValueError, match="non-negative"):
        balanced_sampler(labels, 2, "inverse", sample_weights=sw[:10])
    with pytest.raises(ValueError, match="no weight"):
        balanced_sampler(labels, 2, "inverse", sample_weights=np.r_[sw[:100], np.zeros(20)])
