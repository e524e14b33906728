"""Validation figures of classifier files per source: what a model is chosen on.

For each ONNX file: the val rows of the prepared manifest through the classifier as served
(`evaluate_classifier`), then per source and for all of them together the NLL, accuracy, macro-F1
and the wrongly worn masks found (n of N). Test figures are never computed here.

    .venv/bin/python bench/classifier_val.py models/facemask.onnx work/runs/facemask/RUN/model_int8.onnx
        [--manifest work/prepared/facemask/manifest.csv] [--task facemask] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def figures(model: Path, manifest: Path, task: str) -> dict[str, dict[str, object]]:
    from maskops.evaluate.metrics import classification_metrics
    from maskops.evaluate.run import evaluate_classifier

    run = evaluate_classifier(model, manifest, task=task, split="val")
    names = list(run.report.class_names)
    wrong = names.index("mask_weared_incorrect") if "mask_weared_incorrect" in names else None
    out: dict[str, dict[str, object]] = {}
    for source in [*sorted(set(run.source.tolist())), "all"]:
        mask = np.ones(len(run.y_true), bool) if source == "all" else run.source == source
        y, p = run.y_true[mask], run.y_prob[mask]
        met = classification_metrics(y, p, names)
        row: dict[str, object] = {
            "n": int(mask.sum()),
            "nll": round(float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean()), 4),
            "accuracy": round(float(met["accuracy"]), 4),
            "macro_f1": round(float(met["macro_f1"]), 4),
        }
        if wrong is not None:
            found = int(((y == wrong) & (p.argmax(1) == wrong)).sum())
            row["wrong_found"] = f"{found} of {int((y == wrong).sum())}"
        out[source] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument(
        "--manifest", type=Path, default=ROOT / "work" / "prepared" / "facemask" / "manifest.csv"
    )
    parser.add_argument("--task", default="facemask")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = {str(m): figures(m, args.manifest, args.task) for m in args.models}
    print("| model | val set | n | NLL | accuracy | macro-F1 | wrong masks found |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for model, per_source in results.items():
        for source, r in per_source.items():
            row = [model, source, r["n"], r["nll"], r["accuracy"], r["macro_f1"], r.get("wrong_found", "")]
            print("| " + " | ".join(str(v) for v in row) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
