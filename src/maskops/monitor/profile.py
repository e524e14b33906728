"""Building a model's reference profile from its task's val and test images.

The images go through what the service runs on an upload: the bytes are decoded as the API decodes
them (``decode_image``), a detection task runs the served face pipeline (the default detector, the
classifier with its card's thresholds, uncertain faces answered ``uncertain``), a classification task
classifies the whole image (``/v1/classify``). The features kept are those the prediction store logs
under the names ``maskops.monitor.window`` reads back:

- per image: ``brightness``, ``contrast``, ``sharpness``, ``saturation`` (``image_quality``) and,
  for a detection task, ``face_count``;
- per face (per image for classification): ``confidence``, ``p_<class>``, ``face_size`` and
  ``face_score`` (detection only), the class mix ``label`` and the compact embedding when the
  classifier gives one.

Each value remembers its image, so that ``build_reference`` can calibrate the drift thresholds of
the features the store logs with bootstrap windows drawn photo by photo (faces of one photo are not
independent; ``maskops.monitor.reference`` describes the method). The probability features
``p_<class>`` are not logged by the store and keep the default thresholds.

The measured accuracy is, for a detection task, the accuracy on the detected faces matched one to
one to a true box (IoU >= ``MATCH_IOU``) and answered with a class: the faces a reviewer's feedback
would score in production (an ``uncertain`` answer is not scored, as in ``measured_accuracy``). For a
classification task it is the accuracy of the whole-image prediction. ``info`` says which, with the
counts behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from maskops.config import Settings, TaskConfig
from maskops.detect.pipeline import FaceMaskPipeline, FaceResult, PipelineConfig, detector_factory
from maskops.inference.classifier import OnnxClassifier
from maskops.inference.images import decode_image
from maskops.monitor.features import image_quality
from maskops.monitor.reference import ReferenceProfile, build_reference, probability_features
from maskops.monitor.window import CLASS_MIX, FACE_FEATURES, IMAGE_FEATURES
from maskops.types import Detections

logger = logging.getLogger(__name__)

MATCH_IOU = 0.5
REFERENCE_SPLITS = ("val", "test")
UNCERTAIN_LABEL = "uncertain"


def reference_path(model_path: Path) -> Path:
    """Where a model's profile lives: ``<model>.reference.json`` beside ``<model>.onnx``."""
    return Path(model_path).with_suffix(".reference.json")


@dataclass(frozen=True)
class ReferenceImage:
    """One image of the reference set.

    Attributes:
        path: the image file.
        source: the task's data source it comes from.
        split: ``val`` or ``test``.
        faces: the true face boxes with their class ids (detection tasks).
        label: the true class id of the whole image (classification tasks).
    """

    path: Path
    source: str
    split: str
    faces: Detections | None = None
    label: int | None = None


def reference_images(
    task: TaskConfig,
    settings: Settings | None = None,
    *,
    splits: Sequence[str] = REFERENCE_SPLITS,
    manifest: Path | None = None,
    limit: int | None = None,
) -> list[ReferenceImage]:
    """The task's reference images.

    A detection task reads the raw images of each VOC source with a splits file (as
    ``maskops evaluate --detection`` does), with their true boxes; a classification task reads the
    rows of ``splits`` from its prepared manifest (the image is the crop).

    Args:
        task: the task config.
        settings: where the data, the prepared manifest and the models are.
        splits: the splits to read.
        manifest: the manifest (classification; default: the task's prepared one).
        limit: at most this many images per source and split (quick runs).

    Raises:
        ValueError: no VOC source with a splits file (detection), a missing or empty manifest, or a
            split that cannot be read (the message names the file).
    """
    settings = settings or Settings()
    out: list[ReferenceImage] = []
    if task.kind == "detection":
        from maskops.config import resolve_source_path
        from maskops.evaluate.detection_run import load_voc_split, select_voc_sources

        for src in select_voc_sources(task, "all"):
            root = resolve_source_path(src, settings)
            for split in splits:
                for item in load_voc_split(
                    root,
                    split,
                    task.classes,
                    splits_file=src.splits_file or "",
                    label_map=src.label_map,
                    limit=limit,
                ):
                    out.append(ReferenceImage(item.image_path, src.name, split, faces=item.gt))
        return out
    from maskops.data.manifest import read_manifest, row_source
    from maskops.train.data import default_manifest_path

    path = manifest or default_manifest_path(settings.prepared_dir(task.name))
    if not Path(path).is_file():
        raise ValueError(f"manifest not found: {path} (run `maskops data prepare --task {task.name}`)")
    index = {c: i for i, c in enumerate(task.classes)}
    counts: dict[tuple[str, str], int] = {}
    for row in read_manifest(path):
        if row.split not in splits:
            continue
        if row.label not in index:
            raise ValueError(
                f"{path}: label {row.label!r} is not a class of task {task.name!r} {task.classes}"
            )
        key = (row_source(row), row.split)
        if limit is not None and counts.get(key, 0) >= limit:
            continue
        counts[key] = counts.get(key, 0) + 1
        out.append(ReferenceImage(Path(row.path), key[0], row.split, label=index[row.label]))
    if not out:
        raise ValueError(f"{path}: no rows in the {', '.join(splits)} split(s)")
    return out


def match_faces(found: Detections, truth: Detections, iou: float = MATCH_IOU) -> list[tuple[int, int]]:
    """One-to-one matches ``(found index, true index)``, highest IoU first, each at least ``iou``."""
    from maskops.boxes import box_iou

    if len(found) == 0 or len(truth) == 0:
        return []
    overlap = box_iou(found.xyxy, truth.xyxy)
    pairs = np.argwhere(overlap >= iou)
    order = np.argsort(-overlap[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_f: set[int] = set()
    used_t: set[int] = set()
    out = []
    for f, t in pairs[order].tolist():
        if f not in used_f and t not in used_t:
            used_f.add(f)
            used_t.add(t)
            out.append((f, t))
    return out


@dataclass
class ProfileCollector:
    """Accumulates the logged features of reference images, then summarises them (``profile``)."""

    class_names: list[str]
    per_image: dict[str, list[float]] = field(default_factory=dict)
    per_face: dict[str, list[float]] = field(default_factory=dict)
    image_of: dict[str, list[int]] = field(default_factory=dict)
    probabilities: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    label_image: list[int] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    embedding_image: list[int] = field(default_factory=list)
    true_faces: int = 0
    matched: int = 0
    scored: int = 0
    correct: int = 0
    correct_argmax: int = 0
    images: int = 0

    def _add(self, table: dict[str, list[float]], name: str, value: float) -> None:
        # the value belongs to the image added last
        table.setdefault(name, []).append(float(value))
        self.image_of.setdefault(name, []).append(self.images - 1)

    def _add_label(self, label: str) -> None:
        self.labels.append(label)
        self.label_image.append(self.images - 1)

    def add_image(self, image: np.ndarray) -> None:
        self.images += 1
        for name, value in image_quality(image).as_dict().items():
            self._add(self.per_image, name, value)

    def add_faces(self, result: FaceResult, truth: Detections | None) -> None:
        """One detection-task image's served result (after ``add_image``) and its true boxes."""
        det = result.detections
        self._add(self.per_image, "face_count", len(det))
        sides = np.minimum(det.xyxy[:, 2] - det.xyxy[:, 0], det.xyxy[:, 3] - det.xyxy[:, 1])
        for i in range(len(det)):
            self._add(self.per_face, "face_size", sides[i])
            if det.face_score is not None:
                self._add(self.per_face, "face_score", det.face_score[i])
            cid = int(det.class_id[i])
            self._add_label(self.class_names[cid] if 0 <= cid < len(self.class_names) else UNCERTAIN_LABEL)
        self.probabilities.append(np.asarray(result.probs, np.float64).reshape(-1, len(self.class_names)))
        if result.embeddings is not None:
            self.embeddings.append(np.asarray(result.embeddings, np.float64))
            self.embedding_image += [self.images - 1] * len(self.embeddings[-1])
        if truth is None:
            return
        self.true_faces += len(truth)
        for f, t in match_faces(det, truth):
            self.matched += 1
            true_class = int(truth.class_id[t])
            self.correct_argmax += int(int(np.argmax(result.probs[f])) == true_class)
            if int(det.class_id[f]) >= 0:
                self.scored += 1
                self.correct += int(int(det.class_id[f]) == true_class)

    def add_whole(self, proba: np.ndarray, embedding: np.ndarray | None, label: int | None) -> None:
        """One classification-task image's prediction (after ``add_image``)."""
        p = np.asarray(proba, np.float64).reshape(1, -1)
        cid = int(p.argmax())
        self.probabilities.append(p)
        self._add_label(self.class_names[cid])
        if embedding is not None:
            self.embeddings.append(np.asarray(embedding, np.float64).reshape(1, -1))
            self.embedding_image.append(self.images - 1)
        if label is not None:
            self.matched += 1
            self.scored += 1
            self.correct += int(cid == label)
            self.correct_argmax += int(cid == label)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None

    def profile(self, info: dict[str, Any] | None = None, **calibration: Any) -> ReferenceProfile:
        """The profile of the images added, with thresholds calibrated on the store's features
        (``calibration``: ``build_reference``'s ``calibration_faces``, ``calibration_windows``,
        ``family_alpha``, ``seed``)."""
        probs = (
            np.concatenate(self.probabilities) if self.probabilities else np.zeros((0, len(self.class_names)))
        )
        numeric: dict[str, Any] = {**self.per_image, **self.per_face}
        numeric.update(probability_features(probs, self.class_names))
        embeddings = np.concatenate(self.embeddings) if self.embeddings else None
        logged = {*IMAGE_FEATURES, *FACE_FEATURES, CLASS_MIX}
        image_index: dict[str, list[int]] = {k: v for k, v in self.image_of.items() if k in logged}
        image_index["confidence"] = self.label_image  # one probability row per face, as the labels
        image_index[CLASS_MIX] = self.label_image
        if embeddings is not None:
            image_index["embedding"] = self.embedding_image
        faces_per_image = np.bincount(np.asarray(self.label_image, np.int64), minlength=self.images)
        return build_reference(
            numeric=numeric,
            categorical={CLASS_MIX: self.labels},
            embeddings=embeddings,
            accuracy=self.accuracy,
            info=info,
            image_index=image_index if self.labels else None,
            faces_per_image=faces_per_image,
            **calibration,
        )


def build_model_reference(
    task: TaskConfig,
    model_path: Path,
    *,
    settings: Settings | None = None,
    detector: str | None = None,
    splits: Sequence[str] = REFERENCE_SPLITS,
    manifest: Path | None = None,
    limit: int | None = None,
    num_threads: int | None = None,
    progress: Callable[[Iterable[ReferenceImage], int], Iterable[ReferenceImage]] | None = None,
) -> ReferenceProfile:
    """The reference profile of ``model_path`` on the task's reference images (see the module doc).

    Args:
        task: the task config.
        model_path: the classifier ``.onnx`` (card beside it).
        settings: data and model locations (default: the environment's).
        detector: the face detector (detection tasks; default: the served default).
        splits / manifest / limit: which images (``reference_images``).
        num_threads: ONNX Runtime threads of the classifier (``None``: one per core).
        progress: wraps the image iterable (e.g. a progress bar), given it and its length.

    Raises:
        ValueError: the model's classes are not the task's, or the images cannot be listed.
        ModelLoadError: the classifier cannot be loaded.
        DetectorError: the detector cannot be created.
    """
    from maskops.data.images import sha256_file
    from maskops.detect.base import DEFAULT_DETECTOR
    from maskops.inference.images import ImageRejected

    settings = settings or Settings()
    classifier = OnnxClassifier(model_path, num_threads=num_threads)
    if list(classifier.class_names) != list(task.classes):
        raise ValueError(
            f"{model_path}: the model's classes {classifier.class_names} are not task "
            f"{task.name!r}'s {task.classes}"
        )
    images = reference_images(task, settings, splits=splits, manifest=manifest, limit=limit)
    pipeline = None
    detector_name = None
    if task.kind == "detection":
        detector_name = detector or DEFAULT_DETECTOR
        det = detector_factory(detector_name, yunet_path=settings.yunet_path)()
        pipeline = FaceMaskPipeline(classifier, det, PipelineConfig())  # as the service builds it
    collector = ProfileCollector(list(task.classes))
    skipped = 0
    iterable: Iterable[ReferenceImage] = progress(images, len(images)) if progress else images
    for item in iterable:
        try:
            image = decode_image(item.path.read_bytes(), str(item.path)).image
        except (OSError, ImageRejected) as exc:
            logger.warning("reference image %s skipped: %s", item.path, exc)
            skipped += 1
            continue
        collector.add_image(image)
        if pipeline is not None:
            collector.add_faces(pipeline(image), item.faces)
        else:
            proba, embedding = classifier.predict_with_embedding([image])
            collector.add_whole(proba[0], None if embedding is None else embedding[0], item.label)
    if collector.images == 0:
        raise ValueError(f"none of the {len(images)} reference images of task {task.name!r} could be read")
    sources = sorted({(i.source, i.split) for i in images})
    info: dict[str, Any] = {
        "task": task.name,
        "kind": task.kind,
        "model": Path(model_path).name,
        "model_sha256": sha256_file(model_path)[:12],
        "detector": detector_name,
        "splits": list(splits),
        "sources": sorted({s for s, _ in sources}),
        "images": collector.images,
        "skipped_images": skipped,
        "faces": len(collector.labels),
        "embedding_dims": classifier.embedding_dims,
        "accuracy_on": (
            f"detected faces matched one to one to a true box (IoU >= {MATCH_IOU}) and answered with "
            "a class (uncertain answers are not scored, as with feedback)"
            if task.kind == "detection"
            else "whole images (argmax class)"
        ),
        "true_faces": collector.true_faces if task.kind == "detection" else None,
        "matched_faces": collector.matched,
        "scored_faces": collector.scored,
        "accuracy_argmax_matched": (
            collector.correct_argmax / collector.matched if collector.matched else None
        ),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if limit is not None:
        info["limit_per_source_split"] = limit
    return collector.profile(info)


def write_model_reference(
    task: TaskConfig, model_path: Path, out: Path | None = None, **options: Any
) -> tuple[Path, ReferenceProfile]:
    """``build_model_reference`` and save it (default ``<model>.reference.json``); returns both."""
    profile = build_model_reference(task, model_path, **options)
    path = Path(out) if out is not None else reference_path(model_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile.save(path)
    logger.info(
        "reference profile of %s: %d images, %d faces, accuracy %s -> %s (%.1f KB)",
        model_path,
        profile.info.get("images", 0),
        profile.info.get("faces", 0),
        "n/a" if profile.accuracy is None else f"{profile.accuracy:.4f}",
        path,
        path.stat().st_size / 1024,
    )
    return path, profile
