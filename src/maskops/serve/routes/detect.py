"""``POST /v1/detect`` and ``POST /v1/detect/batch``: faces and their mask status."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request

from maskops.inference.images import ImageRejected
from maskops.serve.deps import PredictCaller, ServiceDep
from maskops.serve.errors import IMAGE_ERRORS, ApiError
from maskops.serve.recording import record_detection
from maskops.serve.routes.common import detect_result, error_info, model_ref, request_id, to_api_error
from maskops.serve.schemas import BatchItem, BatchResponse, DetectResponse, DetectResult
from maskops.serve.service import DetectOptions, DetectOutcome, MaskService, ModelSet, ServiceUnavailable
from maskops.serve.uploads import BATCH_BODY, IMAGE_BODY, Upload, read_images

router = APIRouter(prefix="/v1", tags=["detect"])
logger = logging.getLogger(__name__)

MinConfidence = Annotated[
    float | None,
    Query(
        ge=0.0,
        le=1.0,
        description="minimum calibrated class confidence; below it a face is 'uncertain' "
        "(default: the model card's)",
    ),
]
Threshold = Annotated[
    float | None,
    Query(
        ge=0.0,
        le=1.0,
        deprecated=True,
        description="old name of `min_confidence` (the class confidence, not the face-detector score); "
        "`min_confidence` wins when both are given",
    ),
]
Uncertain = Annotated[
    bool,
    Query(
        description="label hard faces (tiny, dark, blurred, low confidence) 'uncertain' instead of guessing"
    ),
]
Annotated_ = Annotated[bool, Query(description="also return the image with boxes drawn, as base64 JPEG")]


def min_confidence_of(min_confidence: float | None, threshold: float | None) -> float | None:
    """``min_confidence``, or the deprecated ``threshold`` (with a warning in the log)."""
    if threshold is not None:
        logger.warning("query parameter 'threshold' is deprecated: use 'min_confidence'")
    return min_confidence if min_confidence is not None else threshold


async def detect_one(
    request: Request, service: MaskService, min_confidence: float | None, uncertain: bool, annotated: bool
) -> DetectResponse:
    uploads = await read_images(request, batch=False, max_images=1)
    opts = DetectOptions(min_confidence=min_confidence, uncertain=uncertain, annotated=annotated)
    try:
        out = await service.detect(uploads[0].data, uploads[0].name, opts)
    except (ImageRejected, ServiceUnavailable) as exc:
        if isinstance(exc, ImageRejected):
            service.metrics.observe_image("rejected")
        raise to_api_error(exc) from None
    result = detect_result(out)
    record_detection(request, out, "api")
    # the validated fields as they are: no dump and re-validation of every face
    fields = {name: getattr(result, name) for name in DetectResult.model_fields}
    return DetectResponse(request_id=request_id(request), model=model_ref(out.model), **fields)


async def _detect_entry(
    service: MaskService, models: ModelSet, upload: Upload, opts: DetectOptions
) -> DetectOutcome:
    if upload.error is not None:
        raise upload.error
    return await service.pool.run(service.detect_sync, models, upload.data, upload.name, opts)


async def detect_batch(
    request: Request, service: MaskService, min_confidence: float | None, uncertain: bool, annotated: bool
) -> BatchResponse:
    limit = service.settings.max_batch
    uploads = await read_images(request, batch=True, max_images=limit)
    try:
        models = service.face_models()
    except ServiceUnavailable as exc:
        raise to_api_error(exc) from None
    opts = DetectOptions(min_confidence=min_confidence, uncertain=uncertain, annotated=annotated)
    # every image goes to the pool at once: the workers share them, the order is kept by gather
    outcomes = await asyncio.gather(
        *(_detect_entry(service, models, u, opts) for u in uploads), return_exceptions=True
    )
    items: list[BatchItem] = []
    for i, (upload, out) in enumerate(zip(uploads, outcomes, strict=True)):
        if isinstance(out, DetectOutcome):
            items.append(BatchItem(index=i, filename=upload.name, ok=True, result=detect_result(out)))
            # one record per image: <request id>-<index> (the id feedback names)
            record_detection(request, out, "batch", request_id=f"{request_id(request)}-{i}")
        elif isinstance(out, ImageRejected | ServiceUnavailable | ApiError):
            if isinstance(out, ImageRejected):
                service.metrics.observe_image("rejected")
            items.append(BatchItem(index=i, filename=upload.name, ok=False, error=error_info(out)))
        else:
            raise out
    ok = sum(item.ok for item in items)
    face = models.face
    assert face is not None
    return BatchResponse(
        request_id=request_id(request),
        model=model_ref(face),
        count=len(items),
        succeeded=ok,
        failed=len(items) - ok,
        results=items,
    )


@router.post(
    "/detect",
    response_model=DetectResponse,
    responses=IMAGE_ERRORS,
    openapi_extra=IMAGE_BODY,
    summary="Detect faces and their mask status in one image",
)
async def detect(
    request: Request,
    service: ServiceDep,
    _caller: PredictCaller,
    min_confidence: MinConfidence = None,
    uncertain: Uncertain = True,
    annotated: Annotated_ = False,
    threshold: Threshold = None,
) -> DetectResponse:
    """One image, as a multipart file (field ``file``) or JSON ``{"image_base64": ...}``.

    Returns every face with its box, class, calibrated confidence and face score, plus the model
    version, the per-stage timings and the request id.
    """
    return await detect_one(
        request, service, min_confidence_of(min_confidence, threshold), uncertain, annotated
    )


@router.post(
    "/detect/batch",
    response_model=BatchResponse,
    responses={
        **IMAGE_ERRORS,
        200: {"description": "one entry per image, in order; bad images get an error entry"},
    },
    openapi_extra=BATCH_BODY,
    summary="Detect faces in up to max_batch images",
)
async def detect_batch_route(
    request: Request,
    service: ServiceDep,
    _caller: PredictCaller,
    min_confidence: MinConfidence = None,
    uncertain: Uncertain = True,
    annotated: Annotated_ = False,
    threshold: Threshold = None,
) -> BatchResponse:
    """Several images (multipart files, or JSON ``{"images": [{"image_base64": ...}, ...]}``).

    One result per image in order; an unusable image gets an error entry, the others still run.
    """
    return await detect_batch(
        request, service, min_confidence_of(min_confidence, threshold), uncertain, annotated
    )
