"""Routes for clients of the older face-mask APIs: thin aliases of the ``/v1`` routes.

``/predict/single`` and ``/detect`` answer like ``/v1/detect``; ``/predict/batch`` and
``/detect-batch`` like ``/v1/detect/batch``; ``/model-info`` summarises the face-mask model. Any
multipart file field name is accepted (``file``, ``image``, ``files``...).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from maskops.serve.deps import PredictCaller, ServiceDep
from maskops.serve.errors import COMMON_ERRORS, IMAGE_ERRORS, ErrorResponse
from maskops.serve.routes import detect as v1
from maskops.serve.routes.common import to_api_error
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


# the /v1 endpoints themselves, under the old paths (same parameters, same answers)
for _path, _endpoint, _model, _body, _target in (
    ("/predict/single", v1.detect, DetectResponse, IMAGE_BODY, "/v1/detect"),
    ("/detect", v1.detect, DetectResponse, IMAGE_BODY, "/v1/detect"),
    ("/predict/batch", v1.detect_batch_route, BatchResponse, BATCH_BODY, "/v1/detect/batch"),
    ("/detect-batch", v1.detect_batch_route, BatchResponse, BATCH_BODY, "/v1/detect/batch"),
):
    router.add_api_route(
        _path,
        _endpoint,
        methods=["POST"],
        response_model=_model,
        responses=IMAGE_ERRORS,
        openapi_extra=_body,
        summary=f"Alias of {_target} ({_path})",
        name=f"compat{_path.replace('/', '_').replace('-', '_')}",
    )


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
