"""``prepare_task``: raw sources -> face crops -> group-aware splits -> the versioned manifest.

Steps (each with a progress bar when it takes a while):

1. list every source's files with their labels (folder name or VOC box names, through
   ``label_map``), fixed splits (``splits_file``) and group ids (``group_pattern``);
2. scan them (sha256, decode, perceptual hashes); unreadable files are left out with the reason;
3. link exact duplicates, near duplicates and same-group files with union-find; byte-identical
   copies are kept once, and copies with different labels are left out as label conflicts;
4. cut face crops (VOC boxes with a margin; one YuNet face per photo, or the whole photo when no
   face is found; photos with several faces are left out); every finished image is logged in
   ``crops.jsonl`` so an interrupted run resumes where it stopped;
5. assign each group to one split (``splits.json`` when given, otherwise stratified and seeded);
6. write ``manifest.csv`` and ``manifest.json`` (hash, counts, what was left out and why, config).

Nothing a single file does can stop the stage: it is reported and counted instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskops.boxes import expand_box
from maskops.config import Settings, SourceConfig, TaskConfig, resolve_source_path
from maskops.data.crops import (
    box_to_str,
    encode_png,
    pixel_sha256,
    png_pixel_sha256,
    safe_stem,
    write_atomic,
)
from maskops.data.hashing import UnionFind, near_pairs
from maskops.data.images import ImageReadError, load_image, to_bgr
from maskops.data.manifest import ManifestRow, write_manifest
from maskops.data.progress import track
from maskops.data.scan import FileInfo, scan_files
from maskops.data.sources import VocParseError, folder_label, list_files, parse_voc, voc_items
from maskops.data.splits import SPLIT_ORDER, SplitUnit, assign_splits
from maskops.data.validate import ValidationRules

log = logging.getLogger(__name__)

CROP_FORMAT_VERSION = 1
# the detector that cuts the crops of ``crop: face`` sources: plain YuNet, not the pipeline's
# ``maskops.detect.base.DEFAULT_DETECTOR`` (yunet_cal). Its name and options are part of each crop's
# cache key and of the manifest report, so changing them re-cuts the crops and changes the data.
CROP_DETECTOR = "yunet"
CROP_DETECTOR_OPTIONS: dict[str, Any] = {"score_threshold": 0.6, "upscale": 2.0}
# synthetic masks need landmarks: always YuNet, whatever detector cut the crops
LANDMARK_DETECTOR = "yunet"
LANDMARK_DETECTOR_OPTIONS: dict[str, Any] = {"score_threshold": 0.5, "upscale": 1.0}
# ``make_detector(name, **options)`` builds a face detector (``maskops.detect.create_detector``); it is
# passed in by the caller so this stage does not depend on ``maskops.detect``. It must be picklable
# (a module-level function) when crops are cut in worker processes.
MakeDetector = Callable[..., Any]
# a held-out split wins when copies were fixed to different splits: no test image may leak to train
_SPLIT_PRIORITY = {"test": 0, "val": 1, "train": 2}


@dataclass
class PrepareReport:
    """What ``prepare_task`` wrote and found.

    Attributes:
        task: task name.
        manifest_path: the CSV.
        manifest_hash: its content hash (see ``manifest_hash``).
        n_rows: examples in the manifest.
        classes: task classes.
        counts: ``{split: {class: n}}``.
        excluded: one dict per file or box left out: ``path, source, kind, reason`` (+ ``box``).
        summary: figures per step (duplicates, faces found, crops per class, split sizes ...).
        elapsed_s: wall time.
    """

    task: str
    manifest_path: Path
    manifest_hash: str
    n_rows: int
    classes: list[str]
    counts: dict[str, dict[str, int]]
    excluded: list[dict[str, str]]
    summary: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def excluded_reasons(self) -> dict[str, int]:
        """How many files/boxes were left out, per kind of reason."""
        return dict(Counter(e["kind"] for e in self.excluded).most_common())


@dataclass
class _Item:
    """One raw image of a source."""

    source: SourceConfig
    path: Path
    rel: str
    label: str | None = None  # folder sources: the task class
    fixed: str | None = None
    slide: str | None = None
    xml: Path | None = None
    info: FileInfo | None = None
    examples: list[dict[str, str]] = field(default_factory=list)


def _exclude(
    excluded: list[dict[str, str]], path: Path | str, source: str, kind: str, reason: str, **extra: str
) -> None:
    excluded.append({"path": str(path), "source": source, "kind": kind, "reason": reason, **extra})


def _load_splits_file(path: Path) -> dict[str, str]:
    """``{stem: split}`` from a ``splits.json`` with ``train``/``val``/``test`` lists of stems."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable splits file: {exc}") from exc
    out: dict[str, str] = {}
    for split in SPLIT_ORDER:
        stems = data.get(split, [])
        if not isinstance(stems, list):
            raise ValueError(f"{path}: {split!r} must be a list of image stems")
        for stem in stems:
            if stem in out and out[stem] != split:
                raise ValueError(f"{path}: stem {stem!r} is in both {out[stem]!r} and {split!r}")
            out[str(stem)] = split
    return out


def _list_items(task: TaskConfig, settings: Settings, excluded: list[dict[str, str]]) -> list[_Item]:
    items: list[_Item] = []
    for src in task.sources:
        root = resolve_source_path(src, settings)
        if not root.is_dir():
            raise ValueError(f"task {task.name!r}: source {src.name!r} not found at {root}")
        pattern = re.compile(src.group_pattern, re.IGNORECASE) if src.group_pattern else None
        if src.kind == "folder":
            keys = set(src.label_map) | set(task.classes)
            for p in list_files(root):
                raw = folder_label(p, root, keys)
                if raw is None:
                    _exclude(excluded, p, src.name, "no_label", f"not inside a class folder {sorted(keys)}")
                    continue
                items.append(_Item(src, p, p.relative_to(root).as_posix(), label=src.label_map.get(raw, raw)))
        else:
            fixed: dict[str, str] = {}
            if src.splits_file and (root / src.splits_file).is_file():
                fixed = _load_splits_file(root / src.splits_file)
            for it in voc_items(root):
                if it.image is None:
                    _exclude(excluded, str(it.xml), src.name, "voc_missing_image", "xml without image")
                    continue
                if it.xml is None:
                    _exclude(excluded, it.image, src.name, "voc_missing_xml", "image without xml")
                    continue
                items.append(_Item(src, it.image, it.stem, fixed=fixed.get(it.stem), xml=it.xml))
        if pattern is not None:
            for item in (i for i in items if i.source is src):
                m = pattern.search(item.path.name)
                item.slide = m.group(1) if m and m.groups() else (m.group(0) if m else None)
    return items


def _union_items(items: Sequence[_Item], rules: ValidationRules) -> tuple[UnionFind[int], dict[str, int]]:
    """Link exact duplicates, near duplicates and same-slide files; returns the sets and figures."""
    uf: UnionFind[int] = UnionFind(range(len(items)))
    by_sha: dict[str, list[int]] = defaultdict(list)
    by_slide: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        assert item.info is not None
        by_sha[item.info.sha256].append(i)
        if item.slide is not None:
            by_slide[(item.source.name, item.slide)].append(i)
    for members in [*by_sha.values(), *by_slide.values()]:
        for j in members[1:]:
            uf.union(members[0], j)
    reps = [m[0] for m in by_sha.values()]
    infos = [items[i].info for i in reps]
    pairs = near_pairs(
        [f.phash for f in infos if f], [f.dhash for f in infos if f], rules.phash_max, rules.dhash_max
    )
    ignored = 0
    for a, b in pairs:
        ia, ib = reps[a], reps[b]
        sa, sb = items[ia].slide, items[ib].slide
        if sa is not None and sb is not None and sa != sb:
            # Both files carry an explicit group id (a patient's slide) and they differ: on tiny
            # look-alike images (50x50 cells) the hashes match unrelated cells thousands of times,
            # and linking them would merge every slide into one group. The id is the authority.
            ignored += 1
            continue
        uf.union(ia, ib)
    figures = {
        "exact_duplicate_groups": sum(len(m) > 1 for m in by_sha.values()),
        "exact_duplicate_files": sum(len(m) for m in by_sha.values() if len(m) > 1),
        "near_duplicate_pairs": len(pairs),
    }
    if by_slide:
        figures["near_pairs_across_group_ids_ignored"] = ignored
    return uf, figures


def _parses(path: Path) -> bool:
    try:
        parse_voc(path)
    except VocParseError:
        return False
    return True


def _dedupe(items: list[_Item], excluded: list[dict[str, str]]) -> list[_Item]:
    """Keep one file per content; drop every copy when the copies disagree on the label."""
    by_sha: dict[str, list[_Item]] = defaultdict(list)
    for item in items:
        assert item.info is not None
        by_sha[item.info.sha256].append(item)
    kept: list[_Item] = []
    order = {id(item): k for k, item in enumerate(items)}
    for copies in by_sha.values():
        # keep the copy fixed to the most held-out split, so a test image never moves to train
        copies.sort(key=lambda c: (_SPLIT_PRIORITY.get(c.fixed or "", 3), order[id(c)]))
        labels = {c.label for c in copies if c.source.kind == "folder"}
        if len(labels) > 1:
            for c in copies:
                _exclude(
                    excluded,
                    c.path,
                    c.source.name,
                    "label_conflict",
                    f"same bytes in classes {sorted(str(lab) for lab in labels)}",
                )
            continue
        kept.append(copies[0])
        for c in copies[1:]:
            _exclude(excluded, c.path, c.source.name, "exact_duplicate", f"same bytes as {copies[0].path}")
    return kept


# ---------------------------------------------------------------- crops (run in worker processes)

_WORKER_DETECTOR: Any = None


def _init_crop_worker(make_detector: MakeDetector | None, detector: str, options: dict[str, Any]) -> None:
    global _WORKER_DETECTOR
    cv2.setNumThreads(1)
    _WORKER_DETECTOR = (make_detector, detector, options)


def _get_detector() -> Any:
    global _WORKER_DETECTOR
    if isinstance(_WORKER_DETECTOR, tuple):
        make_detector, name, options = _WORKER_DETECTOR
        if make_detector is None:
            raise ValueError("face crops need a face detector: pass make_detector to prepare_task")
        _WORKER_DETECTOR = make_detector(name, **options)
    return _WORKER_DETECTOR


@dataclass(frozen=True)
class _CropJob:
    key: str
    kind: str  # "boxes" | "face"
    path: str
    sha256: str
    source: str
    label: str
    boxes: tuple[tuple[str, float, float, float, float, int], ...]  # (label, x1, y1, x2, y2, index)
    margin: float
    out_dir: str


def _save_crop(
    job: _CropJob, image: np.ndarray, box: Sequence[float], label: str, suffix: str
) -> dict[str, str]:
    h, w = image.shape[:2]
    x1, y1, x2, y2 = expand_box(box, job.margin, w, h)
    crop = image[y1:y2, x1:x2]
    name = f"{safe_stem(Path(job.path).stem)}_{job.sha256[:8]}_{suffix}.png"
    rel = Path("crops") / safe_stem(job.source) / label / name
    write_atomic(Path(job.out_dir) / rel, encode_png(crop))
    return {
        "path": rel.as_posix(),
        "sha256": pixel_sha256(crop),
        "label": label,
        "box": box_to_str(box),
        "kind": suffix,
    }


def _run_crop_job(job: _CropJob) -> dict[str, Any]:
    """Cut and save the crops of one image; returns the ``crops.jsonl`` entry."""
    entry: dict[str, Any] = {"key": job.key, "path": job.path, "examples": [], "excluded": []}
    try:
        image = to_bgr(load_image(job.path).image)
    except ImageReadError as exc:
        entry["excluded"].append({"kind": "unreadable", "reason": exc.reason})
        return entry
    if job.kind == "boxes":
        for label, x1, y1, x2, y2, k in job.boxes:
            entry["examples"].append(_save_crop(job, image, (x1, y1, x2, y2), label, f"box{k}"))
        return entry
    faces = _get_detector().detect(image)
    entry["n_faces"] = len(faces)
    if len(faces) == 1:
        entry["examples"].append(_save_crop(job, image, faces.xyxy[0].tolist(), job.label, "face"))
    elif len(faces) == 0:
        h, w = image.shape[:2]
        entry["examples"].append({**_save_crop(job, image, (0, 0, w, h), job.label, "whole"), "box": ""})
    else:
        entry["excluded"].append({"kind": "multiple_faces", "reason": f"{len(faces)} faces"})
    return entry


def _entry_valid(entry: dict[str, Any], out_dir: Path) -> bool:
    """A logged image is done when each of its crops exists with the logged pixel hash."""
    return all(png_pixel_sha256(out_dir / ex["path"]) == ex["sha256"] for ex in entry.get("examples", []))


def _read_log(path: Path) -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return entries
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by an interruption: that image is simply redone
        if isinstance(entry, dict) and "key" in entry:
            entries[entry["key"]] = entry
    return entries


def _run_jobs(
    jobs: Sequence[_CropJob],
    workers: int,
    make_detector: MakeDetector | None,
    detector: str,
    options: dict[str, Any],
) -> Iterator[dict[str, Any]]:
    if workers <= 1 or len(jobs) < 16:
        _init_crop_worker(make_detector, detector, options)
        yield from (_run_crop_job(j) for j in jobs)
        return
    ctx = multiprocessing.get_context("spawn")  # fork can hang after OpenCV ran threads here
    with ProcessPoolExecutor(
        mp_context=ctx,
        max_workers=workers,
        initializer=_init_crop_worker,
        initargs=(make_detector, detector, options),
    ) as pool:
        yield from pool.map(_run_crop_job, jobs, chunksize=8)


def _job_key(item: _Item, task: TaskConfig, detector: str, options: dict[str, Any], boxes: Any) -> str:
    assert item.info is not None
    payload = json.dumps(
        [
            CROP_FORMAT_VERSION,
            item.source.name,
            item.source.crop,
            item.info.sha256,
            item.label,
            task.crops.margin,
            boxes,
            detector if item.source.crop == "face" else "",
            options if item.source.crop == "face" else {},
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _voc_boxes(
    item: _Item, task: TaskConfig, excluded: list[dict[str, str]], figures: Counter[str]
) -> list[tuple[str, float, float, float, float, int]] | None:
    """Valid boxes of a VOC image (label-mapped, non-empty, big enough), or ``None`` to skip it."""
    assert item.xml is not None and item.info is not None
    src = item.source
    try:
        ann = parse_voc(item.xml)
    except VocParseError as exc:
        _exclude(excluded, item.xml, src.name, "voc_xml_unreadable", str(exc))
        return None
    figures["voc_boxes_of_kept_images"] += len(ann.objects)
    if (ann.width, ann.height) != (item.info.width, item.info.height):
        _exclude(
            excluded,
            item.path,
            src.name,
            "voc_size_mismatch",
            f"xml says {ann.width}x{ann.height}, image is {item.info.width}x{item.info.height}",
        )
        figures["voc_boxes_dropped_size_mismatch"] += len(ann.objects)
        return None
    boxes = []
    for k, obj in enumerate(ann.objects):
        box = box_to_str((obj.xmin, obj.ymin, obj.xmax, obj.ymax))
        label = src.label_map.get(obj.name, obj.name)
        if label not in task.classes:
            _exclude(excluded, item.path, src.name, "unknown_label", f"box #{k} label {obj.name!r}", box=box)
            continue
        x1, y1 = max(0.0, obj.xmin), max(0.0, obj.ymin)
        x2, y2 = min(float(item.info.width), obj.xmax), min(float(item.info.height), obj.ymax)
        if x2 <= x1 or y2 <= y1:
            _exclude(
                excluded, item.path, src.name, "zero_area_box", f"box #{k} has no area in the image", box=box
            )
            continue
        filtered = item.fixed is None or item.fixed in task.crops.min_size_splits
        if filtered and min(x2 - x1, y2 - y1) < task.crops.min_size:
            _exclude(
                excluded,
                item.path,
                src.name,
                "small_box",
                f"box #{k} shorter side {min(x2 - x1, y2 - y1):g} < min_size {task.crops.min_size}",
                box=box,
            )
            continue
        boxes.append((label, x1, y1, x2, y2, k))
    return boxes


def _make_examples(
    items: list[_Item],
    task: TaskConfig,
    out_dir: Path,
    excluded: list[dict[str, str]],
    workers: int,
    make_detector: MakeDetector | None,
    detector: str,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Fill ``item.examples`` (raw files or crops); returns figures for the report."""
    figures: Counter[str] = Counter()
    log_path = out_dir / "crops.jsonl"
    done = _read_log(log_path)
    jobs: list[_CropJob] = []
    job_items: dict[str, _Item] = {}
    for item in items:
        assert item.info is not None
        src = item.source
        if src.crop == "none":
            if src.kind == "voc":
                raise ValueError(f"source {src.name!r}: VOC sources need crop: boxes")
            item.examples = [
                {
                    "path": str(item.path),
                    "sha256": item.info.sha256,
                    "label": str(item.label),
                    "box": "",
                    "kind": "raw",
                }
            ]
            continue
        boxes: Any = None
        if src.kind == "voc":
            boxes = _voc_boxes(item, task, excluded, figures)
            if boxes is None:
                continue
        key = _job_key(item, task, detector, options, boxes)
        job_items[key] = item
        jobs.append(
            _CropJob(
                key,
                "boxes" if src.crop == "boxes" else "face",
                str(item.path),
                item.info.sha256,
                src.name,
                str(item.label),
                tuple(boxes or ()),
                task.crops.margin,
                str(out_dir),
            )
        )
    reused = [
        j
        for j in track(jobs, len(jobs), "check finished crops")
        if j.key in done and _entry_valid(done[j.key], out_dir)
    ]
    reused_keys = {j.key for j in reused}
    pending = [j for j in jobs if j.key not in reused_keys]
    figures["crop_images_reused"] = len(reused)
    figures["crop_images_cut"] = len(pending)
    results = {j.key: done[j.key] for j in reused}
    if pending:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a", encoding="utf-8") as fh:
            for entry in track(
                _run_jobs(pending, workers, make_detector, detector, options), len(pending), "cut face crops"
            ):
                fh.write(json.dumps(entry) + "\n")
                fh.flush()
                results[entry["key"]] = entry
    faces: Counter[str] = Counter()
    for key, entry in results.items():
        item = job_items[key]
        if "n_faces" in entry:
            n = entry["n_faces"]
            faces["0" if n == 0 else "1" if n == 1 else ">1"] += 1
        for ex in entry["excluded"]:
            _exclude(excluded, item.path, item.source.name, ex["kind"], ex["reason"])
        item.examples = [{**ex, "path": str(out_dir / ex["path"])} for ex in entry["examples"]]
    out: dict[str, Any] = dict(figures)
    if faces:
        out["photos_by_faces_found"] = {k: faces[k] for k in ("0", "1", ">1")}
    return out


# ---------------------------------------------------------------- groups and splits


def _assign(
    items: list[_Item],
    uf: UnionFind[int],
    index: dict[int, int],
    task: TaskConfig,
    excluded: list[dict[str, str]],
) -> tuple[dict[int, tuple[str, str]], dict[str, Any]]:
    """Group id and split per kept item index; left-out members are reported."""
    comps: dict[int, list[int]] = defaultdict(list)
    for pos, item_idx in index.items():
        comps[uf.find(item_idx)].append(pos)
    units: list[SplitUnit] = []
    members_of: dict[str, list[int]] = {}
    conflicts = 0
    for members in comps.values():
        members.sort(key=lambda p: (task.sources.index(items[p].source), items[p].rel))
        first = items[members[0]]
        slides = sorted({s for p in members if (s := items[p].slide) is not None}, key=lambda s: (len(s), s))
        gid = f"{first.source.name}:C{'+C'.join(slides)}" if slides else f"{first.source.name}:{first.rel}"
        fixed_set = {f for p in members if (f := items[p].fixed)}
        fixed = min(fixed_set, key=lambda s: _SPLIT_PRIORITY[s]) if fixed_set else None
        if len(fixed_set) > 1:
            conflicts += 1
            log.warning("group %s: copies fixed to splits %s; using %s", gid, sorted(fixed_set), fixed)
        keep = []
        allowed = set(SPLIT_ORDER)
        for p in members:
            ok = set(items[p].source.splits_for or SPLIT_ORDER)
            if fixed is not None and fixed not in ok:
                _exclude(
                    excluded,
                    items[p].path,
                    items[p].source.name,
                    "split_not_allowed",
                    f"a copy is fixed to {fixed!r}, this source only goes to {sorted(ok)}",
                )
                continue
            if not (allowed & ok):
                _exclude(
                    excluded,
                    items[p].path,
                    items[p].source.name,
                    "split_not_allowed",
                    "copies of sources with disjoint splits",
                )
                continue
            allowed &= ok
            keep.append(p)
        if not keep:
            continue
        counts = Counter(ex["label"] for p in keep for ex in items[p].examples)
        units.append(SplitUnit(gid, dict(counts), tuple(s for s in SPLIT_ORDER if s in allowed), fixed))
        members_of[gid] = keep
    split_of = assign_splits(units, task.split.fractions, task.split.seed)
    out: dict[int, tuple[str, str]] = {}
    for gid, keep in members_of.items():
        for p in keep:
            out[p] = (gid, split_of[gid])
    groups_per_split = Counter(split_of.values())
    return out, {
        "groups": len(units),
        "groups_per_split": {s: groups_per_split.get(s, 0) for s in SPLIT_ORDER},
        "groups_with_conflicting_fixed_splits": conflicts,
    }


def _synthetic_rows(
    rows: list[ManifestRow],
    task: TaskConfig,
    out_dir: Path,
    summary: dict[str, Any],
    make_detector: MakeDetector,
) -> list[ManifestRow]:
    """``task.synthetic``'s painted crops (``maskops.data.synth``), with absolute source paths."""
    from maskops.data.synth import synthesize_rows

    assert task.synthetic is not None
    absolute = [replace(r, path=str(out_dir / r.path)) if not Path(r.path).is_absolute() else r for r in rows]
    det = make_detector(LANDMARK_DETECTOR, **LANDMARK_DETECTOR_OPTIONS)
    made, figures = synthesize_rows(absolute, out_dir, task.synthetic, det, task.classes)
    summary["synthetic"] = figures
    log.info("synthetic masks: %s from %d usable faces", figures["made"], figures["usable"])
    return made


def _needs_detector(task: TaskConfig) -> bool:
    synthetic = task.synthetic is not None and any(task.synthetic.placements.values())
    return synthetic or any(src.crop == "face" for src in task.sources)


def prepare_task(
    task: TaskConfig,
    settings: Settings,
    workers: int | None = None,
    detector: str = CROP_DETECTOR,
    detector_options: dict[str, Any] | None = None,
    rules: ValidationRules | None = None,
    make_detector: MakeDetector | None = None,
) -> PrepareReport:
    """Prepare a task's data: write ``<work_dir>/prepared/<task>/manifest.csv`` and ``manifest.json``.

    Args:
        task: the task config (``load_task``).
        settings: data and work folders.
        workers: processes for scanning and cropping (default 2).
        detector: face detector for ``crop: face`` sources (registry name).
        detector_options: its options (default: score 0.6, small images upscaled x2).
        rules: near-duplicate thresholds (default ``ValidationRules()``).
        make_detector: ``make_detector(name, **options)`` builds a face detector (pass
            ``maskops.detect.create_detector``); needed when the task has ``crop: face`` sources or
            synthetic masks.

    Returns:
        The report; unusable files are in ``report.excluded``, never raised.

    Raises:
        ValueError: a source folder or its splits file is missing or invalid, or the task needs a face
            detector and ``make_detector`` is missing.
    """
    if make_detector is None and _needs_detector(task):
        raise ValueError(
            f"task {task.name!r} has crop: face sources or synthetic masks: pass make_detector "
            "(e.g. maskops.detect.create_detector) to prepare_task"
        )
    start = time.perf_counter()
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    options = dict(CROP_DETECTOR_OPTIONS if detector_options is None else detector_options)
    rules = rules or ValidationRules()
    out_dir = settings.prepared_dir(task.name).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    excluded: list[dict[str, str]] = []
    summary: dict[str, Any] = {}

    items = _list_items(task, settings, excluded)
    for src in task.sources:
        own = [i for i in items if i.source is src]
        infos = scan_files([i.path for i in own], workers=workers, description=f"scan {src.name}")
        for item, info in zip(own, infos, strict=True):
            item.info = info
    readable = []
    for item in items:
        assert item.info is not None
        if item.info.ok:
            readable.append(item)
        else:
            _exclude(excluded, item.path, item.source.name, "unreadable", str(item.info.error))
    for item in readable:
        if item.source.group_pattern and item.slide is None:
            _exclude(
                excluded,
                item.path,
                item.source.name,
                "no_group_id",
                f"name does not match group_pattern {item.source.group_pattern!r}",
            )
    readable = [i for i in readable if not (i.source.group_pattern and i.slide is None)]
    uf, dup_figures = _union_items(readable, rules)
    voc_boxes = [len(parse_voc(i.xml).objects) for i in readable if i.xml is not None and _parses(i.xml)]
    if voc_boxes:
        dup_figures["voc_boxes_in_readable_images"] = sum(voc_boxes)
    summary["duplicates"] = dup_figures
    position = {id(item): k for k, item in enumerate(readable)}
    kept = _dedupe(readable, excluded)
    summary["crops"] = _make_examples(
        kept, task, out_dir, excluded, workers, make_detector, detector, options
    )
    index = {k: position[id(item)] for k, item in enumerate(kept)}
    assignment, split_figures = _assign(kept, uf, index, task, excluded)
    summary["splits"] = split_figures

    rows = []
    for k, item in enumerate(kept):
        if k not in assignment:
            continue
        gid, split = assignment[k]
        for ex in item.examples:
            rows.append(
                ManifestRow(
                    path=ex["path"],
                    sha256=ex["sha256"],
                    label=ex["label"],
                    split=split,
                    group=gid,
                    source=item.source.name + (":whole" if ex["kind"] == "whole" else ""),
                    parent="" if ex["kind"] == "raw" else str(item.path),
                    box=ex["box"],
                )
            )
    if task.synthetic is not None and any(task.synthetic.placements.values()):
        assert make_detector is not None
        rows.extend(_synthetic_rows(rows, task, out_dir, summary, make_detector))
    rows.sort(key=lambda r: (SPLIT_ORDER.index(r.split), r.label, r.group, r.path))
    manifest_path = out_dir / "manifest.csv"
    digest = write_manifest(rows, manifest_path)
    counts = {s: {c: 0 for c in task.classes} for s in SPLIT_ORDER}
    for r in rows:
        counts[r.split][r.label] += 1
    by_source: dict[str, dict[str, int]] = defaultdict(lambda: Counter())
    for r in rows:
        by_source[r.source][r.label] += 1
    summary["rows_per_source"] = {s: dict(c) for s, c in sorted(by_source.items())}
    summary["files"] = {
        "listed": len(items)
        + sum(e["kind"] in ("no_label", "voc_missing_image", "voc_missing_xml") for e in excluded),
        "readable": len(readable) + sum(e["kind"] == "no_group_id" for e in excluded),
        "after_dedup": len(kept),
    }
    report = PrepareReport(
        task=task.name,
        manifest_path=manifest_path,
        manifest_hash=digest,
        n_rows=len(rows),
        classes=list(task.classes),
        counts=counts,
        excluded=excluded,
        summary=summary,
        elapsed_s=time.perf_counter() - start,
    )
    meta = {
        "task": task.name,
        "manifest": manifest_path.name,
        "manifest_hash": digest,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "n_rows": len(rows),
        "counts": counts,
        "excluded_counts": report.excluded_reasons(),
        "excluded": excluded,
        "summary": summary,
        "config": task.model_dump(mode="json"),
        "near_duplicate_rules": {"phash_max": rules.phash_max, "dhash_max": rules.dhash_max},
        "detector": {"name": detector, "options": options},
        "data_dir": str(settings.data_dir),
        "elapsed_s": round(report.elapsed_s, 1),
    }
    tmp = out_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / "manifest.json")
    log.info("prepared %s: %d rows, hash %s, %d left out", task.name, len(rows), digest[:12], len(excluded))
    return report
