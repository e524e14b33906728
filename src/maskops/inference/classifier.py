"""``OnnxClassifier``: BGR crops in, calibrated class probabilities out (ONNX Runtime only, no torch).

The model card beside the file (``model.onnx`` -> ``model.json``) gives the preprocessing, the class
names and the calibration temperature; nothing here re-declares them.

A model exported with the ``features`` output whose card records an embedding projection
(``extra["embedding"]``, fitted at release) also gives a compact float16 embedding per image
(``predict_with_embedding``); older files give ``None`` there and work as before.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from maskops.device import onnx_providers
from maskops.inference.preprocess import preprocess
from maskops.inference.projection import CARD_KEY, FEATURES_OUTPUT, Projection
from maskops.numeric import softmax
from maskops.types import ModelSpec

logger = logging.getLogger(__name__)


class ModelLoadError(ValueError):
    """A model file (or its card) is missing, invalid or does not fit its card."""


class OnnxClassifier:
    """An image classifier exported to ONNX, with its ``ModelSpec`` card.

    One instance can serve concurrent ``predict*`` calls from several threads: ONNX Runtime's
    ``InferenceSession.run`` is thread-safe and no state here changes after construction.

    Args:
        model_path: the ``.onnx`` file; its card must be beside it (``ModelSpec.card_path``).
        num_threads: intra-op threads (``None``: ONNX Runtime's default, one per core).
        providers: ONNX Runtime execution providers, in order of preference (``None``: those of
            ``MASKOPS_DEVICE``, see ``maskops.device.onnx_providers``).

    Raises:
        ModelLoadError: the file is missing or not ONNX, the card is missing or invalid, or the
            model's input/output shapes do not fit the card.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        num_threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelLoadError(f"model file not found: {self.path}")
        card = ModelSpec.card_path(self.path)
        try:
            self.spec = ModelSpec.load(card)
        except FileNotFoundError as exc:
            raise ModelLoadError(
                f"{self.path}: model card not found at {card} (every .onnx needs its card beside it)"
            ) from exc
        except (ValueError, TypeError) as exc:
            raise ModelLoadError(f"{self.path}: invalid model card {card}: {exc}") from exc

        options = ort.SessionOptions()
        if num_threads is not None:
            if num_threads < 1:
                raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")
            options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if providers is None:
            providers = onnx_providers()  # a DeviceError (cuda asked, none here) is not a load error
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise ModelLoadError(f"{self.path}: not a loadable ONNX model: {exc}") from exc
        self._check_io()
        self.projection = self._load_projection()
        self.num_threads = num_threads
        logger.debug("loaded %s (%s, input %s)", self.path, self.spec.task, self.spec.input_size)

    def _check_io(self) -> None:
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelLoadError(
                f"{self.path}: expected one input and one output, got {len(inputs)} inputs "
                f"and {len(outputs)} outputs"
            )
        in_shape, out_shape = inputs[0].shape, outputs[0].shape
        h, w = self.spec.input_size
        if len(in_shape) != 4:
            raise ModelLoadError(f"{self.path}: input must be N x 3 x H x W, got shape {in_shape}")
        expected = (3, h, w)
        for axis, (got, want) in enumerate(zip(in_shape[1:], expected, strict=True), start=1):
            if isinstance(got, int) and got != want:
                raise ModelLoadError(
                    f"{self.path}: input axis {axis} is {got} but the card expects {want} "
                    f"(input_size {self.spec.input_size})"
                )
        if len(out_shape) != 2:
            raise ModelLoadError(f"{self.path}: output must be N x C logits, got shape {out_shape}")
        if isinstance(out_shape[1], int) and out_shape[1] != self.spec.num_classes:
            raise ModelLoadError(
                f"{self.path}: model has {out_shape[1]} outputs but the card names "
                f"{self.spec.num_classes} classes {self.spec.class_names}"
            )
        self._input_name = inputs[0].name
        self._output_name = outputs[0].name
        names = [o.name for o in outputs[1:]]
        self._features_name: str | None = FEATURES_OUTPUT if FEATURES_OUTPUT in names else None
        self._feature_dims: int | None = None
        if self._features_name is not None:
            shape = outputs[1 + names.index(FEATURES_OUTPUT)].shape
            if len(shape) != 2:
                raise ModelLoadError(
                    f"{self.path}: output {FEATURES_OUTPUT!r} must be N x D, got shape {shape}"
                )
            self._feature_dims = shape[1] if isinstance(shape[1], int) else None

    def _load_projection(self) -> Projection | None:
        """The card's embedding projection, when the file also has the ``features`` output."""
        data = self.spec.extra.get(CARD_KEY)
        if data is None:
            return None
        if self._features_name is None:
            logger.warning(
                "%s: the card records an embedding projection but the model has no %r output; no embeddings",
                self.path,
                FEATURES_OUTPUT,
            )
            return None
        try:
            projection = Projection.from_dict(data)
        except ValueError as exc:
            raise ModelLoadError(f"{self.path}: card field extra.{CARD_KEY}: {exc}") from exc
        if self._feature_dims is not None and projection.feature_dims != self._feature_dims:
            raise ModelLoadError(
                f"{self.path}: card field extra.{CARD_KEY} projects {projection.feature_dims} features "
                f"but the model's {FEATURES_OUTPUT!r} output has {self._feature_dims}"
            )
        return projection

    @property
    def has_features(self) -> bool:
        """The file has the ``features`` output (pooled features of the classification head)."""
        return self._features_name is not None

    @property
    def embedding_dims(self) -> int | None:
        """Dimensions of the compact embedding, or None when the model gives none."""
        return None if self.projection is None else self.projection.dims

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names)

    def __repr__(self) -> str:
        return (
            f"OnnxClassifier({str(self.path)!r}, task={self.spec.task!r}, input_size={self.spec.input_size})"
        )

    @staticmethod
    def _check_images(images_bgr: Sequence[np.ndarray]) -> None:
        # A single HxWxC array would otherwise be iterated row by row, each row read as a gray image.
        if isinstance(images_bgr, np.ndarray) and images_bgr.ndim != 4:
            raise ValueError(
                f"images_bgr must be a sequence of images (or an N x H x W x C array), "
                f"got an array of shape {images_bgr.shape}; wrap a single image in a list"
            )

    def predict_logits(self, images_bgr: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Raw logits for BGR images of any size.

        Args:
            images_bgr: uint8 OpenCV images (BGR, BGRA or gray).
            batch_size: images per ONNX Runtime call.

        Returns:
            (n, C) float32 logits; (0, C) for an empty input.
        """
        return self._run(images_bgr, batch_size, features=False)[0]

    def _run(
        self, images_bgr: Sequence[np.ndarray], batch_size: int, features: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits and, when ``features`` and the model has them, the pooled features."""
        self._check_images(images_bgr)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if features and self._features_name is None:
            raise ValueError(f"{self.path} has no {FEATURES_OUTPUT!r} output (exported before it existed)")
        n = len(images_bgr)
        logits = np.zeros((n, self.spec.num_classes), np.float32)
        pooled: np.ndarray | None = None
        names = [self._output_name, self._features_name] if features else [self._output_name]
        for start in range(0, n, batch_size):
            batch = preprocess(images_bgr[start : start + batch_size], self.spec)
            outs = self._session.run(names, {self._input_name: batch})
            logits[start : start + batch.shape[0]] = outs[0]
            if features:
                if pooled is None:
                    pooled = np.zeros((n, outs[1].shape[1]), np.float32)
                pooled[start : start + batch.shape[0]] = outs[1]
        if features and pooled is None:
            pooled = np.zeros((0, self._feature_dims or 0), np.float32)
        return logits, pooled

    def predict_features(self, images_bgr: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """The pooled features the classification head reads: (n, D) float32.

        Raises:
            ValueError: the model has no ``features`` output.
        """
        pooled = self._run(images_bgr, batch_size, features=True)[1]
        assert pooled is not None
        return pooled

    def predict_with_embedding(
        self, images_bgr: Sequence[np.ndarray], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated probabilities and the compact embedding of each image, from one model run.

        Returns:
            ``(proba, embedding)``: (n, C) float32 as ``predict_proba``, and (n, dims) float16, or
            None when the model has no ``features`` output or its card no projection.
        """
        logits, pooled = self._run(images_bgr, batch_size, features=self.projection is not None)
        proba = softmax(logits, self.spec.temperature).astype(np.float32)
        if self.projection is None or pooled is None:
            return proba, None
        if len(pooled) == 0:
            return proba, np.zeros((0, self.projection.dims), np.float16)
        return proba, self.projection.project(pooled)

    def predict_proba(self, images_bgr: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Calibrated probabilities: ``softmax(logits / spec.temperature)``; (n, C) float32."""
        return softmax(self.predict_logits(images_bgr, batch_size), self.spec.temperature).astype(np.float32)

    def predict(
        self, images_bgr: Sequence[np.ndarray], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Most likely class of each image.

        Returns:
            ``(class_ids, confidences)``: (n,) int64 and (n,) float32; empty arrays for no images.
        """
        proba = self.predict_proba(images_bgr, batch_size)
        ids = proba.argmax(axis=1).astype(np.int64)
        return ids, proba[np.arange(len(ids)), ids].astype(np.float32)
