"""Liveness (``/health``) and readiness (``/ready``)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from fastapi import APIRouter

from maskops import __version__
from maskops.detect.base import YUNET_SINGLE
from maskops.serve.deps import KeysDep, ServiceDep, SettingsDep
from maskops.serve.errors import ApiError, ErrorResponse
from maskops.serve.recording import StoreDep, store_check
from maskops.serve.schemas import Health, Ready
from maskops.serve.service import ModelSet, ServiceUnavailable
from maskops.serve.settings import ServeSettings
from maskops.types import ModelSpec

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)


@router.get("/health", response_model=Health)
def health() -> Health:
    """Liveness: the process is up and answering."""
    return Health(status="ok", version=__version__)


@router.get(
    "/ready",
    response_model=Ready,
    responses={
        503: {"model": ErrorResponse, "description": "not ready; details.checks says what is missing"}
    },
)
def ready(service: ServiceDep, settings: SettingsDep, keys: KeysDep, store: StoreDep) -> Ready:
    """Readiness: the face-mask model and the face detector are loaded (and the key store opens).

    ``degraded`` (still 200): the service answers but the prediction store drops records (its spool
    cannot be written; ``checks.prediction_store`` gives the reason), or files the serving models
    were loaded from are gone (``checks.model_files``: a restart or a reload would not find them)."""
    checks: dict[str, str] = {}
    problems: list[str] = []
    gone: list[str] = []
    try:
        models = service.models
        problem = models.face_problem()
        checks["face_model"] = "ok" if models.face is not None else "missing"
        checks["detector"] = "ok" if models.detector_error is None else "missing"
        gone = missing_files(models, settings)
        if gone:
            checks["model_files"] = (
                f"missing on disk: {', '.join(gone)} (serving from the loaded copy; "
                "a restart or a reload would not load it)"
            )
        for name, reason in models.errors.items():
            checks[f"model:{name}"] = "failed"
            if name != models.face_model:
                logger.debug("model %s unavailable: %s", name, reason)
        if problem:
            problems.append(problem)
    except ServiceUnavailable as exc:
        checks["models"] = "starting"
        problems.append(exc.message)
    if settings.auth:
        try:
            keys.ping()
            checks["key_store"] = "ok"
        except sqlite3.Error:
            checks["key_store"] = "unreachable"
            problems.append("the API key store cannot be read")
    checks["prediction_store"], degraded = store_check(store)
    if degraded:
        checks["prediction_store"] = f"degraded: {degraded}"
    if problems:
        raise ApiError(503, "not_ready", "; ".join(problems), {"checks": checks})
    return Ready(status="degraded" if degraded or gone else "ready", checks=checks)


def missing_files(models: ModelSet, settings: ServeSettings) -> list[str]:
    """Files the loaded models came from that are no longer there (names only, never server paths):
    each model's ``.onnx`` and card, and the YuNet weights when the detector uses them."""
    gone: list[str] = []
    for m in models.models.values():
        path = Path(m.classifier.path)
        gone += [p.name for p in (path, ModelSpec.card_path(path)) if not p.is_file()]
    yunet = settings.yunet_path
    uses_yunet = models.detector_error is None and settings.detector in YUNET_SINGLE
    if uses_yunet and yunet is not None and not Path(yunet).is_file():
        gone.append(f"detector weights {Path(yunet).name}")
    return gone
