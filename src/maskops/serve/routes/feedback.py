"""``POST /v1/feedback``: the true label of a served face, stored with its prediction."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import OperationalError

from maskops.monitor.feedback import FEEDBACK_LABELS, MAX_FACE_INDEX, UnknownFace, add_feedback
from maskops.serve.deps import PredictCaller
from maskops.serve.errors import COMMON_ERRORS, ApiError, ErrorResponse
from maskops.serve.recording import StoreDep, require_store

router = APIRouter(prefix="/v1", tags=["monitoring"])

TrueLabel = Literal[FEEDBACK_LABELS]  # type: ignore[valid-type]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(
        min_length=1,
        max_length=80,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="the X-Request-ID of the answer (batch image i: <id>-<i>; stream frames: the id in the result)",
    )
    face_index: int = Field(ge=0, le=MAX_FACE_INDEX, description="the face's position in the answer's faces")
    label: TrueLabel = Field(description="the true class, or not_a_face for a wrong detection")
    origin: Literal["api", "review"] = Field(default="api", description="who answered: a client, or /review")


class FeedbackResponse(BaseModel):
    request_id: str
    face_index: int
    label: str
    predicted_label: str = Field(description="what the service answered for this face")


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    responses={
        **COMMON_ERRORS,
        400: {"model": ErrorResponse, "description": "malformed body (not UTF-8 JSON)"},
        404: {"model": ErrorResponse, "description": "no such request or face in the prediction store"},
        503: {"model": ErrorResponse, "description": "the prediction store is off or does not answer"},
    },
    summary="Tell the true label of a served face",
)
async def feedback(body: FeedbackRequest, store: StoreDep, _caller: PredictCaller) -> FeedbackResponse:
    """Store ground truth for one face of an earlier answer (the latest answer for a face wins).

    Answers are recorded a moment after they are served: feedback sent right away may get 404
    until the record is written.
    """
    engine = require_store(store).engine
    try:
        fb = await asyncio.to_thread(
            add_feedback,
            engine,
            request_id=body.request_id,
            face_index=body.face_index,
            true_label=body.label,
            origin=body.origin,
        )
    except OperationalError:
        raise ApiError(
            503, "store_unavailable", "the prediction store does not answer; retry later"
        ) from None
    except UnknownFace as exc:
        code = "unknown_face" if exc.request_known else "unknown_request"
        raise ApiError(
            404, code, str(exc), {"request_id": body.request_id, "face_index": body.face_index}
        ) from None
    return FeedbackResponse(
        request_id=fb.request_id,
        face_index=fb.face_index,
        label=fb.true_label,
        predicted_label=fb.predicted_label,
    )
