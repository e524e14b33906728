"""``maskops detect --engine ray``: the batch detector on a Ray cluster, with Ray Data.

The driver lists the inputs exactly as the local engine does (``collect_images``) and hands Ray Data
one row per image (its index, path and annotated-copy name). ``map_batches`` runs them through a
fixed pool of actors (``--workers`` of them, one CPU each); every actor builds the face-mask
pipeline once and keeps its ONNX sessions (classifier and YuNet, one thread each) for its life. An
actor decodes, detects and classifies with the same ``BatchDetector.process`` as the local engine,
so a file's record (or its error) is the same object either way; records travel back pickled, and
the driver yields them in input order (a reorder buffer on the index), so the JSONL written from
them is byte-identical to the local engine's apart from the measured ``timings_ms``.

Images are read by the actors, not shipped from the driver: on a cluster the inputs, the model and
the YuNet weights must sit on a file system every node sees, and maskops must be installed there.
``MASKOPS_*`` variables of the driver are passed to the workers.

Without an address a private Ray instance is started on 127.0.0.1 (no dashboard) and shut down at
the end; with ``address`` the driver joins that cluster and leaves it running.
"""

from __future__ import annotations

import heapq
import logging
import os
import pickle
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from maskops.detect.base import DEFAULT_DETECTOR
from maskops.detect.batch import ImageJob, ImageRecord

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'maskops[ray]'"
# object store of a private local instance: rows are paths in and small pickled records out
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024
# input blocks of one run at most (each is one scheduling unit of Ray Data)
MAX_BLOCKS = 2000


class RayEngineError(RuntimeError):
    """Ray is missing, cannot start or connect, or the workers cannot build the pipeline."""


# read by Ray when it is first imported: a node it starts takes the loopback address as its own
# (Ray otherwise swaps 127.0.0.1 for the host's routable address)
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray(loopback: bool = False) -> ModuleType:
    """``ray`` with Ray Data loaded.

    Args:
        loopback: a private instance will be started: make its node 127.0.0.1 (effective when
            Ray is first imported here).

    Raises:
        RayEngineError: Ray (or Ray Data) is not installed, with the install command.
    """
    if loopback and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
        import ray.data  # Ray Data needs its own extra
    except ImportError as exc:
        raise RayEngineError(
            f"the Ray engine needs Ray Data, which is not installed ({exc}); install it with "
            f"`{INSTALL_HINT}` or use --engine local"
        ) from exc
    return ray


@dataclass(frozen=True)
class PipelineSpec:
    """What an actor needs to build the same pipeline as ``maskops detect``'s ``load_pipeline``.

    Attributes:
        model: the classifier ``.onnx`` (a path every worker can read).
        detector: registered detector name.
        face_threshold: minimum face score (``None``: the detector's own).
        uncertain: label hard faces ``uncertain``.
        min_confidence: class confidence below which a face is uncertain (``None``: the card's).
        num_threads: ONNX Runtime threads of the classifier and of YuNet, per actor.
    """

    model: Path
    detector: str = DEFAULT_DETECTOR
    face_threshold: float | None = None
    uncertain: bool = True
    min_confidence: float | None = None
    num_threads: int = 1

    def build(self) -> Any:
        """The ``FaceMaskPipeline`` (raises ``ModelLoadError`` / ``DetectorError`` as the local loader)."""
        from maskops.detect.pipeline import FaceMaskPipeline, PipelineConfig, detector_factory
        from maskops.inference.classifier import OnnxClassifier

        make_detector = detector_factory(
            self.detector, face_threshold=self.face_threshold, num_threads=self.num_threads
        )
        classifier = OnnxClassifier(self.model, num_threads=self.num_threads)
        thresholds = {} if self.min_confidence is None else {"min_confidence": self.min_confidence}
        config = PipelineConfig(uncertain=self.uncertain, thresholds=thresholds)
        return FaceMaskPipeline(classifier, make_detector(), config)


class DetectActor:
    """A Ray Data actor: one pipeline per actor process, built once, used for every batch."""

    def __init__(self, spec: PipelineSpec, out_dir: str | None, nice: int = 0) -> None:
        import cv2

        from maskops.detect.batch import BatchDetector

        if nice > 0 and hasattr(os, "setpriority"):  # batch work below a host's interactive load
            current = os.getpriority(os.PRIO_PROCESS, 0)
            os.setpriority(os.PRIO_PROCESS, 0, max(current, min(19, nice)))

        # the actors are the parallelism: OpenCV's own thread pool would only contend with them
        cv2.setNumThreads(1)
        self.runner = BatchDetector(spec.build(), workers=1, out_dir=Path(out_dir) if out_dir else None)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = [
            pickle.dumps(self.runner.process(ImageJob(Path(str(path)), Path(str(output)))))
            for path, output in zip(batch["path"], batch["output"], strict=True)
        ]
        out = np.empty(len(records), dtype=object)
        out[:] = records
        return {"index": np.asarray(batch["index"], dtype=np.int64), "record": out}


def _worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("MASKOPS_")}


def in_input_order(pairs: Iterator[tuple[int, ImageRecord]], count: int) -> Iterator[ImageRecord]:
    """Yield the records of ``(index, record)`` pairs arriving in any order as indices 0..count-1.

    Only records that arrive ahead of a missing one are held (a heap), so memory follows how far
    the workers run out of order, not the input size.

    Raises:
        RayEngineError: an index is missing or repeated when the pairs run out.
    """
    heap: list[tuple[int, int, ImageRecord]] = []
    nxt = 0
    for seq, (index, record) in enumerate(pairs):
        heapq.heappush(heap, (index, seq, record))
        while heap and heap[0][0] == nxt:
            yield heapq.heappop(heap)[2]
            nxt += 1
    if nxt != count or heap:
        raise RayEngineError(f"the workers returned {nxt + len(heap)} records for {count} inputs")


class RayDetector:
    """Runs the face-mask pipeline over many files on a pool of Ray actors; a context manager.

    Args:
        spec: how each actor builds its pipeline.
        workers: actors in the pool (one CPU each).
        address: a running cluster (``ray://host:port`` or ``host:port``); ``None`` starts a private
            instance on 127.0.0.1 with ``workers`` CPUs, shut down on exit.
        out_dir: where the actors write annotated copies (``None``: none).
        batch_size: images per actor call (small: keeps every actor busy to the end of the list).
        worker_nice: raise each actor's niceness to this (0: leave it), for batch runs on shared nodes.
    """

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        workers: int = 1,
        address: str | None = None,
        out_dir: Path | None = None,
        batch_size: int = 4,
        worker_nice: int = 0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.spec = spec
        self.workers = workers
        self.address = address
        self.out_dir = out_dir
        self.batch_size = batch_size
        self.worker_nice = worker_nice
        self._ray = import_ray(loopback=not address)
        self._started = False

    def __enter__(self) -> RayDetector:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Join ``address`` or start the private loopback instance (once)."""
        ray = self._ray
        if ray.is_initialized():
            return
        runtime_env = {"env_vars": _worker_env()}
        try:
            if self.address:
                ray.init(
                    address=self.address,
                    runtime_env=runtime_env,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
            else:
                ray.init(
                    address="local",
                    num_cpus=self.workers,
                    object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    runtime_env=runtime_env,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
                self._started = True
        except Exception as exc:  # Ray raises a bare Exception when its node start-up times out
            ray.shutdown()  # the processes a failed start left behind
            where = self.address or "a local instance on 127.0.0.1"
            raise RayEngineError(f"cannot start or reach Ray at {where}: {exc}") from exc
        ctx = self._ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logger.info("ray: %s", ray.cluster_resources())

    def close(self) -> None:
        """Shut down the instance this object started (a joined cluster is left running)."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False

    def run(self, jobs: Sequence[ImageJob]) -> Iterator[ImageRecord]:
        """Process ``jobs`` on the actor pool; records are yielded in input order.

        Raises:
            RayEngineError: the actors cannot build the pipeline (missing model on a node ...).
        """
        if not jobs:
            return
        self.start()
        ray = self._ray
        rows = [{"index": i, "path": str(j.path), "output": str(j.output)} for i, j in enumerate(jobs)]
        # one block per actor call: records stream back as each call ends, and the pool shares the
        # list finely (a few large blocks left one actor finishing alone, and nothing came back early)
        blocks = max(1, min(-(-len(rows) // self.batch_size), MAX_BLOCKS))
        ds = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            DetectActor,
            fn_constructor_kwargs={
                "spec": self.spec,
                "out_dir": str(self.out_dir) if self.out_dir is not None else None,
                "nice": self.worker_nice,
            },
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            batch_size=self.batch_size,
            batch_format="numpy",
            num_cpus=1,
        )

        def pairs() -> Iterator[tuple[int, ImageRecord]]:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for index, blob in zip(batch["index"], batch["record"], strict=True):
                    yield int(index), pickle.loads(blob)  # our own workers' records

        try:
            yield from in_input_order(pairs(), len(rows))
        except RayEngineError:
            raise
        except Exception as exc:  # Ray wraps actor failures in its own exception types
            if type(exc).__module__.startswith("ray"):
                raise RayEngineError(f"the Ray workers failed: {exc}") from exc
            raise
