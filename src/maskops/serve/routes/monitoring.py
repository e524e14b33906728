"""``GET /metrics`` (Prometheus text) and ``GET /v1/stats`` (JSON aggregates)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from maskops.serve.deps import PredictCaller, ServiceDep
from maskops.serve.errors import COMMON_ERRORS
from maskops.serve.schemas import StatsResponse

router = APIRouter(tags=["monitoring"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}
    },
)
def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, latency histograms, inference stages, faces per class, errors."""
    return Response(request.app.state.metrics.prometheus_text(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/stats", response_model=StatsResponse, responses=COMMON_ERRORS)
def stats(service: ServiceDep, _caller: PredictCaller) -> StatsResponse:
    """Aggregates of the API since start: requests per route and status, errors per code, faces per
    label, latency percentiles over the last requests of each route.

    Only API routes are counted: the web app's pages, its static files, the docs and unknown paths
    are not (``/metrics`` counts them under ``<non-api>`` and ``<unmatched>``)."""
    snap = service.metrics.snapshot()
    return StatsResponse(**snap, queue=service.pool.pending, model_generation=service.generation)
