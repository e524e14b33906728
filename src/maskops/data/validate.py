"""Validate a raw dataset (image folders or Pascal VOC) and report what is wrong with it.

Each check is a named rule; every finding is an ``Issue(rule, path, detail)``. Which rules block
(make ``maskops data validate`` exit 1) is configurable; by default the rules that mean missing
data or wrong labels block, and everything that ``prepare`` handles on its own only warns:

=====================  ========  ===========================================================
rule                   default   meaning
=====================  ========  ===========================================================
unreadable             block     cannot be read, not an image, or fails to decode
truncated              block     the file ends before its end marker (JPEG EOI, PNG IEND, ...)
label_conflict         block     byte-identical files in two different classes
no_class               warn      a file outside any class folder
exact_duplicate        warn      byte-identical files within one class
near_duplicate         warn      perceptually identical files (pHash AND dHash close)
near_label_conflict    warn      a near-duplicate group spanning two classes
tiny_image             warn      shorter side below ``tiny_px``
extreme_aspect         warn      longer/shorter side above ``max_aspect``
voc_xml_unreadable     block     malformed xml or missing field
voc_missing_image      block     an xml without its image
voc_unknown_label      block     a box label that is not a known class
voc_size_mismatch      block     xml <size> differs from the decoded image
voc_missing_xml        warn      an image without xml
voc_box_out_of_bounds  warn      a box reaching outside the image (crops clip it)
voc_box_zero_area      warn      a box with zero or negative width or height
=====================  ========  ===========================================================
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskops.data.hashing import UnionFind, near_pairs
from maskops.data.scan import FileInfo, scan_files
from maskops.data.sources import (
    VocAnnotation,
    VocParseError,
    folder_label,
    is_voc,
    list_files,
    parse_voc,
    voc_items,
)
from maskops.types import MaskClass

log = logging.getLogger(__name__)

RULES: dict[str, str] = {
    "unreadable": "cannot be read, not an image, or fails to decode",
    "truncated": "file ends before its end marker",
    "label_conflict": "byte-identical files in different classes",
    "no_class": "file outside any class folder",
    "exact_duplicate": "byte-identical files within one class",
    "near_duplicate": "perceptually identical files (pHash and dHash close)",
    "near_label_conflict": "near-duplicate group spanning classes",
    "tiny_image": "shorter side below tiny_px",
    "extreme_aspect": "longer/shorter side above max_aspect",
    "voc_xml_unreadable": "malformed VOC xml or missing field",
    "voc_missing_image": "xml without its image",
    "voc_unknown_label": "box label that is not a known class",
    "voc_size_mismatch": "xml <size> differs from the image",
    "voc_missing_xml": "image without xml",
    "voc_box_out_of_bounds": "box reaching outside the image",
    "voc_box_zero_area": "box with zero or negative width or height",
}
DEFAULT_BLOCKING = frozenset(
    {
        "unreadable",
        "truncated",
        "label_conflict",
        "voc_xml_unreadable",
        "voc_missing_image",
        "voc_unknown_label",
        "voc_size_mismatch",
    }
)
PERCENTILES = (0, 5, 25, 50, 75, 95, 100)


class UnknownRuleError(ValueError):
    """A rule name that does not exist; the message lists the valid ones."""


def check_rule_names(names: Collection[str]) -> None:
    """Raise ``UnknownRuleError`` for names that are not in ``RULES``."""
    bad = sorted(set(names) - set(RULES))
    if bad:
        raise UnknownRuleError(f"unknown validation rules {bad}; valid rules: {', '.join(RULES)}")


@dataclass(frozen=True)
class ValidationRules:
    """Thresholds and the set of blocking rules.

    Attributes:
        tiny_px: images whose shorter side is below this are ``tiny_image``.
        max_aspect: images with longer/shorter side above this are ``extreme_aspect``.
        phash_max: largest pHash Hamming distance for a near duplicate (pHash distances are even).
        dhash_max: largest dHash Hamming distance for a near duplicate; both must hold.
        blocking: rules that make the report fail.
    """

    tiny_px: int = 32
    max_aspect: float = 4.0
    phash_max: int = 6
    dhash_max: int = 10
    blocking: frozenset[str] = DEFAULT_BLOCKING

    def __post_init__(self) -> None:
        check_rule_names(self.blocking)

    def with_blocking(self, add: Collection[str] = (), remove: Collection[str] = ()) -> ValidationRules:
        """A copy with rules added to / removed from ``blocking``."""
        check_rule_names([*add, *remove])
        return ValidationRules(
            self.tiny_px,
            self.max_aspect,
            self.phash_max,
            self.dhash_max,
            frozenset((set(self.blocking) | set(add)) - set(remove)),
        )


@dataclass(frozen=True)
class Issue:
    """One finding of one rule."""

    rule: str
    path: str
    detail: str = ""


@dataclass
class DuplicateGroup:
    """Files that are the same image: byte-identical (``kind='exact'``) or perceptually (``'near'``)."""

    kind: str
    paths: list[str]
    labels: list[str]

    @property
    def cross_class(self) -> bool:
        return len(set(self.labels)) > 1


@dataclass
class ValidationReport:
    """Everything ``validate_dataset`` found; ``to_dict()`` is the JSON form."""

    dataset: str
    root: str
    kind: str
    n_files: int
    n_ok: int
    counts: dict[str, int]
    formats: dict[str, int]
    modes: dict[str, int]
    image_size: dict[str, dict[str, float]]
    issues: list[Issue]
    exact_groups: list[DuplicateGroup]
    near_groups: list[DuplicateGroup]
    blocking_rules: list[str]
    box_stats: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def rule_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(i.rule for i in self.issues).items()))

    @property
    def blocking_found(self) -> list[str]:
        """Blocking rules that fired."""
        return sorted({i.rule for i in self.issues} & set(self.blocking_rules))

    @property
    def ok(self) -> bool:
        return not self.blocking_found

    def duplicate_summary(self) -> dict[str, int]:
        """Counts of exact and near groups and files, and how many span classes."""
        return {
            "exact_groups": len(self.exact_groups),
            "exact_files": sum(len(g.paths) for g in self.exact_groups),
            "exact_cross_class_groups": sum(g.cross_class for g in self.exact_groups),
            "near_groups": len(self.near_groups),
            "near_files": sum(len(g.paths) for g in self.near_groups),
            "near_cross_class_groups": sum(g.cross_class for g in self.near_groups),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "root": self.root,
            "kind": self.kind,
            "ok": self.ok,
            "blocking_found": self.blocking_found,
            "blocking_rules": self.blocking_rules,
            "n_files": self.n_files,
            "n_ok": self.n_ok,
            "counts": self.counts,
            "formats": self.formats,
            "modes": self.modes,
            "image_size": self.image_size,
            "rule_counts": self.rule_counts,
            "duplicates": self.duplicate_summary(),
            "exact_groups": [{**asdict(g), "cross_class": g.cross_class} for g in self.exact_groups],
            "near_groups": [{**asdict(g), "cross_class": g.cross_class} for g in self.near_groups],
            "box_stats": self.box_stats,
            "issues": [asdict(i) for i in self.issues],
            "elapsed_s": round(self.elapsed_s, 2),
        }


def percentiles(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Named percentiles (``p0`` … ``p100``) of ``values``; empty input gives an empty dict."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {}
    return {f"p{q}": round(float(np.percentile(arr, q)), 2) for q in PERCENTILES}


def image_issues(info: FileInfo, rules: ValidationRules) -> list[Issue]:
    """Per-file rules: unreadable/truncated, tiny, extreme aspect (pure)."""
    if info.error is not None:
        rule = "truncated" if info.error.startswith("truncated") else "unreadable"
        return [Issue(rule, info.path, info.error)]
    out = []
    short, long_ = min(info.width, info.height), max(info.width, info.height)
    if short < rules.tiny_px:
        out.append(Issue("tiny_image", info.path, f"{info.width}x{info.height} < {rules.tiny_px} px"))
    if short > 0 and long_ / short > rules.max_aspect:
        out.append(
            Issue("extreme_aspect", info.path, f"{info.width}x{info.height} (ratio {long_ / short:.1f})")
        )
    return out


def duplicate_groups(
    infos: Sequence[FileInfo], labels: Sequence[str], rules: ValidationRules
) -> tuple[list[DuplicateGroup], list[DuplicateGroup]]:
    """Exact (sha256) and near (pHash and dHash) duplicate groups among readable files.

    Near groups are connected components over distinct contents, so a near group holds at least two
    different files' bytes; it lists every file of those contents.

    Returns:
        ``(exact_groups, near_groups)``, each sorted by first path.
    """
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, info in enumerate(infos):
        if info.ok:
            by_sha[info.sha256].append(i)
    exact = [
        DuplicateGroup("exact", [infos[i].path for i in idx], [labels[i] for i in idx])
        for idx in by_sha.values()
        if len(idx) > 1
    ]
    reps = [idx[0] for idx in by_sha.values()]
    pairs = near_pairs(
        [infos[i].phash for i in reps], [infos[i].dhash for i in reps], rules.phash_max, rules.dhash_max
    )
    uf: UnionFind[int] = UnionFind(range(len(reps)))
    for a, b in pairs:
        uf.union(a, b)
    near = []
    for comp in uf.groups():
        if len(comp) < 2:
            continue
        idx = sorted(i for r in comp for i in by_sha[infos[reps[r]].sha256])
        near.append(DuplicateGroup("near", [infos[i].path for i in idx], [labels[i] for i in idx]))
    exact.sort(key=lambda g: sorted(g.paths)[0])
    near.sort(key=lambda g: g.paths[0])
    for g in exact:
        order = sorted(range(len(g.paths)), key=lambda k: g.paths[k])
        g.paths, g.labels = [g.paths[k] for k in order], [g.labels[k] for k in order]
    return exact, near


def duplicate_issues(exact: Sequence[DuplicateGroup], near: Sequence[DuplicateGroup]) -> list[Issue]:
    """Issues for duplicate groups: one per extra file, plus label conflicts."""
    out: list[Issue] = []
    for g in exact:
        rule = "label_conflict" if g.cross_class else "exact_duplicate"
        detail = f"same bytes as {g.paths[0]}" + (
            f" (labels {sorted(set(g.labels))})" if g.cross_class else ""
        )
        out.extend(Issue(rule, p, detail) for p in g.paths[1:])
    for g in near:
        rule = "near_label_conflict" if g.cross_class else "near_duplicate"
        detail = f"looks like {g.paths[0]}" + (f" (labels {sorted(set(g.labels))})" if g.cross_class else "")
        out.extend(Issue(rule, p, detail) for p in g.paths[1:])
    return out


def voc_box_issues(
    ann: VocAnnotation, image_size: tuple[int, int] | None, classes: Collection[str], image_path: str
) -> list[Issue]:
    """Per-annotation VOC rules: size mismatch, unknown labels, zero-area and out-of-bounds boxes (pure).

    Args:
        ann: the parsed xml.
        image_size: (width, height) of the decoded image, ``None`` when it could not be read.
        classes: known label names.
        image_path: the image the boxes belong to (named in the issues).
    """
    out = []
    width, height = image_size if image_size else (ann.width, ann.height)
    if image_size and (ann.width, ann.height) != image_size:
        out.append(
            Issue(
                "voc_size_mismatch",
                ann.xml_path,
                f"xml says {ann.width}x{ann.height}, image {image_path} is {width}x{height}",
            )
        )
    for k, obj in enumerate(ann.objects):
        where = f"box #{k} {obj.name} ({obj.xmin:g},{obj.ymin:g},{obj.xmax:g},{obj.ymax:g})"
        if obj.name not in classes:
            out.append(
                Issue(
                    "voc_unknown_label", ann.xml_path, f"{where}: label {obj.name!r} not in {sorted(classes)}"
                )
            )
        if obj.xmax <= obj.xmin or obj.ymax <= obj.ymin:
            out.append(Issue("voc_box_zero_area", ann.xml_path, f"{where}: zero or negative size"))
        if obj.xmin < 0 or obj.ymin < 0 or obj.xmax > width or obj.ymax > height:
            out.append(Issue("voc_box_out_of_bounds", ann.xml_path, f"{where}: outside {width}x{height}"))
    return out


def box_statistics(annotations: Sequence[VocAnnotation]) -> dict[str, Any]:
    """Box counts per class and width/height/area percentiles (overall and per class) (pure)."""
    per: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for ann in annotations:
        for obj in ann.objects:
            per[obj.name].append((obj.width, obj.height))
    everything = [wh for v in per.values() for wh in v]

    def stats(whs: list[tuple[float, float]]) -> dict[str, Any]:
        arr = np.asarray(whs, dtype=np.float64).reshape(-1, 2)
        return {
            "count": len(whs),
            "width": percentiles(arr[:, 0]),
            "height": percentiles(arr[:, 1]),
            "area": percentiles(arr[:, 0] * arr[:, 1]),
        }

    boxes_per_image = [len(a.objects) for a in annotations]
    return {
        "n_boxes": len(everything),
        "counts": {k: len(v) for k, v in sorted(per.items(), key=lambda kv: -len(kv[1]))},
        "boxes_per_image": percentiles(boxes_per_image),
        "all": stats(everything),
        "per_class": {k: stats(v) for k, v in sorted(per.items())},
    }


def _size_stats(infos: Sequence[FileInfo]) -> dict[str, dict[str, float]]:
    ok = [i for i in infos if i.ok]
    return {
        "width": percentiles([i.width for i in ok]),
        "height": percentiles([i.height for i in ok]),
    }


def resolve_dataset(dataset: str | Path, data_dir: str | Path) -> Path:
    """A dataset name under ``data_dir``, or a path.

    Raises:
        ValueError: neither exists (the message lists the datasets under ``data_dir``).
    """
    candidate = Path(data_dir) / str(dataset)
    if candidate.is_dir():
        return candidate
    if Path(dataset).is_dir():
        return Path(dataset)
    known = sorted(p.name for p in Path(data_dir).iterdir() if p.is_dir()) if Path(data_dir).is_dir() else []
    raise ValueError(
        f"dataset {str(dataset)!r} not found under {data_dir} nor as a path; "
        f"datasets there: {', '.join(known) or 'none'}"
    )


def validate_dataset(
    root: str | Path,
    rules: ValidationRules | None = None,
    classes: Collection[str] | None = None,
    workers: int | None = None,
) -> ValidationReport:
    """Validate an image-folder or VOC dataset (VOC when it has an ``annotations/`` folder).

    Args:
        root: the dataset folder.
        rules: thresholds and blocking rules (default ``ValidationRules()``).
        classes: folder datasets: class folder names (default: each file's parent folder);
            VOC: known box labels (default: the face-mask classes).
        workers: scan processes (default 2).

    Returns:
        The report; a corrupt file is an issue in it, never an exception.
    """
    rules = rules or ValidationRules()
    root = Path(root)
    start = time.perf_counter()
    if is_voc(root):
        report = _validate_voc(root, rules, classes or MaskClass.names(), workers)
    else:
        report = _validate_folder(root, rules, classes, workers)
    report.elapsed_s = time.perf_counter() - start
    log.info("validated %s in %.1f s: %d issues", root, report.elapsed_s, len(report.issues))
    return report


def _validate_folder(
    root: Path, rules: ValidationRules, classes: Collection[str] | None, workers: int | None
) -> ValidationReport:
    files = list_files(root)
    labels = [folder_label(p, root, classes) for p in files]
    issues = [
        Issue("no_class", str(p), "not inside a class folder")
        for p, lab in zip(files, labels, strict=True)
        if lab is None
    ]
    kept = [(p, lab) for p, lab in zip(files, labels, strict=True) if lab is not None]
    infos = scan_files([p for p, _ in kept], workers=workers, description=f"scan {root.name}")
    kept_labels = [lab for _, lab in kept]
    for info in infos:
        issues.extend(image_issues(info, rules))
    exact, near = duplicate_groups(infos, kept_labels, rules)
    issues.extend(duplicate_issues(exact, near))
    return ValidationReport(
        dataset=root.name,
        root=str(root),
        kind="folder",
        n_files=len(files),
        n_ok=sum(i.ok for i in infos),
        counts=dict(sorted(Counter(kept_labels).items())),
        formats=dict(Counter(i.format or "unreadable" for i in infos).most_common()),
        modes=dict(Counter(i.mode or "unreadable" for i in infos).most_common()),
        image_size=_size_stats(infos),
        issues=issues,
        exact_groups=exact,
        near_groups=near,
        blocking_rules=sorted(rules.blocking),
    )


def _validate_voc(
    root: Path, rules: ValidationRules, classes: Collection[str], workers: int | None
) -> ValidationReport:
    items = voc_items(root)
    issues: list[Issue] = []
    with_image = [it for it in items if it.image is not None]
    infos = scan_files(
        [it.image for it in with_image if it.image], workers=workers, description=f"scan {root.name}"
    )
    info_by_stem = {it.stem: info for it, info in zip(with_image, infos, strict=True)}
    annotations = []
    for it in items:
        if it.image is None:
            issues.append(Issue("voc_missing_image", str(it.xml), f"no image with stem {it.stem!r}"))
        if it.xml is None:
            issues.append(Issue("voc_missing_xml", str(it.image), f"no xml with stem {it.stem!r}"))
            continue
        try:
            ann = parse_voc(it.xml)
        except VocParseError as exc:
            issues.append(Issue("voc_xml_unreadable", str(it.xml), str(exc)))
            continue
        annotations.append(ann)
        info = info_by_stem.get(it.stem)
        size = (info.width, info.height) if info is not None and info.ok else None
        issues.extend(voc_box_issues(ann, size, classes, str(it.image or it.xml)))
    for info in infos:
        issues.extend(image_issues(info, rules))
    exact, near = duplicate_groups(infos, ["image"] * len(infos), rules)
    issues.extend(duplicate_issues(exact, near))
    box_stats = box_statistics(annotations)
    return ValidationReport(
        dataset=root.name,
        root=str(root),
        kind="voc",
        n_files=len(infos) + sum(it.xml is not None for it in items),
        n_ok=sum(i.ok for i in infos),
        counts={
            "images": len(with_image),
            "xml": sum(it.xml is not None for it in items),
            **box_stats["counts"],
        },
        formats=dict(Counter(i.format or "unreadable" for i in infos).most_common()),
        modes=dict(Counter(i.mode or "unreadable" for i in infos).most_common()),
        image_size=_size_stats(infos),
        issues=issues,
        exact_groups=exact,
        near_groups=near,
        blocking_rules=sorted(rules.blocking),
        box_stats=box_stats,
    )
