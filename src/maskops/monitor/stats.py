"""Business stats read from the store: requests, faces per class, compliance rate and latency
percentiles, by hour or day (UTC) and by site.

They come from the rollups the writer keeps (``hourly_*`` for hour buckets, ``daily_*`` for day
buckets), so a window over millions of faces reads a few thousand rows. Window bounds are widened to
whole buckets (hours, or UTC days). Latency percentiles (nearest rank) are read
off log-spaced bins and are within 5 % of the exact value; the bins are summed in numpy.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal

import numpy as np
from sqlalchemy import Connection, Engine, String, case, cast, func, literal_column, select

from maskops.monitor.records import utc_naive
from maskops.monitor.schema import DailyFaces, DailyRequests, HourlyFaces, HourlyRequests, bin_latency_ms
from maskops.types import MaskClass

Bucket = Literal["hour", "day"]
BUCKET_HOURS: dict[str, int] = {"hour": 1, "day": 24}
_EPOCH = datetime(1970, 1, 1)
COMPLIANT = MaskClass.WITH_MASK.value
CLASSIFIED = frozenset(MaskClass.names())


@dataclass(slots=True)  # not frozen: a month by hour is 5,760 rows, and frozen init is 4x slower
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


@lru_cache(maxsize=4096)
def _bin_ms(k: int) -> float:
    return round(bin_latency_ms(k), 2)


def _row(
    start: datetime | None,
    site: str | None,
    latency: tuple[int, int | None, int | None] | None,
    faces: Mapping[str, int],
) -> StatsRow:
    """``faces`` in label order (as ``_faces`` gives them)."""
    classified = 0
    for label, n in faces.items():
        if label in CLASSIFIED:
            classified += n
    n, p50, p95 = latency or (0, None, None)
    return StatsRow(
        bucket_start=start,
        site=site,
        requests=n,
        faces=dict(faces),
        compliance_rate=faces.get(COMPLIANT, 0) / classified if classified else None,
        p50_ms=None if p50 is None else _bin_ms(p50),
        p95_ms=None if p95 is None else _bin_ms(p95),
    )


_BIN_OFFSET = 2**20  # latency bins from -2**20 up pack with their count into one integer:
_PAIR = 2**32  # (bin + _BIN_OFFSET) * _PAIR + requests, a rollup row holding under 2**32 requests


def latency_percentile_bins(
    groups: np.ndarray, bins: np.ndarray, counts: np.ndarray, qs: tuple[int, ...] = (50, 95)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: the number of requests and, for each percentile in ``qs`` (0-100), the first
    latency bin holding the nearest-rank sample.

    Args:
        groups: an integer group id per row (any order).
        bins: the latency bin of each row.
        counts: the requests in each row (positive).

    Returns:
        ``(group ids, totals, bins)``: sorted group ids, requests per group and a ``(len(qs), groups)``
        array of bins.
    """
    if len(groups) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((len(qs), 0), dtype=np.int64)
    g_low, k_low = int(groups.min()), int(bins.min())
    span = int(bins.max()) - k_low + 1
    if (int(groups.max()) - g_low + 1) * span < 2**62:  # one int64 key: one sort, not lexsort's two
        order = np.argsort((groups - g_low) * span + (bins - k_low), kind="stable")
    else:  # pragma: no cover - a span of bins no latency reaches
        order = np.lexsort((bins, groups))
    g, k, n = groups[order], bins[order], counts[order].astype(np.int64)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    totals = np.add.reduceat(n, starts)
    cum = np.cumsum(n)
    before = cum[starts] - n[starts]  # requests of the earlier groups
    out = np.empty((len(qs), len(starts)), dtype=np.int64)
    for i, q in enumerate(qs):
        rank = np.maximum(1, -(-(totals * q) // 100))  # ceil(q / 100 * total), integers only
        out[i] = k[np.searchsorted(cum, before + rank, side="left")]
    return g[starts], totals, out


def _bin_totals(
    bins: np.ndarray, counts: np.ndarray, qs: tuple[int, ...] = (50, 95)
) -> tuple[int, list[int]]:
    """The requests and, for each percentile in ``qs``, the nearest-rank bin of rows summed as one
    group (a bincount over the bin range: no sort)."""
    low = int(bins.min())
    per_bin = np.bincount(bins - low, weights=counts).astype(np.int64)  # exact below 2**53 requests
    cum = np.cumsum(per_bin)
    total = int(cum[-1])
    ranks = [max(1, -(-(total * q) // 100)) for q in qs]
    return total, [low + int(i) for i in np.searchsorted(cum, ranks, side="left")]


def _latency(
    conn: Connection, t: type[HourlyRequests | DailyRequests], period: str, where: Callable
) -> tuple[dict[tuple[int, str], tuple[int, int | None, int | None]], tuple[int, int | None, int | None]]:
    """Requests and p50/p95 latency bins per (bucket, site), and over the whole window.

    The database returns one row per (bucket, site): the number of rollup rows and their
    ``(bin, requests)`` pairs packed into one integer each, joined as one string (``group_concat`` /
    ``string_agg``). The strings are parsed in one numpy call and the percentiles found in numpy:
    building a Python row for each of the ~170,000 rollup rows of a month by hour for all sites would
    cost more than the query itself."""
    col = getattr(t, period)
    packed = (t.latency_bin + literal_column(str(_BIN_OFFSET))) * literal_column(str(_PAIR)) + t.requests
    rows = conn.execute(
        select(col, t.site, func.count(), func.aggregate_strings(cast(packed, String), ","))
        .where(*where(t))
        .group_by(col, t.site)
    ).all()
    if not rows:
        return {}, (0, None, None)
    sizes = np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows))
    flat = np.fromstring(",".join([r[3] for r in rows]), dtype=np.int64, sep=",")
    if len(flat) != int(sizes.sum()):  # pragma: no cover - the database wrote every number
        raise RuntimeError(f"latency rollup: parsed {len(flat)} (bin, requests) pairs of {int(sizes.sum())}")
    bins, counts = flat // _PAIR - _BIN_OFFSET, flat % _PAIR
    # every row holds at least one pair, so the group ids come back as 0 .. len(rows) - 1
    _, totals, pct = latency_percentile_bins(np.repeat(np.arange(len(rows)), sizes), bins, counts)
    per: dict[tuple[int, str], tuple[int, int | None, int | None]] = dict(
        zip(
            [(r[0], r[1]) for r in rows],
            zip(totals.tolist(), pct[0].tolist(), pct[1].tolist(), strict=True),
            strict=True,
        )
    )
    total, (p50, p95) = _bin_totals(bins, counts)
    return per, (total, p50, p95)


def _faces(
    conn: Connection, t: type[HourlyFaces | DailyFaces], period: str, where: Callable
) -> tuple[dict[tuple[int, str], dict[str, int]], dict[str, int]]:
    """Faces per label per (bucket, site), and over the whole window.

    One row per (bucket, site), grouped in primary-key order (no sort), with a column per label of
    ``FACE_COLUMNS`` and one for the faces of any other label, which are then read per label (none
    in the store as the service writes it)."""
    col = getattr(t, period)
    known = sorted(FACE_COLUMNS)  # each bucket's dict comes out in label order
    other = func.sum(case((t.label.not_in(known), t.faces), else_=0))
    per_label = [func.sum(case((t.label == name, t.faces), else_=0)) for name in known]
    rows = conn.execute(select(col, t.site, other, *per_label).where(*where(t)).group_by(col, t.site)).all()
    faces = {(r[0], r[1]): {name: n for name, n in zip(known, r[3:], strict=True) if n} for r in rows}
    columns = list(zip(*rows, strict=True))[3:] if rows else [() for _ in known]
    totals = {name: n for name, column in zip(known, columns, strict=True) if (n := sum(column))}
    if any(r[2] for r in rows):
        q = (
            select(col, t.site, t.label, func.sum(t.faces))
            .where(*where(t), t.label.not_in(known))
            .group_by(col, t.site, t.label)
        )
        for b, s, label, n in conn.execute(q):
            counts = faces[(b, s)]
            counts[label] = int(n)
            faces[(b, s)] = dict(sorted(counts.items()))
            totals[label] = totals.get(label, 0) + int(n)
        totals = dict(sorted(totals.items()))
    return faces, totals


def business_stats(
    engine: Engine,
    start: datetime,
    end: datetime,
    *,
    site: str | None = None,
    bucket: Bucket = "hour",
    source: str | None = None,
) -> StatsReport:
    """Stats of the requests served in ``[start, end)`` (widened to whole buckets), per bucket and site.

    Args:
        site: only this site ('' or None: every site, each in its own rows).
        bucket: ``hour`` or ``day`` (UTC days).
        source: only this source (api, batch, stream, watch, detect, classify).

    Raises:
        ValueError: an unknown bucket, or ``end`` before ``start``.
    """
    if bucket not in BUCKET_HOURS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKET_HOURS)}, got {bucket!r}")
    if end < start:
        raise ValueError(f"the window ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    width = BUCKET_HOURS[bucket]
    p0, p1 = _hour(start) // width, -(-_hour(end, up=True) // width)  # whole buckets
    req_t, face_t = (HourlyRequests, HourlyFaces) if bucket == "hour" else (DailyRequests, DailyFaces)
    period = "hour" if bucket == "hour" else "day"

    def where(table):  # type: ignore[no-untyped-def]
        col = getattr(table, period)
        conds = [col >= p0, col < p1]
        if site:
            conds.append(table.site == site)
        if source:
            conds.append(table.source == source)
        return conds

    with engine.connect() as conn:
        latency, total_latency = _latency(conn, req_t, period, where)
        faces, all_faces = _faces(conn, face_t, period, where)
    keys = sorted(latency.keys() | faces.keys())
    bucket_start = {b: _EPOCH + timedelta(hours=b * width) for b in {key[0] for key in keys}}
    no_faces: dict[str, int] = {}
    rows = [
        _row(bucket_start[key[0]], key[1] or None, latency.get(key), faces.get(key, no_faces)) for key in keys
    ]
    total_n = total_latency[0]
    return StatsReport(
        start=_EPOCH + timedelta(hours=p0 * width),
        end=_EPOCH + timedelta(hours=p1 * width),
        bucket=bucket,
        site=site or None,
        rows=rows,
        total=_row(None, site or None, (int(total_n), *total_latency[1:]) if total_n else None, all_faces),
    )


FACE_COLUMNS = (*MaskClass.names(), "uncertain")
DEFAULT_SPAN = {"hour": timedelta(hours=24), "day": timedelta(days=30)}


def parse_time(text: str, now: datetime) -> datetime:
    """A window bound: an ISO date or time (naive means UTC), or a period back from ``now``
    (``24h``, ``7d``, ``90m``, ``2w``).

    Raises:
        ValueError: neither form.
    """
    from maskops.monitor.prune import parse_period

    try:
        return now - parse_period(text)
    except OverflowError:
        raise ValueError(f"the period {text!r} reaches back before year 1") from None
    except ValueError:
        pass
    try:
        return utc_naive(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(
            f"expected an ISO date or time (2026-12-01, 2026-12-01T09:00) or a period back from now "
            f"(24h, 7d), got {text!r}"
        ) from None


def resolve_window(
    start: str | None, end: str | None, bucket: str, now: datetime
) -> tuple[datetime, datetime]:
    """``start``/``end`` as given (``parse_time``); a missing end is ``now``, a missing start is
    24 hours (hour buckets) or 30 days (day buckets) before the end."""
    now = utc_naive(now)
    t1 = parse_time(end, now) if end else now
    t0 = parse_time(start, now) if start else t1 - DEFAULT_SPAN.get(bucket, DEFAULT_SPAN["hour"])
    return t0, t1


@lru_cache(maxsize=8192)  # a month by hour is 720 bucket starts shared by every site's row
def _iso_utc(ts: datetime) -> str:
    return ts.isoformat() + "Z"


def row_dict(row: StatsRow) -> dict[str, object]:
    return {
        "bucket_start": None if row.bucket_start is None else _iso_utc(row.bucket_start),
        "site": row.site,
        "requests": row.requests,
        "faces": row.faces,
        "faces_total": row.faces_total,
        "compliance_rate": None if row.compliance_rate is None else round(row.compliance_rate, 4),
        "p50_ms": row.p50_ms,
        "p95_ms": row.p95_ms,
    }


def report_dict(report: StatsReport) -> dict[str, object]:
    """The report as JSON-ready data (times as ISO UTC with ``Z``)."""
    return {
        "from": report.start.isoformat() + "Z",
        "to": report.end.isoformat() + "Z",
        "bucket": report.bucket,
        "site": report.site,
        "rows": [row_dict(r) for r in report.rows],
        "total": None if report.total is None else row_dict(report.total),
    }


def report_csv(report: StatsReport) -> str:
    """One CSV line per bucket and site (faces per class in their own columns), then the total."""
    import csv
    import io

    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        [
            "bucket_start",
            "site",
            "requests",
            *(f"faces_{c}" for c in FACE_COLUMNS),
            "compliance_rate",
            "p50_ms",
            "p95_ms",
        ]
    )
    rows = [*report.rows, *([report.total] if report.total else [])]
    for r in rows:
        w.writerow(
            [
                "total" if r.bucket_start is None else r.bucket_start.isoformat() + "Z",
                r.site or "",
                r.requests,
                *(r.faces.get(c, 0) for c in FACE_COLUMNS),
                "" if r.compliance_rate is None else f"{r.compliance_rate:.4f}",
                "" if r.p50_ms is None else r.p50_ms,
                "" if r.p95_ms is None else r.p95_ms,
            ]
        )
    return out.getvalue()
