"""Quality of the shipped classifiers on their held-out test splits, against the issue's targets.

Runs ``maskops.evaluate.run.evaluate_classifier`` (ONNX Runtime, the served file and its card) on
the ``test`` split of each task's prepared manifest and checks:

- facemask (test crops of facemask-voc ``splits.json``): accuracy >= 0.97, macro-F1 >= 0.90,
  ``mask_weared_incorrect`` recall >= 0.80;
- malaria (patient/slide-held-out test): accuracy >= 0.95.

Needs ``maskops data prepare facemask`` / ``maskops data prepare malaria`` first.

    .venv/bin/python bench/classifier_quality.py [--tasks facemask malaria] [--json out.json]
"""

from __future__ import annotations

import argparse
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
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
