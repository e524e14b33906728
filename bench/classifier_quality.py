"""Quality of the shipped classifiers on their held-out test splits, against the targets.

Runs ``maskops.evaluate.run.evaluate_classifier`` (ONNX Runtime, the served file and its card) on
the ``test`` split of each task's prepared manifest and checks:

- facemask, on each test set alone and on both together (ground-truth face crops of the fixed
  ``splits.json`` test images of each source):
  facemask-ilc2021: accuracy >= 0.95, ``mask_weared_incorrect`` recall >= 0.85;
  facemask-voc: accuracy >= 0.965, ``mask_weared_incorrect`` recall >= 0.75;
  both: macro-F1 >= 0.90, ``mask_weared_incorrect`` recall >= 0.82;
- malaria (patient/slide-held-out test): accuracy >= 0.95.

Every recall is printed with its count (found / n): facemask-voc test has 21 wrong-mask faces, so one
face moves its recall by 0.048.

For facemask it also breaks the figures down by face size (the shorter side of the annotated box)
and on the faces of at least the card's ``min_face_px`` (the product labels smaller faces
``uncertain`` instead of guessing; its other checks, dark / blurred / low confidence, are not
applied here): their coverage (share of the test faces) and figures. The targets are judged on every
test crop, not on this subset.

Needs ``maskops data prepare facemask`` / ``maskops data prepare malaria`` first.

    .venv/bin/python bench/classifier_quality.py [--tasks facemask malaria] [--models-dir DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

WRONG = "recall/mask_weared_incorrect"
# per task, per test set ("all": every test row together)
TARGETS: dict[str, dict[str, dict[str, float]]] = {
    "facemask": {
        "facemask-ilc2021": {"accuracy": 0.95, WRONG: 0.85},
        "facemask-voc": {"accuracy": 0.965, WRONG: 0.75},
        "all": {"macro_f1": 0.90, WRONG: 0.82},
    },
    "malaria": {"all": {"accuracy": 0.95}},
}


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
        **{
            f"found/{c}": int(((y[mask] == k) & (prob[mask].argmax(1) == k)).sum())
            for k, c in enumerate(names)
        },
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

    import numpy as np

    from maskops.config import Settings
    from maskops.evaluate.run import evaluate_classifier

    settings = Settings()
    out: dict[str, Any] = {}
    breakdowns: list[tuple[str, list[str], dict[str, Any]]] = []
    print("| task | model | test set | n | figure | value | found / n | target | met |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for task in args.tasks:
        model = args.models_dir / f"{task}.onnx"
        manifest = settings.prepared_dir(task) / "manifest.csv"
        if not manifest.is_file():
            raise SystemExit(f"{manifest} not found: run `maskops data prepare {task}` first")
        run = evaluate_classifier(
            model, manifest, task=task, split="test", out_dir=settings.work_dir / "reports" / task / "bench"
        )
        names = [str(c) for c in run.report.class_names]
        out[task] = {"sets": {}}
        sets = {"all": np.ones(len(run.y_true), bool)}
        if len(set(run.source.tolist())) > 1:
            sets = {str(src): run.source == src for src in sorted(set(run.source.tolist()))} | sets
        for name, mask in sets.items():
            f = _subset_figures(run.y_true, run.y_prob, names, mask)
            out[task]["sets"][name] = f
            targets = TARGETS.get(task, {}).get(name, {})
            for key in ["accuracy", "macro_f1", *[f"recall/{c}" for c in names]]:
                value, target = f[key], targets.get(key)
                met = "" if target is None else ("yes" if value >= target else "NO")
                count = ""
                if key.startswith("recall/"):
                    c = key.split("/", 1)[1]
                    count = f"{f[f'found/{c}']} / {f[f'support/{c}']}"
                print(
                    f"| {task} | {model.name} | {name} | {f['n']} | {key} | {value:.4f} | {count} | "
                    f"{'' if target is None else f'>= {target:.3f}'} | {met} |"
                )
        print(
            f"| {task} | {model.name} | all | {len(run.y_true)} | ECE after T | {run.report.ece_after:.4f} |  |  |  |"
        )
        if task == "facemask":
            from maskops.types import ModelSpec

            spec = ModelSpec.load(ModelSpec.card_path(model))
            breakdown = size_breakdown(run, names, spec.thresholds.get("min_face_px"))
            out[task]["by_size"] = breakdown
            breakdowns.append((task, names, breakdown))
    for task, names, breakdown in breakdowns:
        _print_breakdown(task, names, breakdown)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
