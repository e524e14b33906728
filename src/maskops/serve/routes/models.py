"""``GET /v1/models`` (loaded model cards) and ``POST /v1/models/reload`` (admin)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from maskops.serve.deps import AdminCaller, PredictCaller, ServiceDep
from maskops.serve.errors import COMMON_ERRORS, ErrorResponse
from maskops.serve.routes.common import model_ref, to_api_error
from maskops.serve.schemas import ModelCard, ModelsResponse, ReloadResponse
from maskops.serve.service import MaskService, ReloadRefused, ServiceUnavailable

router = APIRouter(prefix="/v1/models", tags=["models"])


def public_card(card: dict[str, Any]) -> dict[str, Any]:
    """The card as clients see it: the embedding projection's matrices (hundreds of kilobytes, of no
    use to a client) give way to a summary of it."""
    extra = card.get("extra")
    if not isinstance(extra, dict) or not isinstance(extra.get("embedding"), dict):
        return card
    emb = extra["embedding"]
    summary = {k: v for k, v in emb.items() if k not in ("mean", "components")}
    return {**card, "extra": {**extra, "embedding": summary}}


def models_response(service: MaskService) -> ModelsResponse:
    try:
        models = service.models
    except ServiceUnavailable as exc:
        raise to_api_error(exc) from None
    cards = [
        ModelCard(
            name=m.name,
            role="face_classifier" if m.name == models.face_model else "classifier",
            version=m.version,
            source=m.source,
            loaded_at=m.loaded_at,
            card=public_card(m.spec.to_dict()),
        )
        for m in models.models.values()
    ]
    return ModelsResponse(
        generation=models.generation,
        loaded_at=models.loaded_at,
        face_model=models.face_model,
        detector=models.detector_name,
        detector_error=models.detector_error,
        models=cards,
        unavailable=dict(models.errors),
    )


@router.get("", response_model=ModelsResponse, responses=COMMON_ERRORS)
def list_models(service: ServiceDep, _caller: PredictCaller) -> ModelsResponse:
    """The loaded models with their cards, and the ones that could not be loaded (with why)."""
    return models_response(service)


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={
        **COMMON_ERRORS,
        409: {
            "model": ErrorResponse,
            "description": "reload refused (a model that serves now is missing, corrupt or does not fit "
            "its card in the new files); the current models keep serving",
        },
    },
)
async def reload_models(
    service: ServiceDep,
    _caller: AdminCaller,
    source: Annotated[
        Literal["dir", "registry"] | None,
        Query(description="models directory, or the registry's champion (default: the configured source)"),
    ] = None,
) -> ReloadResponse:
    """Load the models again (e.g. a new champion) and swap them in atomically.

    Requests in flight finish on the models they started with. When a model that serves now cannot be
    loaded from the new files (missing face-mask model, corrupt file, shape that does not fit its card),
    the current set is kept and 409 ``reload_failed`` names each model and why.
    """
    try:
        new, old = await service.reload(source)
    except (ServiceUnavailable, ReloadRefused) as exc:
        raise to_api_error(exc) from None
    return ReloadResponse(
        previous_generation=old.generation if old else None,
        generation=new.generation,
        models=[model_ref(m) for m in new.models.values()],
        unavailable=dict(new.errors),
    )
