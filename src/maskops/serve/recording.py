"""The service's side of the prediction store: starting it with the app, one record per served image,
the site tag, and what ``/ready`` and ``/v1/stats`` show of it.

Recording never fails a request: a record that cannot be built is logged and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import HTTPConnection

from maskops.config import Settings
from maskops.monitor.capture import build_record, detector_version
from maskops.monitor.features import image_quality
from maskops.monitor.feedback import measured_accuracy
from maskops.monitor.recorder import PredictionStore
from maskops.monitor.records import FaceRecord, PredictionRecord
from maskops.monitor.stats import business_stats, report_dict, resolve_window
from maskops.monitor.writer import WriterCounters
from maskops.serve.errors import ApiError

logger = logging.getLogger(__name__)

SITE_HEADER = "X-Site"


def store_counters(registry: CollectorRegistry) -> WriterCounters:
    """The store's counters in the app's registry (made once per app: ``/metrics`` shows them)."""
    return WriterCounters(registry)


def start_store(settings: Settings, counters: WriterCounters) -> PredictionStore | None:
    """The app's store, started (None when ``MASKOPS_STORE_PREDICTIONS=false``)."""
    if not settings.store_predictions:
        logger.info("prediction store off (MASKOPS_STORE_PREDICTIONS=false)")
        return None
    if settings.store_faces == "hard":
        logger.info("face crops of hard cases are kept for review (MASKOPS_STORE_FACES=hard)")
    store = PredictionStore.from_settings(settings, counters=counters)
    store.detector_version = detector_version(getattr(settings, "detector", None), settings.yunet_path)
    store.start()
    logger.info("prediction store: %s", store.engine.url.render_as_string(hide_password=True))
    return store


async def get_store(request: Request) -> PredictionStore | None:
    return getattr(request.app.state, "prediction_store", None)


StoreDep = Annotated[PredictionStore | None, Depends(get_store)]


def require_store(store: PredictionStore | None) -> PredictionStore:
    """The store, or a 503 when recording is off."""
    if store is None:
        raise ApiError(503, "store_off", "the prediction store is off (MASKOPS_STORE_PREDICTIONS=false)")
    return store


def site_of(request: HTTPConnection, site: str | None = None) -> str | None:
    """The site or camera tag: ``site`` as given, else the ``site`` query parameter, else the
    ``X-Site`` header."""
    tag = site or request.query_params.get("site") or request.headers.get(SITE_HEADER)
    return tag[:64] if tag else None


def _queue(request: HTTPConnection, build: Callable[[PredictionStore], PredictionRecord]) -> None:
    """Queue the record ``build`` makes, when the store is on; a record that cannot be built is
    logged and skipped (recording must never fail the request it records)."""
    store: PredictionStore | None = getattr(request.app.state, "prediction_store", None)
    if store is None:
        return
    try:
        record = build(store)
    except Exception:
        logger.exception("could not build the prediction record")
        return
    store.record(record)


def _request_id(request: HTTPConnection) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def record_detection(
    request: HTTPConnection,
    outcome: Any,
    source: str,
    *,
    request_id: str | None = None,
    site: str | None = None,
) -> None:
    """Queue the record of one detect outcome (a ``DetectOutcome`` of ``maskops.serve.service``)."""

    def build(store: PredictionStore) -> PredictionRecord:
        model, image = outcome.model, outcome.image
        return build_record(
            outcome.result,
            model.spec.class_names,
            request_id=request_id or _request_id(request),
            source=source,
            width=image.width,
            height=image.height,
            latency_ms=sum(outcome.timings_ms.values()),
            stages_ms=outcome.timings_ms,
            quality=getattr(outcome, "quality", None) or image_quality(image.image).as_dict(),
            site=site if site is not None else site_of(request),
            model_name=model.name,
            model_version=model.version,
            detector=request.app.state.settings.detector,
            detector_version=store.detector_version,
            image=image.image,
            hard_cases=store.hard_cases,
        )

    _queue(request, build)


def record_classification(request: HTTPConnection, outcome: Any) -> None:
    """Queue the record of one ``/v1/classify`` answer (a ``ClassifyOutcome``): source ``classify``,
    the whole image as the one "face" (no box was detected, so no face score)."""

    def build(store: PredictionStore) -> PredictionRecord:
        image = outcome.image
        face = FaceRecord(
            box=(0.0, 0.0, float(image.width), float(image.height)),
            face_score=None,
            probabilities={c: round(float(p), 4) for c, p in outcome.probabilities.items()},
            label=outcome.label,  # the top class: /v1/classify answers without an uncertain band
        )
        return PredictionRecord(
            request_id=_request_id(request),
            created_at=datetime.now(UTC),
            source="classify",
            latency_ms=round(sum(outcome.timings_ms.values()), 3),
            width=image.width,
            height=image.height,
            site=site_of(request),
            model_name=outcome.model.name,
            model_version=outcome.model.version,
            stages_ms={k: round(float(v), 3) for k, v in outcome.timings_ms.items()},
            quality={k: round(float(v), 5) for k, v in image_quality(image.image).as_dict().items()},
            faces=(face,),
        )

    _queue(request, build)


def store_check(store: PredictionStore | None) -> tuple[str, str | None]:
    """(``checks["prediction_store"]`` value, degraded reason or None) for ``/ready``."""
    if store is None:
        return "off", None
    status = store.status()
    if status.degraded:
        return "degraded", status.degraded
    if status.database == "down":
        return "spooling", None  # records are kept on disk and replayed: not a reason to stop traffic
    return "ok", None


class StoreStatsRow(BaseModel):
    bucket_start: str | None = Field(description="UTC start of the bucket (ISO); null in the total")
    site: str | None
    requests: int
    faces: dict[str, int] = Field(description="faces per label, 'uncertain' included")
    faces_total: int
    compliance_rate: float | None = Field(description="share of with_mask among the classified faces")
    p50_ms: float | None
    p95_ms: float | None


class MeasuredAccuracy(BaseModel):
    feedback: int = Field(description="faces with feedback")
    scored: int = Field(description="those with a class as truth and a class as answer")
    correct: int
    accuracy: float | None = Field(description="correct / scored (null without scored faces)")
    uncertain: int = Field(description="answered uncertain, a class as truth")
    not_a_face: int = Field(description="detections the feedback says are not faces")
    per_class: dict[str, dict[str, int]]


class StoreStats(BaseModel):
    """Business stats from the prediction store (they survive restarts)."""

    from_: str = Field(alias="from", description="window start, widened to whole buckets (UTC)")
    to: str
    bucket: str
    site: str | None
    rows: list[StoreStatsRow]
    total: StoreStatsRow | None
    accuracy: MeasuredAccuracy | None = Field(
        default=None, description="measured on the faces with feedback among the window's requests"
    )


def store_stats(
    store: PredictionStore | None, start: str | None, end: str | None, site: str | None, bucket: str
) -> dict[str, Any] | None:
    """``/v1/stats``' store figures as JSON-ready data shaped as ``StoreStats`` (None when the store
    is off or does not answer). Plain data, not the model: a month by hour over every site is
    thousands of rows, which pydantic would take longer to validate than the database to read.

    Raises:
        ApiError: 422 for a window that does not parse or ends before it starts.
    """
    if store is None:
        return None
    try:
        t0, t1 = resolve_window(start, end, bucket, datetime.now(UTC))
        if t1 < t0:
            raise ValueError(f"the window ends ({t1.isoformat()}) before it starts ({t0.isoformat()})")
    except ValueError as exc:
        raise ApiError(422, "invalid_window", str(exc)) from None
    try:
        report = business_stats(store.engine, t0, t1, site=site, bucket=bucket)  # type: ignore[arg-type]
        accuracy = measured_accuracy(store.engine, report.start, report.end, site=site)
    except SQLAlchemyError as exc:
        logger.warning("store stats unavailable: %s", str(exc).splitlines()[0])
        return None
    data = report_dict(report)
    data["accuracy"] = asdict(accuracy)
    return data
