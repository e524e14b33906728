"""Fit the box calibration of a face detector on ``train`` and choose its form on ``val``.

The images are those of facemask-voc, or of every dataset given with ``--datasets`` (their train splits
pooled for the fit, their val splits pooled for the choice). The calibration shipped now is scored on
the same val beside the candidates, and a new file is written only when a candidate beats it.

For each detector the script
1. runs it on every ``train`` image and pairs its boxes (face score >= 0.5) with the true boxes
   (greedy, IoU >= 0.3), printing the systematic offsets (centre shift and scale relative to box size);
2. fits candidate calibrations: one global median, one global mean (least squares), and medians per
   size bucket of the detector box;
3. scores each candidate on ``val`` by detector-only mAP@0.5 (every box gets the label of its
   best-overlapping true box, so only detection and framing count) and keeps the best;
4. writes it to ``src/maskops/detect/data/boxcal_<detector>.json`` (the file ``<detector>_cal`` loads).

``test`` is never used.

    .venv/bin/python bench/fit_boxcal.py [--detector yunet --detector yunet_ms]
        [--datasets facemask-voc,facemask-ilc2021] [--dry-run]
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from maskops.config import Settings
from maskops.detect import create_detector
from maskops.detect.boxcal import BoxCalibration, calibration_path, load_calibration
from maskops.evaluate.detection import evaluate_detections
from maskops.evaluate.detection_run import VocImage, load_voc_split, oracle_labels, score_faces
from maskops.train.boxcal_fit import box_offsets, fit_box_calibration, matched_pairs
from maskops.types import Detections

CLASSES = ["with_mask", "without_mask", "mask_weared_incorrect"]
# detector options for the fit: a low score so val AP sees the whole ranking
FIT_OPTIONS: dict[str, dict[str, Any]] = {
    "yunet": {"score_threshold": 0.05},
    "yunet_ms": {"score_threshold": 0.05},
}


def run_detector(name: str, items: Sequence[VocImage]) -> list[Detections]:
    from maskops.data.images import read_bgr

    det = create_detector(name, **FIT_OPTIONS.get(name, {}))
    return [det.detect(read_bgr(it.image_path)) for it in items]


def oracle_map(
    faces: Sequence[Detections], items: Sequence[VocImage], cal: BoxCalibration | None
) -> tuple[float, float]:
    scored = []
    for f, it in zip(faces, items, strict=True):
        if cal is not None and len(f):
            f = f.replace(xyxy=cal.apply(f.xyxy, it.width, it.height))
        scored.append(score_faces(oracle_labels(f, it.gt, len(CLASSES))))
    ev = evaluate_detections(scored, [it.gt for it in items], len(CLASSES), class_names=CLASSES)
    return ev.map50, ev.map50_95


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--detector", action="append", help="detector name (repeatable; default yunet, yunet_ms)"
    )
    parser.add_argument("--datasets", default="facemask-voc", help="VOC datasets to pool (comma-separated)")
    parser.add_argument("--dry-run", action="store_true", help="print the figures, write nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("MASKOPS_NO_PROGRESS", "1")
    names = args.datasets.split(",")
    roots = [Settings().data_dir / d for d in names]
    train = [it for root in roots for it in load_voc_split(root, "train", CLASSES)]
    val = [it for root in roots for it in load_voc_split(root, "val", CLASSES)]
    for name in args.detector or ["yunet", "yunet_ms"]:
        print(f"\n## {name}: fitting on {len(train)} train images, choosing on {len(val)} val images")
        tr_faces = run_detector(name, train)
        va_faces = run_detector(name, val)
        pred, gt = matched_pairs(tr_faces, [it.gt for it in train], min_iou=0.3, min_score=0.5)
        off = box_offsets(pred, gt)
        q = np.percentile(off, [25, 50, 75], axis=0)
        print(f"pairs (score >= 0.5, IoU >= 0.3): {len(pred)}")
        print(
            "offset        p25      median   p75      (dx, dy: centre shift / box size; s = gt/detector size)"
        )
        for k, label in enumerate(["dx", "dy", "sx", "sy"]):
            vals = q[:, k] if k < 2 else np.exp(q[:, k])
            print(f"  {label:10s} {vals[0]:+.4f}  {vals[1]:+.4f}  {vals[2]:+.4f}")
        desc = f"{' + '.join(names)} train ({len(train)} images, {len(pred)} pairs, face score >= 0.5, IoU >= 0.3)"
        candidates = {
            "median": fit_box_calibration(pred, gt, method="median", detector=name, fitted_on=desc),
            "mean": fit_box_calibration(pred, gt, method="mean", detector=name, fitted_on=desc),
            "median by size 16/32/64": fit_box_calibration(
                pred, gt, edges=(16, 32, 64), method="median", detector=name, fitted_on=desc
            ),
            "median by size 24/48": fit_box_calibration(
                pred, gt, edges=(24, 48), method="median", detector=name, fitted_on=desc
            ),
        }
        base = oracle_map(va_faces, val, None)
        print("\n| calibration | val mAP@0.5 | val mAP@0.5:0.95 | mean IoU train (before -> after) |")
        print("| --- | --- | --- | --- |")
        print(f"| none | {base[0]:.4f} | {base[1]:.4f} | |")
        shipped = None
        if calibration_path(name).is_file():
            shipped = oracle_map(va_faces, val, load_calibration(name))
            print(f"| shipped ({load_calibration(name).fitted_on}) | {shipped[0]:.4f} | {shipped[1]:.4f} | |")
        scores = {}
        for label, cal in candidates.items():
            m = oracle_map(va_faces, val, cal)
            scores[label] = m
            s = cal.stats
            print(
                f"| {label} | {m[0]:.4f} | {m[1]:.4f} | {s['mean_iou_before']:.3f} -> {s['mean_iou_after']:.3f} |"
            )
        best = max(scores, key=lambda k: (round(scores[k][0], 4), scores[k][1]))
        cal = candidates[best]
        cal = BoxCalibration(
            cal.corrections,
            cal.edges,
            cal.detector,
            cal.method,
            cal.fitted_on,
            {
                **cal.stats,
                "chosen_on": "val detector-only mAP@0.5 (oracle labels)",
                "candidate": best,
                "val_map50_before": round(base[0], 4),
                "val_map50_after": round(scores[best][0], 4),
                "val_map50_95_before": round(base[1], 4),
                "val_map50_95_after": round(scores[best][1], 4),
                "fit_detector_options": FIT_OPTIONS.get(name, {}),
            },
        )
        print(f"chosen: {best}: " + ", ".join(f"{c}" for c in cal.corrections))
        if shipped is not None and (round(scores[best][0], 4), scores[best][1]) <= (
            round(shipped[0], 4),
            shipped[1],
        ):
            print("the shipped calibration is at least as good on this val: kept")
            continue
        if not args.dry_run:
            print(f"wrote {cal.save(calibration_path(name))}")


if __name__ == "__main__":
    main()
