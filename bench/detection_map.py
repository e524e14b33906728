"""Detection mAP of every face-detector variant on facemask-voc (or ``--dataset facemask-ilc2021``), side by side.

For each variant the detector runs once per split (``val`` and ``test``) through the real pipeline
(detector -> crop -> ONNX classifier, uncertain off) and the figures are computed from the same
predictions in several ways:

* ``oracle``: each face labelled by its best-overlapping true box (detector and framing only);
* ``argmax``: each face one prediction of its argmax class, ranked by face score x class probability;
* ``multi``: each face one prediction per class (YOLO-style validation), same score.

Hyperparameters (the scoring rule, and the detector settings in the variant table) are chosen on ``val``;
``test`` is only reported. ms/image is the mean wall time of detect + classify per image on this machine
(one process, one OpenCV and one ONNX Runtime thread; classification of every face above the evaluation
score threshold 0.05 included).

    .venv/bin/python bench/detection_map.py [--model models/facemask.onnx] [--variants yunet,yunet_ms_cal]
        [--splits val,test] [--dataset facemask-voc|facemask-ilc2021] [--out work/bench/detection_map]

Without a classifier (``--model`` missing) only the oracle columns are measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskops.config import Settings
from maskops.detect.detectors import DetectorError, create_detector
from maskops.evaluate.detection_run import (
    DetectionRun,
    Scored,
    evaluate_detection,
    load_voc_split,
    relabel_oracle,
    score_run,
)

CLASSES = ["with_mask", "without_mask", "mask_weared_incorrect"]

# name -> (registered detector, options, description)
VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "yunet@0.3": ("yunet", {"score_threshold": 0.3}, "YuNet as shipped (upscale to 640 px), score >= 0.3"),
    "yunet": ("yunet", {"score_threshold": 0.05}, "YuNet as shipped, score >= 0.05"),
    "yunet_cal": ("yunet_cal", {"score_threshold": 0.05}, "+ box calibration (train)"),
    "yunet_cal@0.3": ("yunet_cal", {"score_threshold": 0.3}, "the served default detector, score >= 0.3"),
    "yunet_ms": ("yunet_ms", {"score_threshold": 0.05}, "YuNet at 1.5x and 3x, NMS 0.4"),
    "yunet_ms_flip": ("yunet_ms", {"score_threshold": 0.05, "flip": True}, "yunet_ms + mirrored views"),
    "yunet_ms_cal": ("yunet_ms_cal", {"score_threshold": 0.05}, "yunet_ms + box calibration (train)"),
    "yunet_ms_cal_flip": (
        "yunet_ms_cal",
        {"score_threshold": 0.05, "flip": True},
        "yunet_ms_cal + mirrored views",
    ),
}
# one thread per stage: per-image latency without thread contention (the batch command parallelises images)
THREADS = 1
SCORINGS = [("face_x_class", False), ("face_x_class", True), ("class", False), ("class", True)]


def run_variant(name: str, split_items: dict[str, Any], model: Path | None) -> dict[str, DetectionRun]:
    det_name, options, _ = VARIANTS[name]
    det = create_detector(det_name, **options)
    if model is not None:
        from maskops.detect.pipeline import FaceMaskPipeline, PipelineConfig
        from maskops.inference.classifier import OnnxClassifier

        clf = OnnxClassifier(model, num_threads=THREADS)
        predict: Any = FaceMaskPipeline(clf, det, PipelineConfig(uncertain=False))
    else:

        def predict(image: np.ndarray) -> Scored:
            faces = det.detect(image)
            return Scored(faces, np.zeros((len(faces), len(CLASSES)), np.float32))

    out = {}
    for split, items in split_items.items():
        predict(np.zeros((64, 64, 3), np.uint8))  # warm-up
        out[split] = evaluate_detection(predict, items, CLASSES, info={"variant": name, "split": split})
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    settings = Settings()
    parser.add_argument("--model", type=Path, default=settings.models_dir / "facemask.onnx")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--splits", default="val,test")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument(
        "--dataset",
        default="facemask-voc",
        help="VOC dataset folder under MASKOPS_DATA_DIR (facemask-ilc2021, ...)",
    )
    parser.add_argument("--out", type=Path, default=None, help="default work/bench/detection_map[-<dataset>]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("MASKOPS_NO_PROGRESS", "1")
    import cv2

    cv2.setNumThreads(THREADS)
    model = args.model if args.model.is_file() else None
    if model is None:
        print(f"classifier {args.model} not found: measuring oracle labels only")
    root = settings.data_dir / args.dataset
    if args.out is None:
        suffix = "" if args.dataset == "facemask-voc" else f"-{args.dataset}"
        args.out = Path(f"work/bench/detection_map{suffix}")
    splits = args.splits.split(",")
    split_items = {s: load_voc_split(root, s, CLASSES, limit=args.limit) for s in splits}
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for name in args.variants.split(","):
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}")
        try:
            runs = run_variant(name, split_items, model)
        except DetectorError as exc:  # e.g. missing weights
            skipped[name] = str(exc)
            print(f"skipped {name}: {exc}")
            continue
        res: dict[str, Any] = {"description": VARIANTS[name][2], "detector": VARIANTS[name][0]}
        for split, run in runs.items():
            r: dict[str, Any] = {
                "ms_per_image": run.ms_per_image,
                "stage_ms": run.stage_ms,
                "face_recall": run.face_recall["all"]["recall"],
                "face_recall_by_size": {k: v["recall"] for k, v in run.face_recall.items()},
            }
            o = relabel_oracle(run, CLASSES)
            r["oracle"] = {"map50": o.map50, "map50_95": o.map50_95, "ap50": o.evaluation.ap50.tolist()}
            if model is not None:
                for scoring, multi in SCORINGS:
                    s = score_run(run.predictions, run.gts, CLASSES, scoring=scoring, multi_label=multi)
                    key = f"{scoring}{'+multi' if multi else ''}"
                    r[key] = {"map50": s.map50, "map50_95": s.map50_95, "ap50": s.evaluation.ap50.tolist()}
            res[split] = r
        results[name] = res
        print(json.dumps({name: {k: v for k, v in res.items() if k in splits}}, default=float)[:600])
        (args.out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    table = markdown(results, splits, model, args.dataset)
    if skipped:
        table += "\n\nNot measured:\n" + "\n".join(f"- {k}: {v}" for k, v in skipped.items())
    (args.out / "table.md").write_text(table + "\n")
    print(table)


def markdown(
    results: dict[str, dict[str, Any]],
    splits: Sequence[str],
    model: Path | None,
    dataset: str = "facemask-voc",
) -> str:
    keys = ["oracle"] + ([f"{s}{'+multi' if m else ''}" for s, m in SCORINGS] if model else [])
    chosen = "oracle"
    if model and "val" in splits:
        # the scoring rule with the best mean val mAP@0.5 over the variants
        chosen = max(keys[1:], key=lambda k: float(np.mean([r["val"][k]["map50"] for r in results.values()])))
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; classifier: "
        f"{model or 'none (oracle labels only)'}; dataset {dataset}; scoring chosen on val: `{chosen}`.",
        "",
    ]
    report = "test" if "test" in splits else splits[-1]
    head = "| variant | detector | " + " | ".join(
        f"{s} mAP@0.5 ({k}) | {s} mAP@0.5:0.95 ({k})"
        for s in splits
        for k in dict.fromkeys(["oracle", chosen])
    )
    lines.append(head + f" | {report} face recall | ms/image ({report}) | command |")
    ncols = 2 + 2 * len(splits) * len(dict.fromkeys(["oracle", chosen])) + 3
    lines.append("|" + " --- |" * ncols)
    for name, res in results.items():
        det, opts, _ = VARIANTS[name]
        where = "" if dataset == "facemask-voc" else f" --dataset {dataset}"
        cmd = (
            f"`maskops evaluate --task facemask --detection --detector {det}{where}"
            + (f" --face-threshold {opts['score_threshold']}" if "score_threshold" in opts else "")
            + (
                "`"
                if not set(opts) - {"score_threshold"}
                else f"` ({', '.join(f'{k}={v}' for k, v in opts.items() if k != 'score_threshold')})"
            )
        )
        cells = [name, det]
        for s in splits:
            for k in dict.fromkeys(["oracle", chosen]):
                cells += [f"{res[s][k]['map50']:.4f}", f"{res[s][k]['map50_95']:.4f}"]
        cells += [f"{res[report]['face_recall']:.4f}", f"{res[report]['ms_per_image']:.1f}", cmd]
        lines.append("| " + " | ".join(cells) + " |")
    if model:
        lines += ["", f"All scorings ({report} mAP@0.5 / val mAP@0.5):", ""]
        lines.append("| variant | " + " | ".join(keys) + " |")
        lines.append("|" + " --- |" * (len(keys) + 1))
        for name, res in results.items():
            cells = [
                f"{res[report][k]['map50']:.4f} / {res['val'][k]['map50']:.4f}"
                if "val" in res
                else f"{res[report][k]['map50']:.4f}"
                for k in keys
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"Per-class AP@0.5 on {report} ({chosen}):",
            "",
            "| variant | " + " | ".join(CLASSES) + " |",
        ]
        lines.append("|" + " --- |" * (len(CLASSES) + 1))
        for name, res in results.items():
            lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in res[report][chosen]["ap50"]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
