"""Train the ``yunet_refine`` second stage on facemask-voc ``train`` (val loss picks the epoch), export it.

Steps (each resumable: an existing sample file or checkpoint is reused):
1. proposals of the base detector (``yunet_ms_cal`` at a low score) and jittered true boxes on every
   ``train`` image, and proposals on ``val`` (for the validation loss), cut into crops:
   ``<work>/samples_{train,val}.npz``;
2. torch training on CPU (``maskops.detect.refine_train.train_refiner``; ``last.pt`` after every epoch);
3. export of the best epoch to ``src/maskops/detect/data/refine_yunet_ms_cal.onnx`` (+ ``.json``).

``test`` is never read. Run it in the background, e.g.

    nohup .venv/bin/python bench/train_refiner.py --work work/refiner > work/refiner.log 2>&1 &
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from maskops.config import Settings
from maskops.data.images import read_bgr
from maskops.detect import create_detector
from maskops.detect.refine import RefinerSpec, refiner_path
from maskops.detect.refine_train import (
    RefinerSamples,
    TrainSettings,
    build_samples,
    export_refiner,
    train_refiner,
)
from maskops.evaluate.detection_run import load_voc_split

CLASSES = ["with_mask", "without_mask", "mask_weared_incorrect"]
log = logging.getLogger("train_refiner")


def samples(split: str, spec: RefinerSpec, path: Path, jitter: int, limit: int | None) -> RefinerSamples:
    if path.is_file():
        log.info("reusing %s", path)
        return RefinerSamples.load(path)
    items = load_voc_split(Settings().data_dir / "facemask-voc", split, CLASSES, limit=limit)
    det = create_detector(spec.base, score_threshold=spec.proposal_score, **spec.base_options)
    log.info("cutting %s proposals of %d images", split, len(items))
    s = build_samples(
        det, [read_bgr(it.image_path) for it in items], [it.gt for it in items], spec, jitter_per_face=jitter
    )
    s.save(path)
    log.info(
        "%s: %d samples (%d positive, %d negative)", split, len(s), (s.face == 1).sum(), (s.face == 0).sum()
    )
    return s


def subsample(s: RefinerSamples, neg_keep: float, seed: int = 0) -> RefinerSamples:
    """Keep every positive and regression crop, ``neg_keep`` of the negatives; drop crops with no target."""
    rng = np.random.default_rng(seed)
    useful = (s.face >= 0) | s.reg_mask
    neg = (s.face == 0) & ~s.reg_mask
    keep = useful & (~neg | (rng.random(len(s)) < neg_keep))
    log.info("training on %d of %d crops (negatives kept: %.0f%%)", keep.sum(), len(s), 100 * neg_keep)
    return RefinerSamples(s.crops[keep], s.deltas[keep], s.reg_mask[keep], s.face[keep], s.cls[keep])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("work/refiner"), help="samples and checkpoints")
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=48, help="crop side (pixels)")
    parser.add_argument("--context", type=float, default=2.0, help="crop side / proposal longer side")
    parser.add_argument("--limit", type=int, default=None, help="first N images per split (smoke runs)")
    parser.add_argument(
        "--neg-keep",
        type=float,
        default=1.0,
        help="fraction of negative train crops kept (seeded; CPU budget)",
    )
    parser.add_argument("--out", type=Path, default=refiner_path("yunet_ms_cal"), help="exported .onnx")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("MASKOPS_NO_PROGRESS", "1")
    import cv2

    cv2.setNumThreads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    spec = RefinerSpec(size=args.size, context=args.context)
    train = samples("train", spec, args.work / "samples_train.npz", jitter=4, limit=args.limit)
    val = samples("val", spec, args.work / "samples_val.npz", jitter=0, limit=args.limit)
    train = subsample(train, args.neg_keep)
    settings = TrainSettings(epochs=args.epochs, num_threads=args.threads)
    best = train_refiner(train, val, args.work, spec, settings)
    import torch

    state = torch.load(best, weights_only=False)
    spec.trained_on = (
        f"facemask-voc train: {len(train)} crops (proposals of {spec.base} at score >= {spec.proposal_score} "
        f"and 4 jittered copies of each true box; {args.neg_keep:.0%} of negatives); epoch {state['epoch']} of {settings.epochs} chosen on val loss"
    )
    spec.metrics = {k: round(float(v), 5) for k, v in state["val"].items()}
    log.info("exported %s", export_refiner(best, spec, args.out))


if __name__ == "__main__":
    main()
