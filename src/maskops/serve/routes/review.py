"""The hard-case review queue: the ``/review`` page, the next crop to answer and the crops.

Crops exist only with ``MASKOPS_STORE_FACES=hard``; answers go to ``POST /v1/feedback`` with
``origin: review``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from maskops.monitor.review import crop_jpeg, next_for_review
from maskops.serve.deps import PredictCaller
from maskops.serve.errors import COMMON_ERRORS, ApiError, ErrorResponse
from maskops.serve.recording import StoreDep, require_store
from maskops.serve.routes.pages import STATIC_DIR

router = APIRouter(tags=["monitoring"])

RequestId = Annotated[str, Path(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9._:-]+$")]
FaceIndex = Annotated[int, Path(ge=0, le=100_000)]


class ReviewCase(BaseModel):
    request_id: str
    face_index: int
    label: str = Field(description="the model's answer")
    confidence: float = Field(description="its top calibrated probability")
    probabilities: dict[str, float]
    uncertain_reason: str | None
    crop_url: str


class ReviewNext(BaseModel):
    case: ReviewCase | None = Field(description="null when nothing waits")
    waiting: int = Field(description="crops without an answer")
    storing_crops: bool = Field(description="MASKOPS_STORE_FACES=hard: new hard cases are kept")


@router.get("/review", include_in_schema=False)
def review_page() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "review.html", media_type="text/html", headers={"Cache-Control": "no-cache"}
    )


@router.get(
    "/v1/review/next",
    response_model=ReviewNext,
    responses={**COMMON_ERRORS, 503: {"model": ErrorResponse, "description": "the prediction store is off"}},
)
async def review_next(
    store: StoreDep,
    _caller: PredictCaller,
    after_request_id: Annotated[str | None, Query(max_length=80, description="skip up to this case")] = None,
    after_face_index: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> ReviewNext:
    """The next hard case without an answer (after the given one, to skip it for this pass)."""
    engine = require_store(store).engine
    after = (after_request_id, after_face_index) if after_request_id else None
    item = await asyncio.to_thread(next_for_review, engine, after=after)
    storing = store is not None and store.hard_cases is not None
    if item is None:
        return ReviewNext(case=None, waiting=0, storing_crops=storing)
    return ReviewNext(
        case=ReviewCase(
            request_id=item.request_id,
            face_index=item.face_index,
            label=item.label,
            confidence=round(item.confidence, 4),
            probabilities=item.probabilities,
            uncertain_reason=item.uncertain_reason,
            crop_url=f"/v1/review/crops/{item.request_id}/{item.face_index}",
        ),
        waiting=item.waiting,
        storing_crops=storing,
    )


@router.get(
    "/v1/review/crops/{request_id}/{face_index}",
    response_class=Response,
    responses={
        **COMMON_ERRORS,
        200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
        404: {"model": ErrorResponse, "description": "no crop kept for this face"},
        503: {"model": ErrorResponse, "description": "the prediction store is off"},
    },
)
async def review_crop(
    request_id: RequestId, face_index: FaceIndex, store: StoreDep, _caller: PredictCaller
) -> Response:
    """The JPEG crop of a hard case."""
    data = await asyncio.to_thread(crop_jpeg, require_store(store).engine, request_id, face_index)
    if data is None:
        raise ApiError(404, "no_crop", f"no crop kept for face {face_index} of request {request_id!r}")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
