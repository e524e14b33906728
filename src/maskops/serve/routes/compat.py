"""Routes for clients of the older face-mask APIs: thin aliases of the ``/v1`` routes.

``/predict/single`` and ``/detect`` answer like ``/v1/detect``; ``/predict/batch`` and
``/detect-batch`` like ``/v1/detect/batch``; ``/model-info`` summarises the face-mask model. Any
multipart file field name is accepted (``file``, ``image``, ``files``...).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from maskops.serve.deps import PredictCaller, ServiceDep
from maskops.serve.errors import COMMON_ERRORS, IMAGE_ERRORS, ErrorResponse
from maskops.serve.routes.common import to_api_error
from maskops.serve.routes.detect import Annotated_, Threshold, Uncertain, detect_batch, detect_one
from maskops.serve.schemas import BatchResponse, DetectResponse
from maskops.serve.service import ServiceUnavailable
from maskops.serve.uploads import BATCH_BODY, IMAGE_BODY

router = APIRouter(tags=["compatibility"], deprecated=True)


class ModelInfo(BaseModel):
    model_name: str
    task: str
    version: str
    classes: list[str]
    input_size: list[int]
    metrics: dict[str, Any]
    detector: str


for _path in ("/predict/single", "/detect"):

    @router.post(
        _path,
        response_model=DetectResponse,
        responses=IMAGE_ERRORS,
        openapi_extra=IMAGE_BODY,
        summary=f"Alias of /v1/detect ({_path})",
        name=f"compat{_path.replace('/', '_')}",
    )
    async def _detect_alias(
        request: Request,
        service: ServiceDep,
        _caller: PredictCaller,
        threshold: Threshold = None,
        uncertain: Uncertain = True,
        annotated: Annotated_ = False,
    ) -> DetectResponse:
        return await detect_one(request, service, threshold, uncertain, annotated)


for _path in ("/predict/batch", "/detect-batch"):

    @router.post(
        _path,
        response_model=BatchResponse,
        responses=IMAGE_ERRORS,
        openapi_extra=BATCH_BODY,
        summary=f"Alias of /v1/detect/batch ({_path})",
        name=f"compat{_path.replace('/', '_').replace('-', '_')}",
    )
    async def _batch_alias(
        request: Request,
        service: ServiceDep,
        _caller: PredictCaller,
        threshold: Threshold = None,
        uncertain: Uncertain = True,
        annotated: Annotated_ = False,
    ) -> BatchResponse:
        return await detect_batch(request, service, threshold, uncertain, annotated)


@router.get(
    "/model-info",
    response_model=ModelInfo,
    responses={**COMMON_ERRORS, 503: {"model": ErrorResponse, "description": "face-mask model not loaded"}},
)
def model_info(service: ServiceDep, _caller: PredictCaller) -> ModelInfo:
    """The face-mask model: name, version, classes, input size, metrics (alias of part of /v1/models)."""
    try:
        models = service.face_models()
    except ServiceUnavailable as exc:
        raise to_api_error(exc) from None
    face = models.face
    assert face is not None
    spec = face.spec
    return ModelInfo(
        model_name=face.name,
        task=spec.task,
        version=face.version,
        classes=list(spec.class_names),
        input_size=list(spec.input_size),
        metrics=spec.metrics,
        detector=models.detector_name,
    )
