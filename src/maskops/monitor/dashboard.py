"""What the monitoring dashboard (``/monitor``) and its Prometheus gauges read from the store.

- ``traffic``: requests, p50/p95 latency, faces per class and the compliance rate per time bucket,
  per site, and per bucket and site, from the rollups (``hourly_*`` / ``daily_*``): a few
  thousand rows whatever the traffic;
- ``list_checks`` / ``latest_checks``: the monitoring checks (``monitor_checks``) with the features
  their drift tests flagged (``drift_results``);
- ``alert_overview``: the rules firing now (``alert_states``) and the notifications sent
  (``alert_events``);
- ``feature_histograms``: reference against current histograms of each feature, from a reference
  profile and a store window (a pure function);
- ``gauge_snapshot``: the latest check per site, the firing alerts per rule and the review queue,
  in a handful of indexed queries (what ``/metrics`` reads).

Every time is naive UTC, as in the store.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from maskops.monitor.records import utc_naive
from maskops.monitor.review import next_for_review
from maskops.monitor.schema import (
    AlertEventRow,
    AlertStateRow,
    DailyFaces,
    DailyRequests,
    DriftResultRow,
    HourlyFaces,
    HourlyRequests,
    MonitorCheckRow,
)
from maskops.monitor.stats import BUCKET_HOURS, CLASSIFIED, COMPLIANT, percentile_from_bins

if TYPE_CHECKING:  # reference.py imports scipy, which the serving install may lack
    from maskops.monitor.reference import ReferenceProfile

_EPOCH = datetime(1970, 1, 1)
MAX_BUCKETS = 1000  # hour buckets over ~6 weeks; longer windows read day buckets
HISTOGRAM_BINS = 20
_RECENT_CHECKS = 200  # the latest check per site is looked for among these


# --------------------------------------------------------------------------- traffic
@dataclass
class TrafficRow:
    """Requests, faces per label and latency bins of one bucket, site, or bucket and site."""

    requests: int = 0
    faces: Counter[str] = field(default_factory=Counter)
    latency: Counter[int] = field(default_factory=Counter)

    @property
    def compliance_rate(self) -> float | None:
        classified = sum(n for label, n in self.faces.items() if label in CLASSIFIED)
        return self.faces.get(COMPLIANT, 0) / classified if classified else None

    def to_dict(self) -> dict[str, Any]:
        rate = self.compliance_rate
        return {
            "requests": self.requests,
            "faces": dict(sorted(self.faces.items())),
            "faces_total": sum(self.faces.values()),
            "compliance_rate": None if rate is None else round(rate, 4),
            "p50_ms": percentile_from_bins(self.latency, 0.50),
            "p95_ms": percentile_from_bins(self.latency, 0.95),
        }


@dataclass(frozen=True)
class TrafficReport:
    """Traffic over ``[start, end)`` (whole buckets).

    Attributes:
        buckets: one row per bucket of the window, empty buckets included (all sites together).
        sites: one row per site seen in the window ('' for untagged requests).
        site_buckets: site -> one compliance rate per bucket (None where it had no classified face).
        total: the whole window.
    """

    start: datetime
    end: datetime
    bucket: str
    site: str | None
    bucket_starts: list[datetime]
    buckets: list[TrafficRow]
    sites: dict[str, TrafficRow]
    site_buckets: dict[str, list[float | None]]
    total: TrafficRow

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO UTC with ``Z``; the untagged site as null)."""
        return {
            "from": _iso(self.start),
            "to": _iso(self.end),
            "bucket": self.bucket,
            "site": self.site,
            "buckets": [
                {"bucket_start": _iso(t), **row.to_dict()}
                for t, row in zip(self.bucket_starts, self.buckets, strict=True)
            ],
            "sites": [{"site": s or None, **row.to_dict()} for s, row in sorted(self.sites.items())],
            "compliance_by_site": [
                {"site": s or None, "compliance_rate": [None if r is None else round(r, 4) for r in rates]}
                for s, rates in sorted(self.site_buckets.items())
            ],
            "total": self.total.to_dict(),
        }


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat() + "Z"


def bucket_range(start: datetime, end: datetime, bucket: str) -> tuple[int, int]:
    """The window ``[start, end)`` widened to whole buckets, as bucket numbers since 1970 ``[p0, p1)``.

    Raises:
        ValueError: an unknown bucket, an end before the start, or more than ``MAX_BUCKETS`` buckets.
    """
    if bucket not in BUCKET_HOURS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKET_HOURS)}, got {bucket!r}")
    start, end = utc_naive(start), utc_naive(end)
    if end < start:
        raise ValueError(f"the window ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    hours = BUCKET_HOURS[bucket]
    h0 = math.floor((start - _EPOCH).total_seconds() / 3600)
    h1 = math.ceil((end - _EPOCH).total_seconds() / 3600)
    p0, p1 = h0 // hours, max(-(-h1 // hours), h0 // hours + 1)
    if p1 - p0 > MAX_BUCKETS:
        raise ValueError(
            f"the window spans {p1 - p0} {bucket} buckets, over the limit of {MAX_BUCKETS}: "
            f"shorten it{' or use bucket=day' if bucket == 'hour' else ''}"
        )
    return p0, p1


def traffic(
    engine: Engine, start: datetime, end: datetime, *, site: str | None = None, bucket: str = "hour"
) -> TrafficReport:
    """Traffic of ``[start, end)`` per bucket, per site and per bucket and site (``TrafficReport``).

    Args:
        site: only this site (None: every site).
        bucket: ``hour`` or ``day`` (UTC).

    Raises:
        ValueError: see ``bucket_range``.
    """
    p0, p1 = bucket_range(start, end, bucket)
    hours = BUCKET_HOURS[bucket]
    req_t, face_t = (HourlyRequests, HourlyFaces) if bucket == "hour" else (DailyRequests, DailyFaces)
    period = "hour" if bucket == "hour" else "day"
    rp, fp = getattr(req_t, period), getattr(face_t, period)

    def where(table: Any, col: Any) -> list[Any]:
        conds = [col >= p0, col < p1]
        if site:
            conds.append(table.site == site)
        return conds

    n = func.sum(req_t.requests)
    by_bucket = select(rp, req_t.latency_bin, n).where(*where(req_t, rp)).group_by(rp, req_t.latency_bin)
    by_site = (
        select(req_t.site, req_t.latency_bin, n)
        .where(*where(req_t, rp))
        .group_by(req_t.site, req_t.latency_bin)
    )
    faces_q = (
        select(fp, face_t.site, face_t.label, func.sum(face_t.faces))
        .where(*where(face_t, fp))
        .group_by(fp, face_t.site, face_t.label)
    )
    rows = [TrafficRow() for _ in range(p1 - p0)]
    sites: defaultdict[str, TrafficRow] = defaultdict(TrafficRow)
    site_faces: defaultdict[str, dict[int, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    total = TrafficRow()
    with engine.connect() as conn:
        for b, k, count in conn.execute(by_bucket):
            row = rows[b - p0]
            row.requests += int(count)
            row.latency[k] += int(count)
            total.requests += int(count)
            total.latency[k] += int(count)
        for s, k, count in conn.execute(by_site):
            sites[s].requests += int(count)
            sites[s].latency[k] += int(count)
        for b, s, label, count in conn.execute(faces_q):
            rows[b - p0].faces[label] += int(count)
            sites[s].faces[label] += int(count)
            site_faces[s][b - p0][label] += int(count)
            total.faces[label] += int(count)
    site_buckets = {
        s: [TrafficRow(faces=per[i]).compliance_rate if i in per else None for i in range(p1 - p0)]
        for s, per in site_faces.items()
    }
    return TrafficReport(
        start=_EPOCH + timedelta(hours=p0 * hours),
        end=_EPOCH + timedelta(hours=p1 * hours),
        bucket=bucket,
        site=site or None,
        bucket_starts=[_EPOCH + timedelta(hours=p * hours) for p in range(p0, p1)],
        buckets=rows,
        sites=dict(sites),
        site_buckets=site_buckets,
        total=total,
    )


def review_waiting(engine: Engine) -> int:
    """Hard-case crops waiting for an answer (the review queue)."""
    item = next_for_review(engine)
    return 0 if item is None else item.waiting


# --------------------------------------------------------------------------- checks
def check_dict(row: MonitorCheckRow, drifted: Sequence[str] = ()) -> dict[str, Any]:
    """A check as JSON-ready data (without its full report)."""
    return {
        "id": row.id,
        "created_at": _iso(row.created_at),
        "window_start": _iso(row.window_start),
        "window_end": _iso(row.window_end),
        "site": row.site,
        "n_requests": row.n_requests,
        "n_faces": row.n_faces,
        "drifted": bool(row.drifted),
        "drifted_features": list(drifted),
        "expected_accuracy": row.expected_accuracy,
        "accuracy_low": row.accuracy_low,
        "accuracy_high": row.accuracy_high,
        "measured_accuracy": row.measured_accuracy,
        "n_feedback": row.n_feedback,
        "reference_accuracy": row.reference_accuracy,
    }


def _drifted_features(conn: Session, ids: Sequence[int]) -> dict[int, list[str]]:
    out: defaultdict[int, list[str]] = defaultdict(list)
    for i in range(0, len(ids), 500):  # bounded IN lists
        query = (
            select(DriftResultRow.check_id, DriftResultRow.feature)
            .where(DriftResultRow.check_id.in_(ids[i : i + 500]), DriftResultRow.drifted.is_(True))
            .order_by(DriftResultRow.check_id, DriftResultRow.feature)
        )
        for check_id, feature in conn.execute(query):
            out[check_id].append(feature)
    return out


def list_checks(
    engine: Engine,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    site: str | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """The latest ``limit`` checks made in ``[start, end)`` (of ``site`` when given), oldest first."""
    conds = []
    if start is not None:
        conds.append(MonitorCheckRow.created_at >= utc_naive(start))
    if end is not None:
        conds.append(MonitorCheckRow.created_at < utc_naive(end))
    if site is not None:
        conds.append(MonitorCheckRow.site == site)
    query = (
        select(MonitorCheckRow)
        .where(*conds)
        .order_by(MonitorCheckRow.created_at.desc(), MonitorCheckRow.id.desc())
        .limit(limit)
    )
    with Session(engine) as session:
        rows = list(reversed(session.scalars(query).all()))
        drifted = _drifted_features(session, [r.id for r in rows])
    return [check_dict(r, drifted.get(r.id, ())) for r in rows]


@dataclass(frozen=True)
class LatestCheck:
    """The latest check of a site ('' for checks over all traffic) and its drift results."""

    check: MonitorCheckRow
    results: list[DriftResultRow]


def latest_checks(engine: Engine, site: str | None = None) -> dict[str, LatestCheck]:
    """The latest check per site among the recent ones ('' keys checks over all traffic); only
    ``site``'s when given."""
    query = select(MonitorCheckRow).order_by(MonitorCheckRow.id.desc()).limit(_RECENT_CHECKS)
    if site is not None:
        query = query.where(MonitorCheckRow.site == site)
    latest: dict[str, MonitorCheckRow] = {}
    with Session(engine) as session:
        for row in session.scalars(query):
            latest.setdefault(row.site or "", row)
        results: defaultdict[int, list[DriftResultRow]] = defaultdict(list)
        if latest:
            ids = [r.id for r in latest.values()]
            query_results = (
                select(DriftResultRow)
                .where(DriftResultRow.check_id.in_(ids))
                .order_by(DriftResultRow.feature)
            )
            for r in session.scalars(query_results):
                results[r.check_id].append(r)
    return {s: LatestCheck(c, results.get(c.id, [])) for s, c in latest.items()}


# --------------------------------------------------------------------------- alerts
def alert_overview(
    engine: Engine, start: datetime | None = None, end: datetime | None = None, *, limit: int = 200
) -> dict[str, Any]:
    """The rules firing now and the latest ``limit`` notifications in ``[start, end)``, newest first."""
    conds = []
    if start is not None:
        conds.append(AlertEventRow.created_at >= utc_naive(start))
    if end is not None:
        conds.append(AlertEventRow.created_at < utc_naive(end))
    events_q = (
        select(AlertEventRow)
        .where(*conds)
        .order_by(AlertEventRow.created_at.desc(), AlertEventRow.id.desc())
        .limit(limit)
    )
    firing_q = (
        select(AlertStateRow)
        .where(AlertStateRow.firing.is_(True))
        .order_by(AlertStateRow.since.desc(), AlertStateRow.rule, AlertStateRow.key)
    )
    with Session(engine) as session:
        firing = session.scalars(firing_q).all()
        events = session.scalars(events_q).all()
    return {
        "firing": [
            {
                "rule": s.rule,
                "key": s.key or None,
                "since": _iso(s.since),
                "value": s.value,
                "incident_id": s.incident_id,
            }
            for s in firing
        ],
        "events": [
            {
                "id": e.id,
                "created_at": _iso(e.created_at),
                "rule": e.rule,
                "key": e.key or None,
                "state": e.state,
                "incident_id": e.incident_id,
                "value": e.value,
                "threshold": e.threshold,
                "message": e.message,
                "delivery": e.delivery,
            }
            for e in events
        ],
    }


# --------------------------------------------------------------------------- histograms
def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return [round(float(c / total), 6) if total else 0.0 for c in counts]


def numeric_histogram(
    reference: np.ndarray, current: np.ndarray, bins: int = HISTOGRAM_BINS
) -> dict[str, Any] | None:
    """Reference and current shares over common bins.

    The bins span the 1st to 99th percentile of both samples together; values beyond fall in the end
    bins, so one outlier does not squash every other bin. None when neither sample has a finite value.
    """
    ref = np.asarray(reference, dtype=np.float64).ravel()
    cur = np.asarray(current, dtype=np.float64).ravel()
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    both = np.concatenate([ref, cur])
    if both.size == 0:
        return None
    lo, hi = (float(v) for v in np.percentile(both, [1, 99]))
    if not hi > lo:
        lo, hi = float(both.min()), float(both.max())
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5  # one value everywhere: one bin around it
        bins = 1
    edges = np.linspace(lo, hi, bins + 1)

    def counts(v: np.ndarray) -> np.ndarray:
        return np.histogram(np.clip(v, lo, hi), bins=edges)[0]

    return {
        "edges": [round(float(e), 6) for e in edges],
        "reference": _shares(counts(ref)),
        "current": _shares(counts(cur)),
        "n_reference": int(ref.size),
        "n_current": int(cur.size),
    }


def categorical_histogram(reference: Mapping[str, int], current: Sequence[str]) -> dict[str, Any]:
    """Reference and current shares per category (the reference's categories first)."""
    cur = Counter(str(v) for v in current if v is not None)
    cats = list(reference) + sorted(c for c in cur if c not in reference)
    return {
        "categories": cats,
        "reference": _shares(np.array([reference.get(c, 0) for c in cats], dtype=np.float64)),
        "current": _shares(np.array([cur.get(c, 0) for c in cats], dtype=np.float64)),
        "n_reference": int(sum(reference.values())),
        "n_current": int(sum(cur.values())),
    }


def feature_histograms(
    profile: ReferenceProfile,
    numeric: Mapping[str, np.ndarray],
    categorical: Mapping[str, Sequence[str]],
    bins: int = HISTOGRAM_BINS,
) -> dict[str, dict[str, Any]]:
    """Reference against current histograms of every feature in both the profile and the window.

    A numeric reference is read through its sketch's stand-in sample (``NumericSketch.sample``, what
    the drift tests compare too).
    """
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(profile.numeric) & set(numeric)):
        hist = numeric_histogram(profile.numeric[name].sample(), numeric[name], bins)
        if hist is not None:
            out[name] = {"kind": "numeric", **hist}
    for name in sorted(set(profile.categorical) & set(categorical)):
        out[name] = {
            "kind": "categorical",
            **categorical_histogram(profile.categorical[name], categorical[name]),
        }
    return out


# --------------------------------------------------------------------------- gauges
@dataclass(frozen=True)
class GaugeSnapshot:
    """What the monitoring gauges show (see ``gauge_snapshot``)."""

    checks: dict[str, LatestCheck]
    firing: dict[str, int]
    review_waiting: int


def gauge_snapshot(engine: Engine) -> GaugeSnapshot:
    """The latest check per site, keys firing per rule (0 for rules with a state and none firing),
    and the review queue size."""
    firing_q = select(AlertStateRow.rule, AlertStateRow.firing, func.count()).group_by(
        AlertStateRow.rule, AlertStateRow.firing
    )
    firing: Counter[str] = Counter()
    with engine.connect() as conn:
        for rule, is_firing, n in conn.execute(firing_q):
            firing[rule] += int(n) if is_firing else 0
    return GaugeSnapshot(latest_checks(engine), dict(sorted(firing.items())), review_waiting(engine))
