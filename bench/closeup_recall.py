"""Face recall on close-ups: one face filling 70-95% of a 512 px frame (selfies, a face held to a webcam).

Close-ups are cut from real photos around one annotated face so that the face box's longer side is
70-95% of the frame side (uniform, seeded), shifted at random inside the photo, and resized to 512 x 512:

* ``ilc-val`` / ``ilc-test``: facemask-ilc2021 faces of those splits (VOC boxes) whose longer side is at
  least ``--min-face`` px in the photo and whose frame holds no other annotated face (no other box has
  more than 20% of its area inside the frame);
* ``photos``: facemask-photos faces (one face per photo; the box is the one the data stage's detector
  found, from the prepared manifest).

A face counts as found when a predicted box has IoU >= 0.5 with it (``--iou``). Also counted per set:
frames with no box at all, extra boxes (not matching the face), and nested boxes (a box with at least
75% of its area inside another predicted box). Settings are tuned on ``ilc-val``; the other sets are
reported. Detectors run side by side in one process, interleaved frame by frame.

    .venv/bin/python bench/closeup_recall.py [--detectors yunet_cal,yunet_ms_cal] [--sets ilc-val,ilc-test,photos]
        [--baseline] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskops.boxes import box_iou, nested_mask
from maskops.config import Settings
from maskops.data.images import read_bgr
from maskops.data.sources import parse_voc
from maskops.detect.detectors import create_detector

FRAME = 512
FILL = (0.70, 0.95)


def closeup_frame(
    box: tuple[float, float, float, float], width: int, height: int, rng: np.random.Generator
) -> tuple[float, float, float] | None:
    """A square frame ``(x0, y0, side)`` inside the image in which ``box`` fills 70-95% of the side.

    ``None`` when no such frame fits in the image.
    """
    x1, y1, x2, y2 = box
    longer = max(x2 - x1, y2 - y1)
    side = longer / rng.uniform(*FILL)
    if side > min(width, height):
        return None
    # the frame's left edge may go from (x2 - side) to x1, clipped to the image
    lo_x, hi_x = max(0.0, x2 - side), min(x1, width - side)
    lo_y, hi_y = max(0.0, y2 - side), min(y1, height - side)
    if lo_x > hi_x or lo_y > hi_y:
        return None
    return float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y)), float(side)


def _cut(image: np.ndarray, frame: tuple[float, float, float], box: Any) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, side = frame
    k = FRAME / side
    m = np.array([[k, 0, -x0 * k], [0, k, -y0 * k]], np.float64)
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    out = cv2.warpAffine(image, m, (FRAME, FRAME), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    b = np.asarray(box, np.float64)
    gt = np.array([(b[0] - x0) * k, (b[1] - y0) * k, (b[2] - x0) * k, (b[3] - y0) * k], np.float32)
    return out, gt


def _inside_share(boxes: np.ndarray, frame: tuple[float, float, float]) -> np.ndarray:
    x0, y0, side = frame
    ix = np.clip(np.minimum(boxes[:, 2], x0 + side) - np.maximum(boxes[:, 0], x0), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], y0 + side) - np.maximum(boxes[:, 1], y0), 0, None)
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6)
    return np.asarray(ix * iy / area)


def ilc_closeups(split: str, min_face: float, seed: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, frame, gt_box)`` close-ups of one facemask-ilc2021 split."""
    root = Settings().data_dir / "facemask-ilc2021"
    stems = json.loads((root / "splits.json").read_text())[split]
    rng = np.random.default_rng(seed)
    for stem in stems:
        ann = parse_voc(root / "annotations" / f"{stem}.xml")
        boxes = np.array([[o.xmin, o.ymin, o.xmax, o.ymax] for o in ann.objects], np.float64).reshape(-1, 4)
        image = None
        for k, box in enumerate(boxes):
            if max(box[2] - box[0], box[3] - box[1]) < min_face:
                continue
            frame = closeup_frame(tuple(box), ann.width, ann.height, rng)
            if frame is None:
                continue
            others = np.delete(boxes, k, axis=0)
            if len(others) and (_inside_share(others, frame) > 0.2).any():
                continue
            image = read_bgr(root / "images" / f"{stem}.jpg") if image is None else image
            out, gt = _cut(image, frame, box)
            yield f"{stem}#{k}", out, gt


def photo_closeups(seed: int, limit: int | None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, frame, gt_box)`` close-ups of the facemask-photos faces of the prepared manifest."""
    manifest = Settings().prepared_dir("facemask") / "manifest.csv"
    if not manifest.is_file():
        raise SystemExit(f"{manifest} not found: run `maskops data prepare facemask` first")
    rng = np.random.default_rng(seed)
    n = 0
    with manifest.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["source"] != "facemask-photos" or not row["box"]:
                continue
            box = tuple(float(v) for v in row["box"].split(","))
            image = read_bgr(row["parent"])
            frame = closeup_frame(box, image.shape[1], image.shape[0], rng)
            if frame is None:
                continue
            out, gt = _cut(image, frame, box)
            yield row["parent"], out, gt
            n += 1
            if limit and n >= limit:
                return


def run(detectors: dict[str, Any], frames: list[tuple[str, np.ndarray, np.ndarray]], iou: float) -> dict:
    """Every detector on every frame, interleaved per frame (timings side by side)."""
    stats = {
        name: {"found": 0, "no_face": 0, "extra": 0, "nested": 0, "ms": [], "misses": []}
        for name in detectors
    }
    for fname, image, gt in frames:
        for name, det in detectors.items():
            st = stats[name]
            t0 = time.perf_counter()
            faces = det.detect(image)
            st["ms"].append((time.perf_counter() - t0) * 1000)
            if not len(faces):
                st["no_face"] += 1
                st["misses"].append(fname)
                continue
            hit = bool((box_iou(gt[None], faces.xyxy)[0] >= iou).any())
            st["found"] += hit
            if not hit:
                st["misses"].append(fname)
            st["extra"] += int(len(faces) - hit)
            # a box with >= 75% of its area inside another box at least as large
            st["nested"] += int(nested_mask(faces.xyxy, overlap=0.75, min_area_ratio=1.0).sum())
    n = len(frames)
    return {
        name: {
            "n": n,
            "found": st["found"],
            "recall": st["found"] / n if n else float("nan"),
            "no_face": st["no_face"],
            "extra_boxes": st["extra"],
            "nested_boxes": st["nested"],
            "ms_median": float(np.median(st["ms"])) if st["ms"] else float("nan"),
            "misses": st["misses"][:20],
        }
        for name, st in stats.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--detectors", default="yunet_cal,yunet_ms_cal")
    parser.add_argument("--sets", default="ilc-val,ilc-test,photos")
    parser.add_argument("--min-face", type=float, default=80.0, help="ILC faces: longer box side in px")
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--photos-limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--option", action="append", default=[], help="detector option key=value (all)")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also run each detector without the close-up pass and nested-box suppression, side by side",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    cv2.setNumThreads(1)
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    detectors = {d: create_detector(d, **options) for d in args.detectors.split(",")}
    if args.baseline:
        off = {**options, "closeup_side": 0, "nested_overlap": 1.0}
        for d in args.detectors.split(","):
            detectors[f"{d} (no close-up pass)"] = create_detector(d, **off)
    results: dict[str, Any] = {
        "machine": platform.node(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "sets": {},
    }
    print("| set | detector | frames | found | recall | no face | extra boxes | nested boxes | ms median |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.sets.split(","):
        if name.startswith("ilc-"):
            frames = list(ilc_closeups(name.removeprefix("ilc-"), args.min_face, args.seed))
        elif name == "photos":
            frames = list(photo_closeups(args.seed, args.photos_limit))
        else:
            raise SystemExit(f"unknown set {name!r}; valid: ilc-train, ilc-val, ilc-test, photos")
        res = run(detectors, frames, args.iou)
        results["sets"][name] = res
        for d, r in res.items():
            print(
                f"| {name} | {d} | {r['n']} | {r['found']} | {r['recall']:.4f} | {r['no_face']} | "
                f"{r['extra_boxes']} | {r['nested_boxes']} | {r['ms_median']:.1f} |"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
