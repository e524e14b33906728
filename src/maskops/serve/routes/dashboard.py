"""The monitoring dashboard: the ``/monitor`` page and the JSON it reads.

- ``GET /v1/monitor/summary``: traffic, p50/p95 latency, class mix and compliance per time bucket
  and per site, and the hard-case queue;
- ``GET /v1/monitor/checks``: the monitoring checks (label-free accuracy estimate beside the
  measured one, drifted features);
- ``GET /v1/monitor/alerts``: the rules firing now and the notifications sent;
- ``GET /v1/monitor/drift/latest``: the latest check's drift results, and reference against
  current histograms of each feature computed on request from a store window and the reference
  profile (the service monitor's, by default ``<models_dir>/<face_model>.reference.json``).

Like ``/v1/stats``, these answer with an empty state when the store is off (``store: "off"``) or
does not answer (``store: "unavailable"``), never an error; a query parameter that does not parse is
a 422 naming it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from maskops.monitor.alert_config import reference_path
from maskops.monitor.dashboard import (
    LatestCheck,
    alert_overview,
    check_dict,
    feature_histograms,
    latest_checks,
    list_checks,
    review_waiting,
    traffic,
)
from maskops.monitor.records import utc_naive
from maskops.monitor.stats import DEFAULT_SPAN, parse_time
from maskops.serve.deps import PredictCaller, SettingsDep
from maskops.serve.errors import COMMON_ERRORS, ApiError
from maskops.serve.recording import StoreDep
from maskops.serve.routes.pages import STATIC_DIR

logger = logging.getLogger(__name__)

router = APIRouter(tags=["monitoring"])

StoreState = Literal["ok", "off", "unavailable"]
T = TypeVar("T")

WINDOW_HELP = "ISO date or time (UTC when naive), or a period back from now: 24h, 7d"
DEFAULT_DRIFT_FACES = 1000
MAX_DEFAULT_DRIFT_FACES = 5000  # the default window's cap: ~0.2 s on SQLite, the page asks every 30 s
MAX_DRIFT_FACES = 100_000

SiteQuery = Annotated[str | None, Query(max_length=64, description="only this site")]
FromQuery = Annotated[
    str | None, Query(alias="from", max_length=64, description=f"window start: {WINDOW_HELP}")
]
ToQuery = Annotated[str | None, Query(alias="to", max_length=64, description="window end (default: now)")]


# --------------------------------------------------------------------------- schemas
class TrafficRow(BaseModel):
    requests: int
    faces: dict[str, int] = Field(description="faces per label, 'uncertain' included")
    faces_total: int
    compliance_rate: float | None = Field(description="share of with_mask among the classified faces")
    p50_ms: float | None
    p95_ms: float | None


class BucketRow(TrafficRow):
    bucket_start: str = Field(description="UTC start of the bucket (ISO)")


class SiteRow(TrafficRow):
    site: str | None = Field(description="null: requests without a site tag")


class SiteCompliance(BaseModel):
    site: str | None
    compliance_rate: list[float | None] = Field(description="one per bucket, in the order of buckets")


class Traffic(BaseModel):
    from_: str = Field(alias="from", description="window start, widened to whole buckets (UTC)")
    to: str
    bucket: str
    site: str | None
    buckets: list[BucketRow] = Field(description="every bucket of the window, empty ones included")
    sites: list[SiteRow]
    compliance_by_site: list[SiteCompliance]
    total: TrafficRow


class ReviewQueue(BaseModel):
    waiting: int = Field(description="hard-case crops without an answer")
    storing_crops: bool = Field(description="MASKOPS_STORE_FACES=hard: new hard cases are kept")


class MonitorSummary(BaseModel):
    store: StoreState
    traffic: Traffic | None = Field(description="null when the store is off or does not answer")
    review_queue: ReviewQueue | None


class CheckOut(BaseModel):
    id: int
    created_at: str
    window_start: str | None
    window_end: str | None
    site: str | None
    n_requests: int
    n_faces: int
    drifted: bool
    drifted_features: list[str]
    expected_accuracy: float | None = Field(description="label-free estimate")
    accuracy_low: float | None
    accuracy_high: float | None
    measured_accuracy: float | None = Field(description="on the faces with feedback")
    n_feedback: int
    reference_accuracy: float | None


class ChecksOut(BaseModel):
    store: StoreState
    checks: list[CheckOut] = Field(description="oldest first")


class FiringAlert(BaseModel):
    rule: str
    key: str | None = Field(description="the site of a per-site rule, else null")
    since: str
    value: float | None
    incident_id: str | None


class AlertEvent(BaseModel):
    id: int
    created_at: str
    rule: str
    key: str | None
    state: str = Field(description="firing or resolved")
    incident_id: str
    value: float | None
    threshold: float | None
    message: str
    delivery: dict[str, Any]


class AlertsOut(BaseModel):
    store: StoreState
    firing: list[FiringAlert]
    events: list[AlertEvent] = Field(description="newest first")


class CheckFeature(BaseModel):
    feature: str
    test: str
    score: float | None
    threshold: float
    drifted: bool


class LatestCheckOut(CheckOut):
    features: list[CheckFeature]


class ReferenceInfo(BaseModel):
    path: str = Field(description="where the profile is looked for")
    available: bool
    accuracy: float | None = None
    note: str | None = None


class WindowInfo(BaseModel):
    since: str | None
    last: int | None
    start: str | None = Field(description="first request of the window")
    end: str | None
    requests: int
    faces: int


class FeatureOut(BaseModel):
    feature: str
    kind: str
    test: str | None
    score: float | None = Field(description="on the window, now (null: not enough data)")
    threshold: float | None
    drifted: bool = Field(description="on the window, now")
    drifted_in_check: bool | None = Field(description="in the latest check (null: not tested there)")
    note: str | None
    histogram: dict[str, Any] | None = Field(
        description="edges (numeric) or categories, with reference and current shares"
    )


class DriftLatest(BaseModel):
    store: StoreState
    reference: ReferenceInfo
    check: LatestCheckOut | None
    window: WindowInfo | None
    features: list[FeatureOut] = Field(description="drifted first")


# --------------------------------------------------------------------------- helpers
def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        422,
        "validation_error",
        f"query.{field}: {message}",
        [{"loc": ["query", field], "msg": message, "type": "value_error"}],
    )


def _time(field: str, text: str, now: datetime) -> datetime:
    try:
        return parse_time(text, now)
    except (ValueError, OverflowError) as exc:  # OverflowError: a period reaching before year 1
        raise _invalid(
            field, str(exc) if isinstance(exc, ValueError) else f"{text!r} is out of range"
        ) from None


def _window(
    start: str | None, end: str | None, default_span: Any | None
) -> tuple[datetime | None, datetime | None]:
    """``from``/``to`` as times (a missing end: now; a missing start: ``default_span`` before the end,
    or open when None). Raises a 422 naming the field."""
    now = utc_naive(datetime.now(UTC))
    t1 = _time("to", end, now) if end else now
    if start:
        t0: datetime | None = _time("from", start, now)
    else:
        t0 = None if default_span is None else t1 - default_span
    if t0 is not None and t1 < t0:
        raise _invalid("to", f"the window ends ({t1.isoformat()}) before it starts ({t0.isoformat()})")
    return t0, t1


def _read(engine: Engine, what: str, fn: Callable[[Engine], T]) -> T | None:
    """``fn(engine)``, or None (logged) when the store does not answer."""
    try:
        return fn(engine)
    except SQLAlchemyError as exc:
        logger.warning("%s unavailable: %s", what, str(exc).splitlines()[0])
        return None


# --------------------------------------------------------------------------- routes
@router.get("/monitor", include_in_schema=False)
def monitor_page() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "monitor.html", media_type="text/html", headers={"Cache-Control": "no-cache"}
    )


@router.get("/v1/monitor/summary", response_model=MonitorSummary, responses=COMMON_ERRORS)
def summary(
    store: StoreDep,
    _caller: PredictCaller,
    start: FromQuery = None,
    end: ToQuery = None,
    site: SiteQuery = None,
    bucket: Annotated[Literal["hour", "day"], Query(description="UTC hours or days")] = "hour",
) -> MonitorSummary:
    """Traffic of the window per bucket (requests, p50/p95 latency, faces per class, compliance),
    per site, and the compliance per site and bucket; the hard-case review queue.

    Default window: the last 24 hours by hour, or 30 days by day (widened to whole buckets)."""
    t0, t1 = _window(start, end, DEFAULT_SPAN[bucket])
    assert t0 is not None and t1 is not None
    if store is None:
        return MonitorSummary(store="off", traffic=None, review_queue=None)
    try:
        report = traffic(store.engine, t0, t1, site=site, bucket=bucket)
    except ValueError as exc:  # too many buckets
        raise _invalid("from", str(exc)) from None
    except SQLAlchemyError as exc:
        logger.warning("monitor summary unavailable: %s", str(exc).splitlines()[0])
        return MonitorSummary(store="unavailable", traffic=None, review_queue=None)
    waiting = _read(store.engine, "review queue", review_waiting)
    return MonitorSummary(
        store="ok",
        traffic=Traffic.model_validate(report.to_dict()),
        review_queue=None
        if waiting is None
        else ReviewQueue(waiting=waiting, storing_crops=store.hard_cases is not None),
    )


@router.get("/v1/monitor/checks", response_model=ChecksOut, responses=COMMON_ERRORS)
def checks(
    store: StoreDep,
    _caller: PredictCaller,
    start: FromQuery = None,
    end: ToQuery = None,
    site: SiteQuery = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="the latest checks kept")] = 500,
) -> ChecksOut:
    """The monitoring checks made in the window (default: every one), oldest first: the label-free
    accuracy estimate with its interval beside the measured accuracy, and the drifted features."""
    t0, t1 = _window(start, end, None)
    if store is None:
        return ChecksOut(store="off", checks=[])
    rows = _read(store.engine, "monitor checks", lambda e: list_checks(e, t0, t1, site=site, limit=limit))
    if rows is None:
        return ChecksOut(store="unavailable", checks=[])
    return ChecksOut(store="ok", checks=[CheckOut.model_validate(r) for r in rows])


@router.get("/v1/monitor/alerts", response_model=AlertsOut, responses=COMMON_ERRORS)
def alerts(
    store: StoreDep,
    _caller: PredictCaller,
    start: FromQuery = None,
    end: ToQuery = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="the latest notifications kept")] = 200,
) -> AlertsOut:
    """The alert rules firing now, and the notifications (firing, resolved) sent in the window
    (default: every one), newest first."""
    t0, t1 = _window(start, end, None)
    if store is None:
        return AlertsOut(store="off", firing=[], events=[])
    data = _read(store.engine, "alerts", lambda e: alert_overview(e, t0, t1, limit=limit))
    if data is None:
        return AlertsOut(store="unavailable", firing=[], events=[])
    return AlertsOut.model_validate({"store": "ok", **data})


def _reference_path(request: Request, settings: Any) -> Path:
    """The profile the service's monitor tests against (its config's ``reference``), else the shipped
    model's ``<models_dir>/<face_model>.reference.json`` (the monitor's default too)."""
    loop = getattr(getattr(request.app.state, "monitor", None), "loop", None)
    config = getattr(loop, "config", None)
    if config is not None:
        return reference_path(config, Path(settings.models_dir), settings.face_model)
    return Path(settings.models_dir) / f"{settings.face_model}.reference.json"


def _latest_out(latest: LatestCheck | None) -> LatestCheckOut | None:
    if latest is None:
        return None
    features = [
        CheckFeature(feature=r.feature, test=r.test, score=r.score, threshold=r.threshold, drifted=r.drifted)
        for r in latest.results
    ]
    drifted = [f.feature for f in features if f.drifted]
    return LatestCheckOut(**check_dict(latest.check, drifted), features=features)


@router.get("/v1/monitor/drift/latest", response_model=DriftLatest, responses=COMMON_ERRORS)
def drift_latest(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    _caller: PredictCaller,
    site: SiteQuery = None,
    since: Annotated[
        str | None, Query(max_length=64, description=f"window: the requests since this ({WINDOW_HELP})")
    ] = None,
    last: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_DRIFT_FACES,
            description="window: the latest N faces (default: the latest check's size up to 5000, else 1000)",
        ),
    ] = None,
    bins: Annotated[int, Query(ge=2, le=100, description="bins of each numeric histogram")] = 20,
) -> DriftLatest:
    """Drift of each feature: the latest check's results (of ``site`` when given, else the latest
    check), and reference against current histograms with the drift test's answer on a window read
    now (``since`` or ``last``; by default as many of the latest faces as the latest check had, at
    most 5000, else 1000 faces). Without a reference profile the histograms are left out and ``reference.note`` says so."""
    if since is not None and last is not None:
        raise _invalid("last", "give either since or last, not both")
    since_t = _time("since", since, utc_naive(datetime.now(UTC))) if since else None
    path = _reference_path(request, settings)
    reference = ReferenceInfo(path=str(path), available=False)
    if store is None:
        reference.note = "the prediction store is off (MASKOPS_STORE_PREDICTIONS=false)"
        return DriftLatest(store="off", reference=reference, check=None, window=None, features=[])
    checks_by_site = _read(store.engine, "latest check", lambda e: latest_checks(e, site))
    if checks_by_site is None:
        return DriftLatest(store="unavailable", reference=reference, check=None, window=None, features=[])
    latest = max(checks_by_site.values(), key=lambda c: c.check.id, default=None)
    check = _latest_out(latest)
    in_check = {f.feature: f.drifted for f in check.features} if check else {}

    profile, note = _load_profile(path)
    reference.note = note
    if profile is None:
        features = [
            FeatureOut(
                feature=f.feature,
                kind="",
                test=f.test,
                score=f.score,
                threshold=f.threshold,
                drifted=f.drifted,
                drifted_in_check=f.drifted,
                note=None,
                histogram=None,
            )
            for f in (check.features if check else [])
        ]
        return DriftLatest(
            store="ok", reference=reference, check=check, window=None, features=_ordered(features)
        )
    reference.available, reference.accuracy = True, profile.accuracy
    if since_t is None and last is None:
        last = (
            min(MAX_DRIFT_FACES, latest.check.n_faces)
            if latest and latest.check.n_faces
            else DEFAULT_DRIFT_FACES
        )
    computed = _read(store.engine, "drift window", lambda e: _compare(e, profile, since_t, last, site, bins))
    if computed is None:
        return DriftLatest(store="unavailable", reference=reference, check=check, window=None, features=[])
    window, features = computed
    for f in features:
        f.drifted_in_check = in_check.get(f.feature)
    return DriftLatest(
        store="ok",
        reference=reference,
        check=check,
        window=WindowInfo(since=None if since_t is None else since_t.isoformat() + "Z", last=last, **window),
        features=_ordered(features),
    )


def _finite(x: float | None) -> float | None:
    """None for NaN or infinity (not JSON)."""
    return x if x is not None and math.isfinite(x) else None


def _ordered(features: list[FeatureOut]) -> list[FeatureOut]:
    return sorted(features, key=lambda f: (not (f.drifted or f.drifted_in_check), f.feature))


def _load_profile(path: Path) -> tuple[Any, str | None]:
    """(the reference profile or None, why there is none)."""
    # reference.py imports scipy (the drift tests): only when the drift panel is asked for
    from maskops.monitor.reference import ReferenceProfile

    if not path.is_file():
        return None, (
            f"no reference profile at {path.name}: without one the drift panel has no histograms "
            "(make it with `maskops monitor reference`)"
        )
    try:
        return ReferenceProfile.load(path), None
    except (OSError, ValueError) as exc:
        logger.warning("reference profile %s unreadable: %s", path, exc)
        return None, f"the reference profile {path.name} could not be read: {exc}"


def _compare(
    engine: Engine, profile: Any, since: datetime | None, last: int | None, site: str | None, bins: int
) -> tuple[dict[str, Any], list[FeatureOut]]:
    """The window's drift against ``profile`` and the histograms of each feature."""
    from maskops.monitor.reference import compare_to_reference
    from maskops.monitor.window import load_window

    w = load_window(engine, since=since, last=None if since else last, site=site)
    results = compare_to_reference(profile, numeric=w.numeric, categorical=w.categorical)
    hists = feature_histograms(profile, w.numeric, w.categorical, bins)
    features = [
        FeatureOut(
            feature=f.feature,
            kind=f.kind,
            test=f.result.test,
            score=_finite(f.result.score),
            threshold=_finite(f.result.threshold),
            drifted=f.result.drifted,
            drifted_in_check=None,
            note=f.result.note,
            histogram=hists.get(f.feature),
        )
        for f in results
    ]
    window = {
        "start": None if w.start is None else w.start.isoformat() + "Z",
        "end": None if w.end is None else w.end.isoformat() + "Z",
        "requests": w.n_requests,
        "faces": w.n_faces,
    }
    return window, features
