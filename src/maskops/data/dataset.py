"""A torch ``Dataset`` over manifest images, decoded once and cached in RAM as uint8.

Training and serving share the preprocessing exactly: evaluation items are
``normalize(resize_to(to_rgb(image)))`` from ``maskops.inference.preprocess`` (what
``preprocess(images, spec)`` computes); training items apply ``augment`` to the BGR image first.
Each training item's randomness comes from ``(seed, epoch, index)``, so an epoch is reproducible
and a resumed run sees the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from maskops.data.augment import AugmentConfig, augment
from maskops.data.progress import track
from maskops.inference.preprocess import normalize, resize_to, to_rgb
from maskops.types import ModelSpec

logger = logging.getLogger(__name__)

Weighting = Literal["none", "sqrt_inverse", "inverse"]


def read_image(path: str | Path, *, grayscale: bool = False) -> np.ndarray:
    """Decode a file to uint8 BGR (or gray when ``grayscale``); raises ValueError naming the file."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read image: {exc}") from exc
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ValueError(f"{path}: not a decodable image")
    # BGR -> gray exactly as ``to_rgb(..., grayscale=True)`` does at serving time
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if grayscale else image


def _shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class ImageDataset(Dataset):
    """Images + integer labels; yields ``(float32 3×H×W tensor, int64 label)``.

    Args:
        paths: image files.
        labels: class index per file.
        spec: input size, mean/std and colour mode (``spec.color == "gray"`` for gray tasks).
        augment_cfg: training augmentation; ``None`` gives evaluation items (resize + normalise only).
        seed: base seed of the per-item augmentation.
        cache_scale: training images are cached with their longer side at most
            ``cache_scale × input size`` (enough for the crop jitter, bounded RAM).
        progress: show a progress bar while decoding.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Sequence[int],
        spec: ModelSpec,
        *,
        augment_cfg: AugmentConfig | None = None,
        seed: int = 0,
        cache_scale: float = 1.5,
        progress: bool = True,
        description: str = "decoding images",
    ) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.spec = spec
        self.paths = [str(p) for p in paths]
        self.labels = np.asarray(labels, np.int64)
        # relative draw weights for a balanced sampler (``None``: all equal); see ``source_weights``
        self.sample_weights: np.ndarray | None = None
        self.augment_cfg = augment_cfg
        self.seed = int(seed)
        self.epoch = 0
        self.grayscale = spec.color == "gray"
        h, w = spec.input_size
        max_side = max(8, round(cache_scale * max(h, w)))
        self.images: list[np.ndarray] = []
        for p in track(self.paths, len(self.paths), description, enabled=progress, transient=True):
            img = read_image(p, grayscale=self.grayscale)
            if self.train:
                self.images.append(_shrink(img, max_side))
            else:
                # the exact serving path up to normalisation: to_rgb -> resize_to
                self.images.append(resize_to(to_rgb(img, grayscale=self.grayscale), (h, w)))
        logger.debug("cached %d images (%.1f MB)", len(self.images), sum(i.nbytes for i in self.images) / 1e6)

    @classmethod
    def from_rows(
        cls, rows: Sequence[Any], class_names: Sequence[str], spec: ModelSpec, **kwargs: Any
    ) -> ImageDataset:
        """Build from manifest rows (``.path`` and ``.label``); labels map to ``class_names`` order."""
        index = {c: i for i, c in enumerate(class_names)}
        bad = sorted({r.label for r in rows} - set(index))
        if bad:
            raise ValueError(f"labels {bad} are not among the classes {list(class_names)}")
        return cls([r.path for r in rows], [index[r.label] for r in rows], spec, **kwargs)

    @property
    def train(self) -> bool:
        return self.augment_cfg is not None

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.images)

    def item_array(self, index: int) -> np.ndarray:
        """The normalised 3×H×W float32 array of item ``index``."""
        img = self.images[index]
        if self.augment_cfg is None:
            return normalize(img, self.spec)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        img = augment(img, rng, self.augment_cfg)
        return normalize(resize_to(to_rgb(img, grayscale=self.grayscale), self.spec.input_size), self.spec)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.item_array(index)), int(self.labels[index])


def source_weights(sources: Sequence[str], weights: dict[str, float]) -> np.ndarray | None:
    """Per-row draw weight from ``{source: weight}``; a key matches ``source`` and ``source:*``.

    Returns ``None`` when ``weights`` is empty. Raises ValueError for a negative weight or a key that
    matches no row (a typo would otherwise be silently ignored).
    """
    if not weights:
        return None
    out = np.ones(len(sources), np.float64)
    for key, value in weights.items():
        if value < 0:
            raise ValueError(f"source_weights[{key!r}] must be >= 0, got {value}")
        hit = np.array([s == key or s.startswith(key + ":") for s in sources], bool)
        if not hit.any():
            raise ValueError(
                f"source_weights: no training row has source {key!r}; sources: {sorted(set(sources))}"
            )
        out[hit] = float(value)
    return out


def class_counts(labels: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """Samples per class (length ``num_classes``)."""
    return np.bincount(np.asarray(labels, np.int64), minlength=num_classes)[:num_classes]


def class_weights(
    labels: Sequence[int] | np.ndarray,
    num_classes: int,
    mode: Weighting,
    *,
    sample_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Per-class weights ``1/freq`` (``inverse``), ``1/sqrt(freq)`` (``sqrt_inverse``) or ones.

    Normalised so that the average weight over the samples is 1 (the loss scale is unchanged).
    Classes without samples get weight 0. With ``sample_weights`` a class's frequency is the sum of
    its samples' weights.
    """
    labels = np.asarray(labels, np.int64)
    counts = np.bincount(labels, weights=sample_weights, minlength=num_classes)[:num_classes].astype(
        np.float64
    )
    if mode == "none":
        return np.ones(num_classes, np.float32)
    if mode not in ("sqrt_inverse", "inverse"):
        raise ValueError(f"unknown class weighting {mode!r}; expected none, sqrt_inverse or inverse")
    w = np.zeros(num_classes, np.float64)
    present = counts > 0
    w[present] = 1.0 / (counts[present] if mode == "inverse" else np.sqrt(counts[present]))
    w *= counts.sum() / float((w * counts).sum())
    return w.astype(np.float32)


def balanced_sampler(
    labels: Sequence[int] | np.ndarray,
    num_classes: int,
    mode: Weighting,
    *,
    seed: int = 0,
    sample_weights: Sequence[float] | np.ndarray | None = None,
) -> WeightedRandomSampler:
    """A with-replacement sampler drawing each sample with probability ∝ its class weight.

    ``inverse`` draws the classes equally often; ``sqrt_inverse`` in proportion to ``sqrt(count)``.
    With ``sample_weights`` (e.g. a source drawn half as often) a class's count is the sum of its
    samples' weights, and within a class samples are drawn in proportion to their weight, so the
    class proportions stay those of ``mode``. Call ``reseed_sampler(sampler, seed)`` per epoch for
    reproducible epochs.

    Raises:
        ValueError: ``sample_weights`` of the wrong length, negative, or zero for a whole class.
    """
    labels = np.asarray(labels, np.int64)
    sw = None
    if sample_weights is not None:
        sw = np.asarray(sample_weights, np.float64)
        if sw.shape != labels.shape or (sw < 0).any():
            raise ValueError(
                f"sample_weights must be {len(labels)} non-negative numbers, got shape {sw.shape}"
            )
        weighted = np.bincount(labels, weights=sw, minlength=num_classes)[:num_classes]
        if ((class_counts(labels, num_classes) > 0) & (weighted <= 0)).any():
            raise ValueError("sample_weights leave a class with no weight")
    w = class_weights(labels, num_classes, mode, sample_weights=sw)[labels].astype(np.float64)
    if sw is not None:
        w *= sw
    gen = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(w.tolist(), len(labels), True, generator=gen)
