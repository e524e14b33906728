"""Request and response schemas of the API (separate from the library's types)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from maskops.serve.errors import ErrorInfo


class ImageJSON(BaseModel):
    """One image as JSON: base64 bytes (a ``data:`` URL prefix is accepted)."""

    model_config = ConfigDict(extra="forbid")

    image_base64: str = Field(description="the image file's bytes, base64-encoded")
    filename: str | None = Field(default=None, max_length=255, description="shown in messages only")


class BatchJSON(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: list[ImageJSON] = Field(description="images in order")


class ModelRef(BaseModel):
    name: str
    task: str
    version: str = Field(description="first 12 hex digits of the model file's sha256")


class ImageInfo(BaseModel):
    filename: str
    format: str
    width: int
    height: int


class Face(BaseModel):
    box: list[float] = Field(description="x1, y1, x2, y2 in image pixels", min_length=4, max_length=4)
    label: str = Field(description="class name, or 'uncertain'")
    class_id: int = Field(description="class index; -1 = uncertain")
    confidence: float = Field(description="calibrated top-class probability")
    face_score: float | None = Field(default=None, description="the face detector's score")
    probabilities: dict[str, float] = Field(default_factory=dict)
    uncertain_reason: str | None = None
    landmarks: list[list[float]] | None = Field(default=None, description="5 (x, y) points when given")


class DetectResult(BaseModel):
    image: ImageInfo
    faces: list[Face]
    counts: dict[str, int] = Field(description="faces per class, plus 'uncertain'")
    timings_ms: dict[str, float]
    annotated_jpeg_base64: str | None = Field(default=None, description="when annotated=true")


class DetectResponse(DetectResult):
    request_id: str
    model: ModelRef


class BatchItem(BaseModel):
    index: int
    filename: str
    ok: bool
    result: DetectResult | None = None
    error: ErrorInfo | None = None


class BatchResponse(BaseModel):
    request_id: str
    model: ModelRef
    count: int
    succeeded: int
    failed: int
    results: list[BatchItem]


class ClassifyResponse(BaseModel):
    request_id: str
    model: ModelRef
    image: ImageInfo
    label: str
    class_id: int
    confidence: float
    probabilities: dict[str, float]
    timings_ms: dict[str, float]


class ModelCard(BaseModel):
    name: str
    role: Literal["face_classifier", "classifier"]
    version: str
    source: str
    loaded_at: str
    card: dict[str, Any] = Field(description="the model card (ModelSpec) as saved beside the model")


class ModelsResponse(BaseModel):
    generation: int
    loaded_at: str
    face_model: str
    detector: str
    detector_error: str | None = None
    models: list[ModelCard]
    unavailable: dict[str, str] = Field(default_factory=dict, description="model name -> why not loaded")


class ReloadResponse(BaseModel):
    previous_generation: int | None
    generation: int
    models: list[ModelRef]
    unavailable: dict[str, str]


class Ready(BaseModel):
    status: Literal["ready", "degraded"]
    checks: dict[str, str]


class Health(BaseModel):
    status: str
    version: str


class StatsResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    uptime_s: float
    requests_total: int
    requests_by_route: dict[str, int]
    responses_by_status: dict[str, int]
    errors_by_code: dict[str, int]
    images: dict[str, int]
    faces_total: int
    faces_by_label: dict[str, int]
    latency_window: dict[str, dict[str, float]]
    queue: int
    model_generation: int | None
