"""``POST /v1/classify``: whole-image classification (malaria cells, or one face crop)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from maskops.inference.images import ImageRejected
from maskops.serve.deps import PredictCaller, ServiceDep
from maskops.serve.errors import IMAGE_ERRORS, ApiError, ErrorResponse
from maskops.serve.recording import record_classification
from maskops.serve.routes.common import model_ref, request_id, to_api_error
from maskops.serve.schemas import ClassifyResponse, ImageInfo
from maskops.serve.service import MaskService, ServiceUnavailable, UnknownModel
from maskops.serve.uploads import IMAGE_BODY, read_images

router = APIRouter(prefix="/v1", tags=["classify"])

ModelName = Annotated[
    str | None,
    Query(
        max_length=100,
        description="a loaded model's name (see /v1/models). Default: the face-mask model when it is "
        "loaded, else the only loaded model; with several models and no face-mask model, 422 "
        "`model_required` lists them",
    ),
]


def default_model(service: MaskService) -> str:
    """The model of a request that names none: the face-mask model, else the only loaded one.

    Raises:
        ApiError: 422 ``model_required`` (with the loaded names) when neither exists.
    """
    models = service.models
    if models.face is not None:
        return models.face_model
    if len(models.models) == 1:
        return next(iter(models.models))
    loaded = sorted(models.models)
    raise ApiError(
        422,
        "model_required",
        f"name a model with ?model=: the face-mask model {models.face_model!r} is not loaded and "
        f"the loaded models are: {', '.join(loaded) or 'none'}",
        {"loaded": loaded},
    )


async def classify_one(request: Request, service: MaskService, model: str | None) -> ClassifyResponse:
    uploads = await read_images(request, batch=False, max_images=1)
    try:
        name = model or default_model(service)
        out = await service.classify(uploads[0].data, uploads[0].name, name)
    except (ImageRejected, ServiceUnavailable, UnknownModel) as exc:
        if isinstance(exc, ImageRejected):
            service.metrics.observe_image("rejected")
        raise to_api_error(exc) from None
    record_classification(request, out)
    return ClassifyResponse(
        request_id=request_id(request),
        model=model_ref(out.model),
        image=ImageInfo(
            filename=out.image.name, format=out.image.format, width=out.image.width, height=out.image.height
        ),
        label=out.label,
        class_id=out.class_id,
        confidence=out.confidence,
        probabilities=out.probabilities,
        timings_ms=out.timings_ms,
    )


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    responses={
        **IMAGE_ERRORS,
        404: {"model": ErrorResponse, "description": "unknown model"},
        422: {
            "model": ErrorResponse,
            "description": "invalid image, or no `model` given while the choice is ambiguous "
            "(`model_required`, `details.loaded` lists the models)",
        },
    },
    openapi_extra=IMAGE_BODY,
    summary="Classify a whole image with a loaded classifier",
)
async def classify(
    request: Request, service: ServiceDep, _caller: PredictCaller, model: ModelName = None
) -> ClassifyResponse:
    """One image (multipart ``file`` or JSON ``image_base64``) through one classifier, no face detection.

    For classification tasks such as malaria cell images (``model=malaria``), or to classify one face
    crop with the face-mask model. Without ``model`` the face-mask model answers when it is loaded
    (else the only loaded model; else 422 ``model_required`` listing the loaded models).
    """
    return await classify_one(request, service, model)
