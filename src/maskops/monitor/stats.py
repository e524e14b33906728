"""Business stats read from the store: requests, faces per class, compliance rate and latency
percentiles, by hour or day (UTC) and by site.

They come from the hourly rollups the writer keeps (``hourly_requests``, ``hourly_faces``), so a
window over millions of faces reads a few thousand rows. Window bounds are widened to whole hours;
latency percentiles are read from log-spaced bins and are within 5 % of the exact value.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Engine, func, select

from maskops.monitor.records import utc_naive
from maskops.monitor.schema import HourlyFaces, HourlyRequests, bin_latency_ms
from maskops.types import MaskClass

Bucket = Literal["hour", "day"]
BUCKET_HOURS: dict[str, int] = {"hour": 1, "day": 24}
_EPOCH = datetime(1970, 1, 1)
COMPLIANT = MaskClass.WITH_MASK.value
CLASSIFIED = frozenset(MaskClass.names())


@dataclass(frozen=True)
class StatsRow:
    """One bucket and site (``site`` None: untagged requests; in the total: every site).

    Attributes:
        compliance_rate: share of ``with_mask`` among the faces given a class (None without any).
    """

    bucket_start: datetime | None
    site: str | None
    requests: int
    faces: dict[str, int]
    compliance_rate: float | None
    p50_ms: float | None
    p95_ms: float | None

    @property
    def faces_total(self) -> int:
        return sum(self.faces.values())


@dataclass(frozen=True)
class StatsReport:
    start: datetime
    end: datetime
    bucket: str
    site: str | None
    rows: list[StatsRow] = field(default_factory=list)
    total: StatsRow | None = None


def _hour(ts: datetime, *, up: bool = False) -> int:
    seconds = (utc_naive(ts) - _EPOCH).total_seconds()
    return math.ceil(seconds / 3600) if up else math.floor(seconds / 3600)


def percentile_from_bins(bins: Counter[int], q: float) -> float | None:
    """The ``q``-quantile (0-1) of latencies counted per log bin (nearest rank, bin middle)."""
    n = sum(bins.values())
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for k in sorted(bins):
        seen += bins[k]
        if seen >= rank:
            return round(bin_latency_ms(k), 2)
    return None  # pragma: no cover - the loop always reaches n


def _row(start: datetime | None, site: str | None, bins: Counter[int], faces: Counter[str]) -> StatsRow:
    classified = sum(n for label, n in faces.items() if label in CLASSIFIED)
    return StatsRow(
        bucket_start=start,
        site=site,
        requests=sum(bins.values()),
        faces=dict(sorted(faces.items())),
        compliance_rate=faces.get(COMPLIANT, 0) / classified if classified else None,
        p50_ms=percentile_from_bins(bins, 0.50),
        p95_ms=percentile_from_bins(bins, 0.95),
    )


def business_stats(
    engine: Engine,
    start: datetime,
    end: datetime,
    *,
    site: str | None = None,
    bucket: Bucket = "hour",
    source: str | None = None,
) -> StatsReport:
    """Stats of the requests served in ``[start, end)`` (widened to whole hours), per bucket and site.

    Args:
        site: only this site ('' or None: every site, each in its own rows).
        bucket: ``hour`` or ``day`` (UTC days).
        source: only this source (api, batch, stream, watch, detect).

    Raises:
        ValueError: an unknown bucket, or ``end`` before ``start``.
    """
    if bucket not in BUCKET_HOURS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKET_HOURS)}, got {bucket!r}")
    if end < start:
        raise ValueError(f"the window ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    h0, h1 = _hour(start), _hour(end, up=True)
    width = BUCKET_HOURS[bucket]

    def where(table):  # type: ignore[no-untyped-def]
        conds = [table.hour >= h0, table.hour < h1]
        if site:
            conds.append(table.site == site)
        if source:
            conds.append(table.source == source)
        return conds

    rb = (HourlyRequests.hour - HourlyRequests.hour % width).label("b") if width > 1 else HourlyRequests.hour
    fb = (HourlyFaces.hour - HourlyFaces.hour % width).label("b") if width > 1 else HourlyFaces.hour
    req_q = (
        select(rb, HourlyRequests.site, HourlyRequests.latency_bin, func.sum(HourlyRequests.requests))
        .where(*where(HourlyRequests))
        .group_by(rb, HourlyRequests.site, HourlyRequests.latency_bin)
    )
    face_q = (
        select(fb, HourlyFaces.site, HourlyFaces.label, func.sum(HourlyFaces.faces))
        .where(*where(HourlyFaces))
        .group_by(fb, HourlyFaces.site, HourlyFaces.label)
    )
    bins: defaultdict[tuple[int, str], Counter[int]] = defaultdict(Counter)
    faces: defaultdict[tuple[int, str], Counter[str]] = defaultdict(Counter)
    with engine.connect() as conn:
        for b, s, k, n in conn.execute(req_q):
            bins[(b, s)][k] += int(n)
        for b, s, label, n in conn.execute(face_q):
            faces[(b, s)][label] += int(n)
    all_bins: Counter[int] = Counter()
    all_faces: Counter[str] = Counter()
    rows = []
    for key in sorted(set(bins) | set(faces)):
        b, s = key
        all_bins.update(bins[key])
        all_faces.update(faces[key])
        rows.append(_row(_EPOCH + timedelta(hours=b), s or None, bins[key], faces[key]))
    return StatsReport(
        start=_EPOCH + timedelta(hours=h0),
        end=_EPOCH + timedelta(hours=h1),
        bucket=bucket,
        site=site or None,
        rows=rows,
        total=_row(None, site or None, all_bins, all_faces),
    )
