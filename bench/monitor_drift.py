"""Drift detection, the label-free accuracy estimate and the speed of the drift tests (issue 20's targets).

**Pipeline pass** (cached under ``work/bench/monitor_drift_cache/``, a progress bar while it runs):
every image of facemask-voc and facemask-ilc2021 val and test goes through what the service runs on
an upload: the file is read, changed by the shift's transform (``maskops monitor replay
--transform``: ``darken=0.5``, ``blur=2``), encoded as JPEG quality 90 as the replay sends it,
decoded as the API decodes it (``decode_image``), run through the served face pipeline (the default
detector ``yunet_cal`` from the service settings, the shipped ``models/facemask.onnx`` with its card's
thresholds, uncertain faces answered ``uncertain``) and turned into the prediction record the service
logs (``build_record``, with ``image_quality``). Each detected face is matched one to one to a true
box (IoU >= 0.5, highest IoU first) to know its true class.

**Reference**: the shipped model's profile as ``maskops monitor reference --task facemask`` builds it
(``maskops.monitor.profile.build_model_reference``: the raw images decoded as the API decodes them,
the served pipeline, accuracy of the served labels on matched faces, uncertain not scored), from
facemask-voc val + ILC val (``--reference-splits val,test`` adds the test images, as the shipped
profile is built: the unshifted replay is then inside the reference), cached. The profile carries
the drift thresholds calibrated at release on bootstrap windows of its own images drawn photo by
photo (``maskops.monitor.reference.calibrate_thresholds``); ``--thresholds default`` drops them to
measure the tests' default thresholds instead. ``--reference-from store`` builds it instead from the
bench's own replayed records (JPEG q90 like the current side) through a store window and
``build_reference`` (without calibrated thresholds).

**Drift** (``drift``): replays into a throwaway SQLite store, in process, the records written through
the store's own insert path (``write_records``), then ``drift_report(last=500)`` (what
``maskops monitor drift --last 500`` runs; "drift raised" = any feature drifted, the command's exit 1):

- ``unshifted``: facemask-voc test + ILC test. The test sets hold ~1,200 faces, so each of the
  ``--windows`` windows is a bootstrap resample: images drawn with replacement (seeded per window)
  until the window holds 500 faces. The false-alarm rate is the share of windows with any drift.
- ``control``: the same bootstrap windows drawn from the reference's own images (val): how often the
  tests fire when nothing differs from the reference but the sample (images, not faces, are the draws).
- ``darken`` (brightness x0.5) and ``blur`` (Gaussian sigma 2 px) of the same test images, and
  ``unmasked`` (class mix): test images whose every true face is ``without_mask``. Target: drift in the
  first window of 500 faces (images in seeded random order, no replacement, looping when a set holds
  fewer than 500 faces); the share of ``--windows`` bootstrap windows with drift is given beside it.

**Estimate** (``estimate``): on the faces matched to a true box, the measured accuracy (argmax of the
logged probabilities against the true class; uncertain answers are scored by their argmax, the class
the estimate predicts) against ``estimate_performance``'s expected accuracy on the same faces. Sets:
facemask-voc test, ILC test, darkened facemask-voc test, and the mix of those three pooled; darkened
ILC test and the blurred sets are reported beside them. NannyML's CBPE on the same probabilities
(fitted on the reference's matched faces with their labels) when ``nannyml`` imports (it is not a
dependency: ``pip install nannyml``), else the column is skipped with a message.

**Speed** (``speed``): a SQLite store holding ``--faces`` synthetic faces (1-4 per request, random
quality, sizes, scores and Dirichlet probabilities), and every drift test over the window of all of
them against the reference: loading included (``drift_report(last=N)``: query, features, tests and the
estimate) and excluded (``compare_to_reference`` + ``estimate_performance`` on the loaded window);
also every registered test on every feature it applies to, and MMD on 100,000 synthetic 64-d
embeddings (the store logs none yet). Evidently's ``DataDriftPreset`` on the same window
(``evidently_report.reference_frame`` / ``window_frame``) side by side. Medians of ``--repeat`` runs.
Target: <= 2 s.

    nice -n 15 .venv/bin/python bench/monitor_drift.py [--parts drift,estimate,speed] [--windows 20]
        [--faces 100000] [--repeat 5] [--thresholds calibrated|default] [--json work/bench/monitor_drift.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from maskops.boxes import box_iou
from maskops.config import Settings, load_task, resolve_source_path
from maskops.data.images import read_bgr, sha256_file
from maskops.monitor.db import open_store
from maskops.monitor.drift import get_drift_test, list_drift_tests
from maskops.monitor.estimate import estimate_performance
from maskops.monitor.records import FaceRecord, PredictionRecord
from maskops.monitor.reference import PROFILE_VERSION, ReferenceProfile, build_reference, compare_to_reference
from maskops.monitor.store import write_records
from maskops.monitor.window import drift_report, load_window
from maskops.types import MaskClass

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "work" / "bench" / "monitor_drift_cache"
MODEL = ROOT / "models" / "facemask.onnx"
CLASSES = MaskClass.names()
MATCH_IOU = 0.5
WINDOW = 500
T0 = datetime(2026, 12, 3, 8, 0, 0)
SETS = {
    "voc-val": ("facemask-voc", "val"),
    "ilc-val": ("facemask-ilc2021", "val"),
    "voc-test": ("facemask-voc", "test"),
    "ilc-test": ("facemask-ilc2021", "test"),
}
CURRENT = ("voc-test", "ilc-test")
SHIFTS = {"darken": "darken=0.5", "blur": "blur=2"}

logging.basicConfig(level=logging.WARNING)


# --- the pipeline pass ------------------------------------------------------------------------


def match_truth(found: np.ndarray, truth: np.ndarray, iou: float = MATCH_IOU) -> list[int]:
    """For each found box, the index of the true box matched to it one to one (highest IoU first,
    each at least ``iou``), or -1."""
    out = [-1] * len(found)
    if len(found) == 0 or len(truth) == 0:
        return out
    overlap = box_iou(found, truth)
    pairs = np.argwhere(overlap >= iou)
    order = np.argsort(-overlap[pairs[:, 0], pairs[:, 1]], kind="stable")
    used: set[int] = set()
    for f, t in pairs[order].tolist():
        if out[f] < 0 and t not in used:
            out[f] = t
            used.add(t)
    return out


def _progress(items: list[Any], label: str) -> Iterator[Any]:
    from rich.progress import track

    yield from track(items, description=label, transient=False)


def pipeline_pass(set_name: str, shift: str | None) -> list[dict[str, Any]]:
    """The logged record (JSON) and the matched true classes of each image of a set, cached."""
    import cv2

    from maskops.detect.pipeline import FaceMaskPipeline, PipelineConfig
    from maskops.evaluate.detection_run import load_voc_split, select_voc_sources
    from maskops.inference.classifier import OnnxClassifier
    from maskops.inference.images import decode_image
    from maskops.monitor.capture import build_record
    from maskops.monitor.features import image_quality
    from maskops.monitor.replay import apply_transforms, parse_transforms
    from maskops.serve.service import make_detector
    from maskops.serve.settings import ServeSettings

    settings = ServeSettings()
    model_version = sha256_file(MODEL)[:12]
    key = {"model": model_version, "detector": settings.detector, "options": settings.detector_options}
    path = CACHE / f"{set_name}{'+' + shift if shift else ''}.jsonl"
    if path.is_file():
        lines = path.read_text().splitlines()
        if lines and json.loads(lines[0]) == key:
            return [json.loads(line) for line in lines[1:]]
    dataset, split = SETS[set_name]
    task = load_task("facemask")
    (source,) = select_voc_sources(task, dataset)
    images = load_voc_split(
        resolve_source_path(source, Settings()), split, task.classes, splits_file=source.splits_file or ""
    )
    pipe = FaceMaskPipeline(
        OnnxClassifier(MODEL, num_threads=settings.onnx_threads), make_detector(settings), PipelineConfig()
    )
    transforms = parse_transforms(SHIFTS[shift]) if shift else []
    rows = []
    for i, item in enumerate(_progress(images, f"{set_name}{' ' + shift if shift else ''}")):
        image = apply_transforms(read_bgr(item.image_path), transforms)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        t0 = time.perf_counter()
        decoded = decode_image(buf.tobytes(), item.image_path.name)
        decode_ms = (time.perf_counter() - t0) * 1000
        result = pipe(decoded.image)
        timings = {"decode": decode_ms, **result.timings_ms}
        record = build_record(
            result,
            pipe.class_names,
            request_id=f"{set_name}-{i}",
            source="api",
            width=decoded.width,
            height=decoded.height,
            latency_ms=sum(timings.values()),
            stages_ms=timings,
            quality=image_quality(decoded.image).as_dict(),
            model_name="facemask",
            model_version=model_version,
            detector=settings.detector,
            created_at=T0,
        )
        matched = match_truth(result.detections.xyxy, item.gt.xyxy)
        truth_names = [CLASSES[int(c)] for c in item.gt.class_id]
        rows.append(
            {
                "stem": item.stem,
                "record": record.to_json(),
                "truth": [truth_names[t] if t >= 0 else None for t in matched],
                "true_labels": truth_names,
            }
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in [key, *rows]) + "\n")
    return rows


def records_of(rows: list[dict[str, Any]]) -> list[PredictionRecord]:
    return [PredictionRecord.from_json(r["record"]) for r in rows]


# --- stores and the reference -----------------------------------------------------------------


class Replay:
    """A throwaway SQLite store fed request by request with increasing times."""

    def __init__(self, folder: Path, name: str) -> None:
        self.engine = open_store(f"sqlite:///{folder / (name + '.db')}")
        self.n = 0

    def write(self, records: list[PredictionRecord]) -> None:
        out = []
        for r in records:
            self.n += 1
            out.append(
                dataclasses.replace(r, request_id=f"r{self.n}", created_at=T0 + timedelta(seconds=self.n))
            )
        write_records(self.engine, out)

    def close(self) -> None:
        self.engine.dispose()


def matched_arrays(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, true class ids) of the faces matched to a true box."""
    probs, truth = [], []
    for row in rows:
        record = PredictionRecord.from_json(row["record"])
        for face, t in zip(record.faces, row["truth"], strict=True):
            if t is not None:
                probs.append([face.probabilities[c] for c in CLASSES])
                truth.append(CLASSES.index(t))
    p = np.array(probs, np.float64).reshape(-1, len(CLASSES))
    return p / p.sum(axis=1, keepdims=True), np.array(truth, np.int64)


def served_accuracy(rows: list[dict[str, Any]]) -> tuple[float | None, int]:
    """Accuracy of the served labels on matched faces answered with a class (uncertain not scored)."""
    scored = correct = 0
    for row in rows:
        for face, t in zip(PredictionRecord.from_json(row["record"]).faces, row["truth"], strict=True):
            if t is not None and face.label in CLASSES:
                scored += 1
                correct += face.label == t
    return (correct / scored if scored else None), scored


def model_reference(splits: list[str]) -> ReferenceProfile:
    """The shipped model's profile as ``maskops monitor reference --task facemask`` builds it
    (``maskops.monitor.profile.build_model_reference``) from ``splits``, cached."""
    from maskops.data.progress import track
    from maskops.monitor.profile import build_model_reference

    path = CACHE / f"reference-{'+'.join(splits)}-{sha256_file(MODEL)[:12]}-v{PROFILE_VERSION}.json"
    if path.is_file():
        return ReferenceProfile.load(path)
    profile = build_model_reference(
        load_task("facemask"),
        MODEL,
        splits=splits,
        progress=lambda items, n: track(items, n, f"reference ({', '.join(splits)})"),
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    profile.save(path)
    return profile


def store_reference(rows: list[dict[str, Any]], folder: Path) -> ReferenceProfile:
    """A profile from the bench's own records (``--reference-from store``): written to a store, read
    back as a window and summarised by ``build_reference``; the accuracy is the argmax accuracy on the
    matched faces. The window does not say which request each face comes from, so this profile has no
    calibrated thresholds (the tests' defaults apply)."""
    from maskops.monitor.reference import probability_features

    store = Replay(folder, "reference")
    store.write(records_of(rows))
    window = load_window(store.engine, last=10**9)
    store.close()
    probs, truth = matched_arrays(rows)
    accuracy = float(np.mean(probs.argmax(1) == truth))
    numeric = {**probability_features(window.probabilities, window.class_names), **window.numeric}
    return build_reference(numeric, window.categorical, accuracy=accuracy)


# --- drift ------------------------------------------------------------------------------------


def first_window(rows: list[dict[str, Any]], rng: np.random.Generator) -> list[PredictionRecord]:
    """Images in random order (looping when needed) until the records hold ``WINDOW`` faces."""
    records = records_of(rows)
    if not any(r.faces for r in records):
        raise ValueError("no face in the set")
    out: list[PredictionRecord] = []
    faces = 0
    while faces < WINDOW:
        for i in rng.permutation(len(records)):
            out.append(records[i])
            faces += len(records[i].faces)
            if faces >= WINDOW:
                break
    return out


def bootstrap_window(records: list[PredictionRecord], rng: np.random.Generator) -> list[PredictionRecord]:
    """Images drawn with replacement until the records hold ``WINDOW`` faces."""
    out: list[PredictionRecord] = []
    faces = 0
    while faces < WINDOW:
        r = records[int(rng.integers(len(records)))]
        out.append(r)
        faces += len(r.faces)
    return out


def check(store: Replay, profile: ReferenceProfile) -> dict[str, Any]:
    report = drift_report(store.engine, profile, last=WINDOW)
    return {
        "faces": report.window.n_faces,
        "requests": report.window.n_requests,
        "drifted": report.drifted,
        "scores": {
            f.feature: {
                "test": f.result.test,
                "score": f.result.score,
                "threshold": f.result.threshold,
                "threshold_source": f.result.threshold_source,
                "drifted": f.result.drifted,
            }
            for f in report.features
        },
    }


def bench_drift(
    profile: ReferenceProfile, streams: dict[str, list[dict[str, Any]]], windows: int, seed: int, folder: Path
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rows in streams.items():
        store = Replay(folder, f"drift-{name}")
        res: dict[str, Any] = {"images": len(rows), "faces": sum(len(r["truth"]) for r in rows)}
        if name != "unshifted" and not name.startswith("control"):
            store.write(first_window(rows, np.random.default_rng(seed)))
            res["first_window"] = check(store, profile)
        records = records_of(rows)
        per_window = []
        for w in range(windows):
            store.write(bootstrap_window(records, np.random.default_rng(seed + 1000 + w)))
            per_window.append(check(store, profile))
        store.close()
        res["per_window"] = [
            {"drifted": w["drifted"], "scores": {f: v["score"] for f, v in w["scores"].items()}}
            for w in per_window
        ]
        res["thresholds_of_last_window"] = {
            f: {"test": v["test"], "threshold": v["threshold"], "source": v["threshold_source"]}
            for f, v in per_window[-1]["scores"].items()
        }
        res["windows"] = len(per_window)
        res["windows_drifted"] = sum(bool(w["drifted"]) for w in per_window)
        res["feature_drift_counts"] = dict(Counter(f for w in per_window for f in w["drifted"]))
        res["median_scores"] = {
            f: statistics.median(
                w["scores"][f]["score"] for w in per_window if w["scores"][f]["score"] is not None
            )
            for f in per_window[0]["scores"]
        }
        out[name] = res
    return out


# --- estimate ---------------------------------------------------------------------------------


def nannyml_cbpe(
    ref: tuple[np.ndarray, np.ndarray], sets: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, float] | str:
    """NannyML CBPE's estimated accuracy per set (one chunk each), or why it was skipped."""
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # no usage reporting over the network
    try:
        import nannyml as nml  # type: ignore[import-not-found]
        import pandas as pd
    except ImportError as exc:
        return f"skipped: nannyml is not installed ({exc}); pip install nannyml to add the column"

    def frame(p: np.ndarray, y: np.ndarray | None) -> Any:
        df = pd.DataFrame({f"p_{c}": p[:, i] for i, c in enumerate(CLASSES)})
        df["y_pred"] = [CLASSES[i] for i in p.argmax(1)]
        if y is not None:
            df["y_true"] = [CLASSES[i] for i in y]
        return df

    est = nml.CBPE(
        y_pred_proba={c: f"p_{c}" for c in CLASSES},
        y_pred="y_pred",
        y_true="y_true",
        problem_type="classification_multiclass",
        metrics=["accuracy"],
        chunk_number=1,
    )
    est.fit(frame(*ref))
    out = {}
    for name, (p, _) in sets.items():
        res = est.estimate(frame(p, None)).filter(period="analysis").to_df()
        out[name] = float(res[("accuracy", "value")].iloc[0])
    return {"version": nml.__version__, **out}


def bench_estimate(passes: dict[str, list[dict[str, Any]]], reference_sets: list[str]) -> dict[str, Any]:
    sets = {
        "voc-test": passes["voc-test"],
        "ilc-test": passes["ilc-test"],
        "voc-test darkened": passes["voc-test+darken"],
        "mix (voc-test + ilc-test + voc-test darkened)": passes["voc-test"]
        + passes["ilc-test"]
        + passes["voc-test+darken"],
        "ilc-test darkened": passes["ilc-test+darken"],
        "voc-test blurred": passes["voc-test+blur"],
        "ilc-test blurred": passes["ilc-test+blur"],
    }
    arrays = {name: matched_arrays(rows) for name, rows in sets.items()}
    ref = matched_arrays([r for name in reference_sets for r in passes[name]])
    nml_res = nannyml_cbpe(ref, arrays)
    out: dict[str, Any] = {"sets": {}}
    for name, (p, y) in arrays.items():
        e = estimate_performance(p, CLASSES)
        measured = float(np.mean(p.argmax(1) == y))
        all_probs = np.array(
            [[f.probabilities[c] for c in CLASSES] for r in records_of(sets[name]) for f in r.faces],
            np.float64,
        )
        all_probs /= all_probs.sum(axis=1, keepdims=True)
        served, scored = served_accuracy(sets[name])
        row = {
            "matched_faces": len(y),
            "detected_faces": len(all_probs),
            "true_faces": sum(len(r["true_labels"]) for r in sets[name]),
            "measured": measured,
            "estimate": e.expected_accuracy,
            "interval": [e.accuracy_low, e.accuracy_high],
            "error": (e.expected_accuracy or 0.0) - measured,
            "within_0.05": abs((e.expected_accuracy or 0.0) - measured) <= 0.05,
            "estimate_all_detected": estimate_performance(all_probs, CLASSES).expected_accuracy,
            "served_label_accuracy": served,
            "served_scored_faces": scored,
        }
        if isinstance(nml_res, dict):
            row["nannyml_cbpe"] = nml_res[name]
            row["nannyml_error"] = nml_res[name] - measured
        out["sets"][name] = row
    out["nannyml"] = nml_res if isinstance(nml_res, str) else {"version": nml_res["version"]}
    out["reference_matched_faces"] = len(ref[1])
    return out


# --- speed ------------------------------------------------------------------------------------


def synthetic_records(n_faces: int, seed: int = 0) -> Iterator[PredictionRecord]:
    rng = np.random.default_rng(seed)
    made = i = 0
    while made < n_faces:
        k = min(int(rng.integers(1, 5)), n_faces - made)
        probs = rng.dirichlet([8.0, 2.0, 0.5], size=k)
        faces = []
        for j in range(k):
            side = float(rng.lognormal(3.5, 0.5))
            x, y = float(rng.uniform(0, 500)), float(rng.uniform(0, 300))
            p = {c: round(float(v), 4) for c, v in zip(CLASSES, probs[j], strict=True)}
            label = CLASSES[int(probs[j].argmax())] if probs[j].max() >= 0.5 else "uncertain"
            faces.append(
                FaceRecord(
                    box=(x, y, x + side, y + side * 1.2),
                    face_score=float(rng.uniform(0.3, 1.0)),
                    probabilities=p,
                    label=label,
                )
            )
        yield PredictionRecord(
            request_id=f"syn-{i:07d}",
            created_at=T0 + timedelta(seconds=i),
            source="api",
            latency_ms=float(rng.lognormal(3.0, 0.4)),
            width=640,
            height=480,
            quality={
                "brightness": float(rng.beta(5, 5)),
                "contrast": float(rng.uniform(0.1, 0.3)),
                "sharpness": float(rng.lognormal(6, 0.7)),
                "saturation": float(rng.beta(3, 5)),
            },
            faces=tuple(faces),
        )
        made += k
        i += 1


def _timed(fn: Callable[[], Any], repeat: int) -> dict[str, Any]:
    """Wall-clock median and runs, and the median CPU time of the process (all its threads): on a
    shared machine the wall clock also counts the time other processes hold the cores."""
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"median": statistics.median(wall), "runs": wall, "cpu_median": statistics.median(cpu)}


def bench_speed(profile: ReferenceProfile, n_faces: int, repeat: int, folder: Path) -> dict[str, Any]:
    engine = open_store(f"sqlite:///{folder / 'speed.db'}")
    t0 = time.perf_counter()
    batch: list[PredictionRecord] = []
    for r in synthetic_records(n_faces):
        batch.append(r)
        if len(batch) == 2000:
            write_records(engine, batch)
            batch = []
    write_records(engine, batch)
    fill_s = time.perf_counter() - t0
    out: dict[str, Any] = {"faces": n_faces, "fill_s": fill_s, "repeat": repeat}

    out["default_tests_with_loading_s"] = _timed(lambda: drift_report(engine, profile, last=n_faces), repeat)
    out["loading_only_s"] = _timed(lambda: load_window(engine, last=n_faces), repeat)
    window = load_window(engine, last=n_faces)
    out["window"] = {"faces": window.n_faces, "requests": window.n_requests}

    def default_tests() -> None:
        compare_to_reference(profile, numeric=window.numeric, categorical=window.categorical)
        estimate_performance(window.probabilities, window.class_names)

    out["default_tests_without_loading_s"] = _timed(default_tests, repeat)

    embeddings = np.random.default_rng(1).normal(size=(n_faces, 64))
    ref_emb = np.random.default_rng(2).normal(size=(256, 64))

    def every_test() -> dict[str, float]:
        per: dict[str, float] = {}
        for name in list_drift_tests():
            test = get_drift_test(name)
            t = time.perf_counter()
            if test.kind == "numeric":
                for feature, sketch in profile.numeric.items():
                    if feature in window.numeric:
                        test(sketch.sample(), window.numeric[feature])
            elif test.kind == "categorical":
                counts = profile.categorical["label"]
                ref = np.repeat(np.array(list(counts), dtype=object), list(counts.values()))
                test(ref, window.categorical["label"])
            else:
                test(ref_emb, embeddings)
            per[name] = time.perf_counter() - t
        return per

    per_runs = [every_test() for _ in range(repeat)]
    out["every_test_without_loading_s"] = {
        "median": statistics.median(sum(p.values()) for p in per_runs),
        "per_test_median": {k: statistics.median(p[k] for p in per_runs) for k in per_runs[0]},
    }

    try:
        from maskops.monitor import evidently_report as er

        er.require_evidently()
    except Exception as exc:
        out["evidently"] = f"skipped: {exc}"
    else:
        import evidently

        columns = [c for c in [*profile.numeric, *profile.categorical] if not c.startswith("p_")]
        current = er.window_frame(window)
        numeric = [c for c in columns if c in profile.numeric and c in current.columns]
        categorical = [c for c in columns if c in profile.categorical and c in current.columns]
        t = time.perf_counter()
        reference = er.reference_frame(profile, columns=numeric + categorical)
        current = er.window_frame(window)[numeric + categorical]
        frames_s = time.perf_counter() - t
        snapshots: list[Any] = []
        timing = _timed(
            lambda: snapshots.append(er.drift_snapshot(reference, current, numeric, categorical)),
            max(3, repeat // 2),
        )
        out["evidently"] = {
            "version": evidently.__version__,
            "preset_run_s": timing,
            "frames_s": frames_s,
            "drifted": er.drifted_columns(snapshots[-1]),
        }
    engine.dispose()
    return out


# --- main -------------------------------------------------------------------------------------


def machine() -> str:
    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"


def markdown(results: dict[str, Any]) -> str:
    lines = []
    if "drift" in results:
        lines += [
            "| replay (500-face windows) | first window drifted | features drifted in the first window | "
            "windows with drift (bootstrap) | features drifting most often |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, r in results["drift"].items():
            fw = r.get("first_window")
            first = "-" if fw is None else ("yes" if fw["drifted"] else "no")
            feats = "-" if fw is None else (", ".join(fw["drifted"]) or "none")
            counts = ", ".join(
                f"{k} {v}" for k, v in sorted(r["feature_drift_counts"].items(), key=lambda kv: -kv[1])
            )
            lines.append(
                f"| {name} ({r['images']} images, {r['faces']} faces) | {first} | {feats} | "
                f"{r['windows_drifted']}/{r['windows']} | {counts or 'none'} |"
            )
        lines.append("")
    if "estimate" in results:
        e = results["estimate"]
        has_nml = any("nannyml_cbpe" in r for r in e["sets"].values())
        head = "| set | matched faces | measured accuracy | estimate [95% interval] | error |"
        sep = "| --- | --- | --- | --- | --- |"
        if has_nml:
            head += " NannyML CBPE | CBPE error |"
            sep += " --- | --- |"
        head += " estimate on all detected faces | served-label accuracy (uncertain not scored) |"
        sep += " --- | --- |"
        lines += [head, sep]
        for name, r in e["sets"].items():
            lo, hi = r["interval"]
            line = (
                f"| {name} | {r['matched_faces']} of {r['true_faces']} | {r['measured']:.4f} | "
                f"{r['estimate']:.4f} [{lo:.3f}, {hi:.3f}] | {r['error']:+.4f} |"
            )
            if has_nml:
                line += f" {r['nannyml_cbpe']:.4f} | {r['nannyml_error']:+.4f} |"
            served = "-" if r["served_label_accuracy"] is None else f"{r['served_label_accuracy']:.4f}"
            line += f" {r['estimate_all_detected']:.4f} | {served} ({r['served_scored_faces']}) |"
            lines.append(line)
        if isinstance(e["nannyml"], str):
            lines.append(f"\nNannyML: {e['nannyml']}")
        lines.append("")
    if "speed" in results:
        s = results["speed"]
        lines += [
            f"| drift tests over {s['window']['faces']:,} logged faces ({s['window']['requests']:,} requests), "
            "SQLite | median wall s | median CPU s | wall runs |",
            "| --- | --- | --- | --- |",
        ]

        def row(label: str, d: dict[str, Any]) -> str:
            runs = ", ".join(f"{t:.3f}" for t in d.get("runs", []))
            return f"| {label} | {d['median']:.3f} | {d['cpu_median']:.3f} | {runs} |"

        lines.append(
            row(
                "default tests + estimate, loading included (`drift_report`)",
                s["default_tests_with_loading_s"],
            )
        )
        lines.append(row("loading the window only (`load_window`)", s["loading_only_s"]))
        lines.append(row("default tests + estimate, loading excluded", s["default_tests_without_loading_s"]))
        ev = s["every_test_without_loading_s"]
        per = ", ".join(f"{k} {v:.3f}" for k, v in ev["per_test_median"].items())
        lines.append(
            f"| every registered test on every applicable feature, loading excluded ({per}) | {ev['median']:.3f} | | |"
        )
        if isinstance(s["evidently"], dict):
            lines.append(
                row(
                    f"Evidently {s['evidently']['version']} DataDriftPreset, same window, loading excluded",
                    s["evidently"]["preset_run_s"],
                )
            )
        else:
            lines.append(f"| Evidently: {s['evidently']} | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="drift,estimate,speed")
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reference-from",
        choices=("profile", "store"),
        default="profile",
        help="profile: maskops.monitor.profile (what `maskops monitor reference` ships); store: the bench's "
        "replayed records through a store and build_reference",
    )
    parser.add_argument(
        "--reference-splits",
        default="val",
        help="splits of facemask-voc and ILC the reference is built from (val; val,test as `maskops monitor "
        "reference` builds it, which puts the unshifted test images inside the reference)",
    )
    parser.add_argument(
        "--thresholds",
        choices=("calibrated", "default"),
        default="calibrated",
        help="calibrated: the profile's thresholds calibrated at release (what `maskops monitor drift` "
        "uses); default: the tests' default thresholds",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "work" / "bench" / "monitor_drift.json")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    reference_sets = [f"{d}-{s}" for s in args.reference_splits.split(",") for d in ("voc", "ilc")]

    passes: dict[str, list[dict[str, Any]]] = {}
    for name in SETS:
        passes[name] = pipeline_pass(name, None)
    for name in CURRENT:
        for shift in SHIFTS:
            passes[f"{name}+{shift}"] = pipeline_pass(name, shift)

    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "model": f"{MODEL.name} {sha256_file(MODEL)[:12]}",
        "window": WINDOW,
        "seed": args.seed,
    }
    with tempfile.TemporaryDirectory(prefix="maskops-monitor-drift-") as tmp:
        folder = Path(tmp)
        reference_rows = [r for name in reference_sets for r in passes[name]]
        if args.reference_from == "profile":
            profile = model_reference(args.reference_splits.split(","))
        else:
            profile = store_reference(reference_rows, folder)
        if args.thresholds == "default":
            profile = dataclasses.replace(profile, calibration=None)
        cal = profile.calibration
        results["reference"] = {
            "sets": reference_sets,
            "images": len(reference_rows),
            "faces": sum(profile.categorical["label"].values()),
            "built_by": args.reference_from,
            "accuracy": profile.accuracy,
            "info": profile.info,
            "features": sorted([*profile.numeric, *profile.categorical]),
            "thresholds": args.thresholds,
            "calibration": None
            if cal is None
            else {
                "family_alpha": cal.family_alpha,
                "alpha": cal.alpha,
                "window_faces": cal.window_faces,
                "windows": cal.windows,
                "features": sorted(cal.thresholds),
            },
        }
        current = passes["voc-test"] + passes["ilc-test"]
        if "drift" in parts:
            unmasked = [
                r for r in current if r["true_labels"] and all(t == "without_mask" for t in r["true_labels"])
            ]
            streams = {
                "unshifted": current,
                "control: the reference's own images": reference_rows,
                "darken (x0.5)": passes["voc-test+darken"] + passes["ilc-test+darken"],
                "blur (sigma 2)": passes["voc-test+blur"] + passes["ilc-test+blur"],
                "unmasked only (class mix)": unmasked,
            }
            results["drift"] = bench_drift(profile, streams, args.windows, args.seed, folder)
        if "estimate" in parts:
            results["estimate"] = bench_estimate(passes, reference_sets)
        if "speed" in parts:
            results["speed"] = bench_speed(profile, args.faces, args.repeat, folder)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"{results['date']} on {results['machine']}; model {results['model']}")
    print(
        f"reference: {results['reference']['images']} images, {results['reference']['faces']} faces "
        f"({', '.join(reference_sets)}, built by {args.reference_from}), accuracy {profile.accuracy:.4f}; "
        f"thresholds: {args.thresholds}"
        + (
            ""
            if cal is None
            else f" (calibrated: family alpha {cal.family_alpha}, {cal.windows} windows per size)"
        )
        + "\n"
    )
    print(markdown(results))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
