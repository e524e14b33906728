"""``POST /v1/classify``: whole-image classification (malaria cells, or one face crop)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from maskops.serve.deps import PredictCaller, ServiceDep
from maskops.serve.errors import IMAGE_ERRORS, ErrorResponse
from maskops.serve.images import ImageRejected
from maskops.serve.routes.common import model_ref, request_id, to_api_error
from maskops.serve.schemas import ClassifyResponse, ImageInfo
from maskops.serve.service import MaskService, ServiceUnavailable, UnknownModel
from maskops.serve.uploads import IMAGE_BODY, read_images

router = APIRouter(prefix="/v1", tags=["classify"])

ModelName = Annotated[
    str | None,
    Query(
        max_length=100,
        description="a loaded model's name (see /v1/models); default: the first model that is not the "
        "face classifier, else the face classifier",
    ),
]


def default_model(service: MaskService) -> str:
    models = service.models
    others = sorted(n for n in models.models if n != models.face_model)
    if others:
        return others[0]
    return models.face_model


async def classify_one(request: Request, service: MaskService, model: str | None) -> ClassifyResponse:
    uploads = await read_images(request, batch=False, max_images=1)
    try:
        name = model or default_model(service)
        out = await service.classify(uploads[0].data, uploads[0].name, name)
    except (ImageRejected, ServiceUnavailable, UnknownModel) as exc:
        if isinstance(exc, ImageRejected):
            service.metrics.observe_image("rejected")
        raise to_api_error(exc) from None
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
    responses={**IMAGE_ERRORS, 404: {"model": ErrorResponse, "description": "unknown model"}},
    openapi_extra=IMAGE_BODY,
    summary="Classify a whole image with a loaded classifier",
)
async def classify(
    request: Request, service: ServiceDep, _caller: PredictCaller, model: ModelName = None
) -> ClassifyResponse:
    """One image (multipart ``file`` or JSON ``image_base64``) through one classifier, no face detection.

    For classification tasks such as malaria cell images, or to classify one face crop with the
    face-mask model (``model=facemask``).
    """
    return await classify_one(request, service, model)
