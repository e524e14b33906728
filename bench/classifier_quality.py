"""Quality of the shipped classifiers on their held-out test splits, against the issue's targets.

Runs ``maskops.evaluate.run.evaluate_classifier`` (ONNX Runtime, the served file and its card) on
the ``test`` split of each task's prepared manifest and checks:

- facemask (test crops of facemask-voc ``splits.json``): accuracy >= 0.97, macro-F1 >= 0.90,
  ``mask_weared_incorrect`` recall >= 0.80;
- malaria (patient/slide-held-out test): accuracy >= 0.95.

For facemask it also breaks the figures down by face size (the shorter side of the annotated box)
and on the faces of at least the card's ``min_face_px`` (the product labels smaller faces
``uncertain`` instead of guessing; its other checks, dark / blurred / low confidence, are not
applied here): their coverage (share of the test faces) and figures. The targets are judged on every
test crop, not on this subset.

Needs ``maskops data prepare facemask`` / ``maskops data prepare malaria`` first.

    .venv/bin/python bench/classifier_quality.py [--tasks facemask malaria] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

TARGETS: dict[str, dict[str, float]] = {
    "facemask": {"accuracy": 0.97, "macro_f1": 0.90, "recall/mask_weared_incorrect": 0.80},
    "malaria": {"accuracy": 0.95},
}


def _figure(metrics: dict[str, Any], key: str) -> float:
    if key.startswith("recall/"):
        return float(metrics["per_class"][key.split("/", 1)[1]]["recall"])
    return float(metrics[key])


SIDE_EDGES = (12.0, 16.0, 24.0, 48.0)


def _subset_figures(y: Any, prob: Any, names: list[str], mask: Any) -> dict[str, float]:
    import numpy as np

    from maskops.evaluate.metrics import classification_metrics

    y, prob, mask = np.asarray(y), np.asarray(prob), np.asarray(mask, bool)
    m = classification_metrics(y[mask], prob[mask], names)
    return {
        "n": int(mask.sum()),
        "errors": int((prob[mask].argmax(1) != y[mask]).sum()),
        "accuracy": float(m["accuracy"]),
        "macro_f1": float(m["macro_f1"]),
        **{f"recall/{c}": float(m["per_class"][c]["recall"]) for c in names},
        **{f"support/{c}": int(m["per_class"][c]["support"]) for c in names},
    }


def size_breakdown(run: Any, names: list[str], min_face_px: float | None) -> dict[str, Any]:
    """Figures per face-size bucket and on the faces of at least ``min_face_px`` (shorter side)."""
    import numpy as np

    side = np.asarray(run.face_side, np.float64)
    edges = (0.0, *SIDE_EDGES, np.inf)
    out: dict[str, Any] = {"buckets": {}}
    for lo, hi in itertools.pairwise(edges):
        mask = (side >= lo) & (side < hi)
        if mask.any():
            label = f"{lo:g}-{hi:g} px" if np.isfinite(hi) else f">= {lo:g} px"
            out["buckets"][label] = _subset_figures(run.y_true, run.y_prob, names, mask)
    if min_face_px is not None and np.isfinite(side).any():
        labelled = side >= float(min_face_px)
        out["min_face_px"] = {
            "min_face_px": float(min_face_px),
            "coverage": float(labelled.mean()),
            **_subset_figures(run.y_true, run.y_prob, names, labelled),
        }
    return out


def _print_breakdown(task: str, names: list[str], b: dict[str, Any]) -> None:
    rare = names[-1]
    print(f"\n{task}: by face size (shorter side of the annotated box)\n")
    print(f"| faces | n | errors | accuracy | macro-F1 | recall {rare} (n) |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = list(b["buckets"].items())
    if "min_face_px" in b:
        s = b["min_face_px"]
        rows.append((f"min_face_px: >= {s['min_face_px']:g} px (coverage {s['coverage']:.1%})", s))
    for label, f in rows:
        print(
            f"| {label} | {f['n']} | {f['errors']} | {f['accuracy']:.4f} | {f['macro_f1']:.4f} | "
            f"{f[f'recall/{rare}']:.4f} ({f[f'support/{rare}']}) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=list(TARGETS))
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from maskops.config import Settings
    from maskops.evaluate.run import evaluate_classifier

    settings = Settings()
    out: dict[str, Any] = {}
    breakdowns: list[tuple[str, list[str], dict[str, Any]]] = []
    print("| task | model | n test | figure | value | target | met |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for task in args.tasks:
        model = args.models_dir / f"{task}.onnx"
        manifest = settings.prepared_dir(task) / "manifest.csv"
        if not manifest.is_file():
            raise SystemExit(f"{manifest} not found: run `maskops data prepare {task}` first")
        run = evaluate_classifier(
            model, manifest, task=task, split="test", out_dir=settings.work_dir / "reports" / task / "bench"
        )
        m = run.report.metrics
        out[task] = {"n": m["n"], "figures": {}}
        for key in ["accuracy", "macro_f1", "balanced_accuracy", *[f"recall/{c}" for c in m["per_class"]]]:
            value = _figure(m, key)
            target = TARGETS.get(task, {}).get(key)
            met = "" if target is None else ("yes" if value >= target else "NO")
            out[task]["figures"][key] = {"value": value, "target": target}
            print(
                f"| {task} | {model.name} | {m['n']} | {key} | {value:.4f} | "
                f"{'' if target is None else f'>= {target:.2f}'} | {met} |"
            )
        print(f"| {task} | {model.name} | {m['n']} | ECE after T | {run.report.ece_after:.4f} |  |  |")
        if task == "facemask":
            from maskops.types import ModelSpec

            spec = ModelSpec.load(ModelSpec.card_path(model))
            names = list(spec.class_names)
            breakdown = size_breakdown(run, names, spec.thresholds.get("min_face_px"))
            out[task]["by_size"] = breakdown
            breakdowns.append((task, names, breakdown))
    for task, names, breakdown in breakdowns:
        _print_breakdown(task, names, breakdown)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
