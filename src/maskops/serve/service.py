"""The service object behind the routes: loaded models, the inference pool, the work per image.

Models live in an immutable ``ModelSet``; a reload builds a whole new set and swaps one reference,
so a request keeps the set it started with and none is dropped. Inference (decode included) runs
in a thread pool sized to the cores, off the event loop. ``cv2.FaceDetectorYN`` keeps per-call
state, so each worker thread builds its own detector; the ONNX classifier is shared.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import ctypes
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from maskops.data.images import sha256_file
from maskops.detect.annotate import BoxAnnotator
from maskops.detect.base import FaceDetector
from maskops.detect.pipeline import (
    FaceMaskPipeline,
    FaceResult,
    PipelineConfig,
    ThreadDetectors,
    detector_factory,
)
from maskops.inference.classifier import OnnxClassifier
from maskops.inference.images import DecodedImage, decode_image
from maskops.monitor.features import image_quality
from maskops.serve.metrics import ServiceMetrics
from maskops.serve.settings import ServeSettings
from maskops.types import ModelSpec

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ServiceUnavailable(RuntimeError):
    """The work cannot be done now: model not loaded, detector missing, queue full, timeout."""

    def __init__(self, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


class ReloadRefused(RuntimeError):
    """A reload whose new set would lose a model that serves now (missing, corrupt, wrong shape):
    the current set is kept."""

    code = "reload_failed"

    def __init__(self, lost: dict[str, str]) -> None:
        reasons = "; ".join(f"{name}: {why}" for name, why in sorted(lost.items()))
        super().__init__(f"reload refused, the current models keep serving: {reasons}")
        self.message = str(self)
        self.lost = lost


def lost_models(old: ModelSet | None, new: ModelSet) -> dict[str, str]:
    """The models that serve in ``old`` but could not be loaded in ``new``, with why (name -> error).

    A model whose file is gone from the source is not lost but removed, and a model that did not load
    before either is no loss; only a working model replaced by a broken file is.
    """
    if old is None:
        return {}
    return {name: new.errors[name] for name in old.models if name in new.errors}


class UnknownModel(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown model {name!r}; loaded: {', '.join(known) or 'none'}")
        self.name = name
        self.known = known


@dataclass(frozen=True)
class LoadedModel:
    """One classifier file with its card, as loaded."""

    name: str
    classifier: OnnxClassifier
    sha256: str
    source: str  # "dir" or "registry"
    loaded_at: str

    @property
    def spec(self) -> ModelSpec:
        return self.classifier.spec

    @property
    def version(self) -> str:
        """Content version: the first 12 hex digits of the file's sha256."""
        return self.sha256[:12]


@dataclass(frozen=True)
class ModelSet:
    """Everything loaded at one moment; replaced whole on reload."""

    generation: int
    models: dict[str, LoadedModel]
    errors: dict[str, str]
    face_model: str
    detector_name: str
    detector_error: str | None
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def face(self) -> LoadedModel | None:
        return self.models.get(self.face_model)

    def face_problem(self) -> str | None:
        """Why face detection cannot run, or ``None`` when it can."""
        if self.face is None:
            reason = self.errors.get(self.face_model, "not loaded")
            return f"face-mask model {self.face_model!r} is not available: {reason}"
        if self.detector_error:
            return f"face detector {self.detector_name!r} is not available: {self.detector_error}"
        return None


def _clean(message: str, *paths: Path) -> str:
    """A load error without server paths (responses never show them; the log has the full text)."""
    for p in sorted({str(x) for x in paths}, key=len, reverse=True):
        message = message.replace(p + "/", "").replace(p, "<models>")
    return message


def model_paths_from_dir(models_dir: Path) -> dict[str, Path]:
    """``<name>.onnx`` files of the models directory by name."""
    if not models_dir.is_dir():
        return {}
    return {p.stem: p for p in sorted(models_dir.glob("*.onnx"))}


def model_paths_from_registry(names: list[str]) -> dict[str, Path]:
    """The ``champion`` of each named task in the MLflow registry (needs the train extra)."""
    try:
        from maskops import registry
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ServiceUnavailable(
            "registry_unavailable", "the model registry needs the train extra (mlflow)"
        ) from exc
    out = {}
    for name in names:
        try:
            out[name] = registry.download(name, registry.CHAMPION)
        except Exception as exc:  # registry errors, missing mlflow store...
            logger.warning("registry: no champion for %s: %s", name, exc)
    return out


class ModelLoader:
    """Builds ``ModelSet``s from the models directory or the registry."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self._generation = 0
        self._lock = threading.Lock()
        # tests and deployments may swap where paths come from
        self.resolvers: dict[str, Callable[[ServeSettings], dict[str, Path]]] = {
            "dir": lambda s: model_paths_from_dir(s.models_dir),
            "registry": lambda s: model_paths_from_registry(
                sorted({s.face_model, *model_paths_from_dir(s.models_dir)})
            ),
        }

    def load(self, source: str | None = None) -> ModelSet:
        """Load every model of ``source`` (default: the configured one); failures are recorded, not raised."""
        s = self.settings
        source = source or s.model_source
        if source not in self.resolvers:
            raise ValueError(f"unknown model source {source!r}; valid: {', '.join(sorted(self.resolvers))}")
        paths = self.resolvers[source](s)
        models: dict[str, LoadedModel] = {}
        errors: dict[str, str] = {}
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for name, path in paths.items():
            try:
                clf = OnnxClassifier(path, num_threads=s.onnx_threads)
                models[name] = LoadedModel(name, clf, sha256_file(path), source, now)
                logger.info("loaded model %s from %s (%s)", name, path, clf.spec.task)
            except Exception as exc:  # ModelLoadError, ValueError from a bad card, OSError
                logger.error("model %s at %s could not be loaded: %s", name, path, exc)
                errors[name] = _clean(str(exc), path.parent, path)
        if s.face_model not in models and s.face_model not in errors:
            where = "the models directory" if source == "dir" else "the registry (no champion)"
            errors[s.face_model] = f"{s.face_model}.onnx not found in {where}"
            logger.error("face-mask model %s.onnx not found in %s (%s)", s.face_model, where, s.models_dir)
        detector_error = None
        try:
            make_detector(s)
        except Exception as exc:  # DetectorError, cv2.error
            logger.error("face detector %s cannot be created: %s", s.detector, exc)
            detector_error = "weights missing or unreadable (see the server log)"
        with self._lock:
            self._generation += 1
            generation = self._generation
        return ModelSet(generation, models, errors, s.face_model, s.detector, detector_error)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, macOS)
        return None


def trim_heap() -> bool:
    """Hand the heap's free memory back to the OS (glibc's ``malloc_trim``; ``False`` elsewhere).

    The model sets a reload replaces free their ONNX sessions into holes that glibc keeps: under load
    the server's RSS grew by about 25 MB per reload without this, and came back down with it.
    """
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


async def trim_when_idle(metrics: ServiceMetrics, idle_s: float) -> None:
    """Run ``trim_heap`` once each time the server has served requests and then none for ``idle_s``
    seconds (checked every ``idle_s / 2``), until cancelled.

    Under load glibc's arenas grow and shrink in steps of some 10 MB and keep what they freed; an idle
    server hands it back, so its resident size says what it holds rather than its busiest moment.
    """
    trimmed_after = metrics.last_done
    while True:
        await asyncio.sleep(idle_s / 2)
        quiet = time.monotonic() - metrics.last_done >= idle_s
        if metrics.busy == 0 and quiet and metrics.last_done != trimmed_after:
            trimmed_after = metrics.last_done
            await asyncio.to_thread(trim_heap)


def detectors_of(settings: ServeSettings) -> Callable[[], FaceDetector]:
    """The factory of the configured detector; YuNet reads its weights from ``settings.yunet_path``
    and runs ``onnx_threads`` threads (there is one detector per worker thread)."""
    return detector_factory(
        settings.detector,
        num_threads=settings.onnx_threads,
        yunet_path=settings.yunet_path,
        options=settings.detector_options,
    )


def make_detector(settings: ServeSettings) -> FaceDetector:
    """One configured detector (see ``detectors_of``)."""
    return detectors_of(settings)()


class InferencePool:
    """A thread pool for CPU work with a bounded queue, a timeout and one detector per thread."""

    def __init__(self, settings: ServeSettings, metrics: ServiceMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(settings.workers, thread_name_prefix="maskops-infer")
        self._detectors = ThreadDetectors(detectors_of(settings))
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    def detector(self) -> FaceDetector:
        """This worker thread's own face detector (built on first use)."""
        return self._detectors.get()

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn(*args)`` on a worker; the caller's context (request id) goes along.

        Raises:
            ServiceUnavailable: the queue is full (``overloaded``) or the job ran past the timeout.
        """
        if self._pending >= self.settings.max_queue:
            raise ServiceUnavailable(
                "overloaded", f"server busy: {self._pending} jobs queued; retry shortly", retry_after=1
            )
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        self._pending += 1
        if self.metrics:
            self.metrics.queue.set(self._pending)
        try:
            fut = loop.run_in_executor(self._executor, ctx.run, fn, *args)
            return await asyncio.wait_for(fut, timeout or self.settings.timeout_s)
        except TimeoutError:
            raise ServiceUnavailable(
                "timeout", f"processing took longer than {timeout or self.settings.timeout_s:g} s"
            ) from None
        finally:
            self._pending -= 1
            if self.metrics:
                self.metrics.queue.set(self._pending)

    def warm_up(self, fn: Callable[[], object], timeout: float = 30.0) -> None:
        """Run ``fn`` once on every worker thread (first calls of ONNX Runtime and OpenCV are slow)."""
        workers = self.settings.workers
        barrier = threading.Barrier(workers)

        def job() -> None:
            try:
                barrier.wait(timeout)  # holds each thread until all have one job: one call per thread
            except threading.BrokenBarrierError:
                return
            fn()

        futures = [self._executor.submit(job) for _ in range(workers)]
        for f in futures:
            try:
                f.result(timeout)
            except Exception as exc:  # a warm-up failure shows again, clearly, on the first request
                logger.warning("warm-up failed: %s", exc)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class DetectOptions:
    min_confidence: float | None = None  # class confidence below which a face is uncertain
    uncertain: bool = True
    annotated: bool = False


@dataclass
class DetectOutcome:
    """One image through the face pipeline: the pipeline's ``FaceResult`` and what the API adds."""

    image: DecodedImage
    result: FaceResult
    model: LoadedModel
    timings_ms: dict[str, float]
    annotated_jpeg: str | None = None
    quality: dict[str, float] | None = None  # image quality, measured on the worker when recorded

    @property
    def faces(self) -> list[dict[str, Any]]:
        """The faces as JSON-ready records (``FaceResult.records``)."""
        return self.result.records()

    @property
    def counts(self) -> dict[str, int]:
        """Faces per class, plus ``uncertain`` (``FaceResult.counts``)."""
        return self.result.counts()


@dataclass
class ClassifyOutcome:
    image: DecodedImage
    model: LoadedModel
    class_id: int
    label: str
    confidence: float
    probabilities: dict[str, float]
    timings_ms: dict[str, float]


def _encode_jpeg(image: np.ndarray, quality: int = 85) -> str:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - a BGR uint8 array always encodes
        raise RuntimeError("JPEG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


class MaskService:
    """Loaded models + pool + the per-image work the routes call."""

    def __init__(self, settings: ServeSettings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.loader = ModelLoader(settings)
        self.pool = InferencePool(settings, metrics)
        self._models: ModelSet | None = None
        self._reload_lock = asyncio.Lock()
        # set while the prediction store is on: the record's image quality is measured on the
        # worker thread, beside the inference, not on the event loop that queues the record
        self.measure_quality = False

    # --- models
    @property
    def models(self) -> ModelSet:
        if self._models is None:
            raise ServiceUnavailable("starting", "the service is starting; models are not loaded yet")
        return self._models

    @property
    def generation(self) -> int | None:
        return self._models.generation if self._models is not None else None

    def _publish(self, models: ModelSet) -> None:
        self._models = models  # one reference swap: requests in flight keep the set they hold
        self.metrics.set_models((m.name, m.spec.task, m.version) for m in models.models.values())

    def load(self, source: str | None = None) -> ModelSet:
        models = self.loader.load(source)
        self._publish(models)
        return models

    def warm_up(self) -> None:
        """One blank 640x480 image through each worker's pipeline (a no-op without a face model)."""
        models = self._models
        if models is None or models.face_problem():
            return
        blank = cv2.imencode(".jpg", np.full((480, 640, 3), 127, np.uint8))[1].tobytes()

        def one() -> None:
            self.detect_sync(models, blank, "warm-up", DetectOptions(), count=False)

        self.pool.warm_up(one)

    async def reload(self, source: str | None = None) -> tuple[ModelSet, ModelSet | None]:
        """Load a new set off the event loop and swap it in; returns (new, old).

        All or nothing: when a model that serves now cannot be loaded from the new files (missing,
        corrupt, wrong shape for its card), or the face-mask model or the face detector would be
        gone, the current set is kept and ``ReloadRefused`` names each model and why.
        """
        async with self._reload_lock:
            old = self._models
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, trim_heap)  # what the previous reload's old set left
            new = await loop.run_in_executor(None, self.loader.load, source)
            lost = lost_models(old, new)
            if old is not None and old.face is not None and new.face is None and not lost:
                lost = {new.face_model: new.errors.get(new.face_model, "face model missing")}
            if old is not None and old.detector_error is None and new.detector_error is not None:
                # the workers' detectors were built before: swapping in would stop face detection
                lost = {**lost, f"detector {new.detector_name}": new.detector_error}
            if lost:
                self.metrics.reloads.labels("failed").inc()
                logger.error("reload refused, generation %d kept: %s", old.generation if old else 0, lost)
                raise ReloadRefused(lost)
            self._publish(new)
            self.metrics.reloads.labels("ok").inc()
            logger.info(
                "models reloaded: generation %d -> %d (%s)",
                old.generation if old else 0,
                new.generation,
                ", ".join(f"{m.name}@{m.version}" for m in new.models.values()) or "none",
            )
            return new, old

    def classifier(self, name: str) -> LoadedModel:
        models = self.models
        if name in models.models:
            return models.models[name]
        if name in models.errors:
            raise ServiceUnavailable(
                "model_unavailable", f"model {name!r} is not available: {models.errors[name]}"
            )
        raise UnknownModel(name, sorted(models.models))

    def face_models(self) -> ModelSet:
        models = self.models
        problem = models.face_problem()
        if problem:
            raise ServiceUnavailable("model_unavailable", problem)
        return models

    # --- work (runs on a worker thread)
    def _decode(self, data: bytes, name: str) -> tuple[DecodedImage, float]:
        t0 = time.perf_counter()
        s = self.settings
        img = decode_image(data, name, max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels)
        return img, (time.perf_counter() - t0) * 1000.0

    def detect_sync(
        self, models: ModelSet, data: bytes, name: str, opts: DetectOptions, *, count: bool = True
    ) -> DetectOutcome:
        img, decode_ms = self._decode(data, name)
        face = models.face
        assert face is not None  # checked by face_models() before submitting
        thresholds = {} if opts.min_confidence is None else {"min_confidence": float(opts.min_confidence)}
        pipe = FaceMaskPipeline(
            face.classifier,
            self.pool.detector(),
            PipelineConfig(uncertain=opts.uncertain, thresholds=thresholds),
        )
        result = pipe(img.image)
        names = pipe.class_names
        timings = {"decode": decode_ms, **result.timings_ms}
        annotated = None
        if opts.annotated:
            t0 = time.perf_counter()
            annotated = _encode_jpeg(
                BoxAnnotator(names).annotate(img.image, result.detections, result.reasons)
            )
            timings["annotate"] = (time.perf_counter() - t0) * 1000.0
        timings = {k: round(v, 2) for k, v in timings.items()}
        if count:
            self.metrics.observe_image("ok", Counter(result.counts()).elements(), timings)
        quality = image_quality(img.image).as_dict() if self.measure_quality else None
        return DetectOutcome(img, result, face, timings, annotated, quality)

    def classify_sync(self, model: LoadedModel, data: bytes, name: str) -> ClassifyOutcome:
        img, decode_ms = self._decode(data, name)
        t0 = time.perf_counter()
        probs = model.classifier.predict_proba([img.image])[0]
        classify_ms = (time.perf_counter() - t0) * 1000.0
        cid = int(np.argmax(probs))
        names = model.classifier.class_names
        timings = {"decode": round(decode_ms, 2), "classify": round(classify_ms, 2)}
        self.metrics.observe_image("ok", (), timings)
        return ClassifyOutcome(
            img,
            model,
            cid,
            names[cid],
            round(float(probs[cid]), 6),
            {c: round(float(p), 6) for c, p in zip(names, probs, strict=True)},
            timings,
        )

    # --- async entry points for the routes
    async def detect(self, data: bytes, name: str, opts: DetectOptions) -> DetectOutcome:
        models = self.face_models()
        return await self.pool.run(self.detect_sync, models, data, name, opts)

    async def classify(self, data: bytes, name: str, model_name: str) -> ClassifyOutcome:
        model = self.classifier(model_name)
        return await self.pool.run(self.classify_sync, model, data, name)

    def close(self) -> None:
        self.pool.shutdown()
