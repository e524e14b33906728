"""``GET /metrics`` (Prometheus text) and ``GET /v1/stats`` (JSON aggregates)."""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from maskops.serve.deps import PredictCaller, ServiceDep
from maskops.serve.errors import COMMON_ERRORS
from maskops.serve.recording import StoreDep, StoreStats, store_stats
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


class StatsWithStore(StatsResponse):
    store: StoreStats | None = None


WINDOW_HELP = "ISO date or time (UTC when naive), or a period back from now: 24h, 7d"


@router.get("/v1/stats", response_model=StatsWithStore, responses=COMMON_ERRORS)
def stats(
    service: ServiceDep,
    store: StoreDep,
    _caller: PredictCaller,
    start: Annotated[
        str | None, Query(alias="from", description=f"store window start: {WINDOW_HELP}")
    ] = None,
    end: Annotated[str | None, Query(alias="to", description="store window end (default: now)")] = None,
    site: Annotated[str | None, Query(max_length=64, description="store figures of this site only")] = None,
    bucket: Annotated[
        Literal["hour", "day"], Query(description="store figures per UTC hour or day")
    ] = "hour",
) -> Response:
    """Aggregates of the API since start: requests per route and status, errors per code, faces per
    label, latency percentiles over the last requests of each route.

    Only API routes are counted: the web app's pages, its static files, the docs and unknown paths
    are not (``/metrics`` counts them under ``<non-api>`` and ``<unmatched>``).

    ``store``: business figures from the prediction store, which survive restarts: requests, faces
    per label, compliance rate and p50/p95 latency per bucket and site over ``from``-``to`` (default:
    the last 24 hours by hour, or 30 days by day); null when the store is off."""
    snap = service.metrics.snapshot()
    body = StatsWithStore(**snap, queue=service.pool.pending, model_generation=service.generation)
    data = body.model_dump(mode="json", by_alias=True)
    # already JSON-ready and shaped as StoreStats (tests/monitor/test_serve_store.py checks it)
    data["store"] = store_stats(store, start, end, site, bucket)
    return Response(orjson.dumps(data), media_type="application/json")
