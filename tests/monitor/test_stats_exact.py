"""``business_stats`` against a brute-force computation from the raw records, on random data
(several sites, untagged requests, several sources), both buckets, site and source filters."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pytest
from monitor_helpers import T0, make_record
from sqlalchemy.engine import Engine

from maskops.monitor.records import PredictionRecord
from maskops.monitor.schema import bin_latency_ms, latency_bin
from maskops.monitor.stats import StatsReport, StatsRow, business_stats, latency_percentile_bins
from maskops.monitor.store import epoch_hour, write_records

EPOCH = datetime(1970, 1, 1)
SITES = (None, "gate", "hall", "dock")
SOURCES = ("api", "batch", "detect")
CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")
LABELS = (*CLASSES, "uncertain")


def random_records(n: int, seed: int) -> list[PredictionRecord]:
    """Requests of 0-4 faces over three days, latencies over three orders of magnitude; every 50th
    request has a face of a label outside the service's classes (another model's)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        labels = tuple(LABELS[j] for j in rng.integers(0, len(LABELS), size=int(rng.integers(0, 5))))
        record = make_record(
            f"x{seed}-{i}",
            labels,
            created_at=T0 + timedelta(minutes=float(rng.uniform(-600, 3 * 24 * 60))),
            site=SITES[int(rng.integers(len(SITES)))],
            source=SOURCES[int(rng.choice(len(SOURCES), p=[0.6, 0.3, 0.1]))],
            latency_ms=float(rng.lognormal(3.0, 1.2)),
        )
        if i % 50 == 7:
            odd = replace(record.faces[0] if record.faces else make_record("f").faces[0], label="helmet")
            record = replace(record, faces=(*record.faces, odd))
        out.append(record)
    return out


def nearest_rank_ms(latencies: list[float], q: int) -> float:
    """The bin middle of the nearest-rank ``q``-th percentile (0-100) of the raw latencies."""
    bins = sorted(latency_bin(ms) for ms in latencies)
    rank = max(1, math.ceil(len(bins) * q / 100))
    return round(bin_latency_ms(bins[rank - 1]), 2)


def brute_force(
    records: list[PredictionRecord],
    start: datetime,
    end: datetime,
    *,
    bucket: str,
    site: str | None,
    source: str | None,
) -> StatsReport:
    width = 1 if bucket == "hour" else 24
    hour0 = (start - EPOCH) // timedelta(hours=1)
    hour1 = math.ceil((end - EPOCH) / timedelta(hours=1))
    p0, p1 = hour0 // width, math.ceil(hour1 / width)
    latencies: defaultdict[tuple[int, str], list[float]] = defaultdict(list)
    faces: defaultdict[tuple[int, str], Counter[str]] = defaultdict(Counter)
    for r in records:
        b = epoch_hour(r) // width
        if not p0 <= b < p1 or (site and r.site != site) or (source and r.source != source):
            continue
        latencies[(b, r.site or "")].append(r.latency_ms)
        faces[(b, r.site or "")].update(f.label for f in r.faces)

    def row(start_: datetime | None, site_: str | None, lat: list[float], fc: Counter[str]) -> StatsRow:
        classified = sum(n for label, n in fc.items() if label in CLASSES)
        return StatsRow(
            bucket_start=start_,
            site=site_,
            requests=len(lat),
            faces=dict(sorted(fc.items())),
            compliance_rate=fc["with_mask"] / classified if classified else None,
            p50_ms=nearest_rank_ms(lat, 50) if lat else None,
            p95_ms=nearest_rank_ms(lat, 95) if lat else None,
        )

    rows = [
        row(EPOCH + timedelta(hours=b * width), s or None, latencies[(b, s)], faces[(b, s)])
        for b, s in sorted(latencies)
    ]
    every = [ms for lat in latencies.values() for ms in lat]
    total_faces: Counter[str] = sum(faces.values(), Counter())
    return StatsReport(
        start=EPOCH + timedelta(hours=p0 * width),
        end=EPOCH + timedelta(hours=p1 * width),
        bucket=bucket,
        site=site or None,
        rows=rows,
        total=row(None, site or None, every, +total_faces),
    )


def test_business_stats_equal_a_brute_force_count_of_the_records(store: Engine) -> None:
    records = random_records(700, seed=3)
    for k in range(0, len(records), 97):  # several batches: rollup rows updated, not only inserted
        write_records(store, records[k : k + 97])
    rng = np.random.default_rng(4)
    windows = [(T0 - timedelta(hours=12), T0 + timedelta(days=4))]  # everything
    for _ in range(6):
        a, b = sorted(rng.uniform(-900, 4 * 24 * 60, size=2))
        windows.append((T0 + timedelta(minutes=float(a)), T0 + timedelta(minutes=float(b))))
    windows.append((T0 + timedelta(days=10), T0 + timedelta(days=11)))  # nothing
    checked = others = 0
    for start, end in windows:
        for bucket in ("hour", "day"):
            for site in (None, "gate", ""):
                for source in (None, "batch"):
                    got = business_stats(store, start, end, bucket=bucket, site=site, source=source)  # type: ignore[arg-type]
                    want = brute_force(records, start, end, bucket=bucket, site=site, source=source)
                    assert got == want, (start, end, bucket, site, source)
                    checked += len(got.rows)
                    others += got.total.faces.get("helmet", 0) if got.total else 0
    assert checked > 500  # the random windows are not all empty
    assert others > 0


@pytest.mark.parametrize("n", [1, 2, 19, 20, 21, 40, 100])
def test_percentile_ranks_at_group_sizes_where_rounding_matters(store: Engine, n: int) -> None:
    """Nearest rank at sizes where q * n is whole (rank q * n, not the next one), one bin per request."""
    records = [make_record(f"n{i}", (), latency_ms=1.1 ** (i * 3)) for i in range(n)]
    write_records(store, records[::-1])
    want = brute_force(records, T0, T0 + timedelta(hours=1), bucket="hour", site=None, source=None)
    assert business_stats(store, T0, T0 + timedelta(hours=1)) == want


def test_latency_percentile_bins_equal_the_nearest_rank_per_group() -> None:
    rng = np.random.default_rng(5)
    groups = rng.integers(-3, 40, size=2000)  # any order, negative ids too
    bins = rng.integers(-60, 120, size=2000)
    counts = rng.integers(1, 9, size=2000)
    gid, totals, pct = latency_percentile_bins(groups, bins, counts, qs=(1, 50, 95, 100))
    assert gid.tolist() == sorted(set(groups.tolist()))
    for j, g in enumerate(gid.tolist()):
        each = sorted(
            int(k) for k, n in zip(bins[groups == g], counts[groups == g], strict=True) for _ in range(n)
        )
        assert totals[j] == len(each)
        for i, q in enumerate((1, 50, 95, 100)):
            assert pct[i, j] == each[max(1, math.ceil(len(each) * q / 100)) - 1]
