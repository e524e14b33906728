from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest
from monitor_helpers import T0, make_record
from sqlalchemy.engine import Engine

from maskops.monitor.feedback import InvalidLabel, UnknownFace, add_feedback, measured_accuracy
from maskops.monitor.prune import parse_period, prune, store_counts
from maskops.monitor.schema import LATENCY_BIN_RATIO, latency_bin
from maskops.monitor.stats import business_stats, percentile_from_bins
from maskops.monitor.store import write_records

H = timedelta(hours=1)


def test_feedback_and_accuracy(store: Engine) -> None:
    write_records(
        store,
        [
            make_record("a", ("with_mask", "without_mask", "uncertain"), site="gate"),
            make_record("b", ("mask_weared_incorrect",), created_at=T0 + 2 * H),
        ],
    )
    add_feedback(store, request_id="a", face_index=0, true_label="with_mask")
    fb = add_feedback(store, request_id="a", face_index=1, true_label="with_mask")  # the model was wrong
    assert fb.predicted_label == "without_mask"
    add_feedback(store, request_id="a", face_index=2, true_label="without_mask")  # answered uncertain
    add_feedback(store, request_id="b", face_index=0, true_label="not_a_face")
    report = measured_accuracy(store)
    assert (report.feedback, report.scored, report.correct) == (4, 2, 1)
    assert report.accuracy == pytest.approx(0.5)
    assert (report.uncertain, report.not_a_face) == (1, 1)
    assert report.per_class == {"with_mask": {"scored": 2, "correct": 1}}
    # the latest answer wins
    add_feedback(store, request_id="a", face_index=1, true_label="without_mask", origin="review")
    assert measured_accuracy(store).accuracy == pytest.approx(1.0)
    # windows and sites
    assert measured_accuracy(store, T0 + H, T0 + 3 * H).feedback == 1
    assert measured_accuracy(store, site="gate").feedback == 3
    assert measured_accuracy(store, T0 + 5 * H).accuracy is None


def test_accuracy_of_a_window_is_driven_by_the_feedback_on_sqlite(tmp_path) -> None:
    """SQLite must not walk every request of the window through its time index to find the few
    with feedback (a month of a busy store: 400,000 requests, 80 ms for no feedback at all)."""
    from sqlalchemy import event

    from maskops.monitor.db import open_store

    engine = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    write_records(engine, [make_record(f"r{i}", created_at=T0 + i * H) for i in range(30)])
    add_feedback(engine, request_id="r3", face_index=0, true_label="with_mask")
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "feedback" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    report = measured_accuracy(engine, T0 + 2 * H, T0 + 10 * H)
    assert measured_accuracy(engine, T0 + 2 * H, T0 + 10 * H, site="gate").feedback == 0
    event.remove(engine, "before_cursor_execute", capture)
    assert (report.feedback, report.correct) == (1, 1)
    assert measured_accuracy(engine, T0 + 4 * H, T0 + 10 * H).feedback == 0  # the window still holds
    assert measured_accuracy(engine, site=None).feedback == 1
    assert len(seen) == 2
    for statement, parameters in seen:
        with engine.connect() as conn:
            plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
        assert plan[0].startswith("SCAN feedback"), plan
        assert not any("ix_requests_" in step for step in plan), plan
    engine.dispose()


@pytest.mark.parametrize(
    "request_id, face_index, label, error, known",
    [
        ("nope", 0, "with_mask", UnknownFace, False),
        ("a", 7, "with_mask", UnknownFace, True),
        ("a", 0, "beard", InvalidLabel, None),
        ("a", 0, "uncertain", InvalidLabel, None),
    ],
)
def test_feedback_errors(store: Engine, request_id, face_index, label, error, known) -> None:
    write_records(store, [make_record("a")])
    with pytest.raises(error) as info:
        add_feedback(store, request_id=request_id, face_index=face_index, true_label=label)
    if known is not None:
        assert info.value.request_known is known
    assert measured_accuracy(store).feedback == 0


def test_business_stats_by_hour_day_and_site(store: Engine) -> None:
    records = [
        make_record("r1", ("with_mask", "with_mask", "without_mask"), site="gate", latency_ms=10),
        make_record("r2", ("mask_weared_incorrect", "uncertain"), site="gate", latency_ms=20),
        make_record("r3", (), site="hall", latency_ms=30, created_at=T0 + 30 * timedelta(minutes=1)),
        make_record("r4", ("with_mask",), latency_ms=40, created_at=T0 + H),
        make_record("r5", ("without_mask",), site="gate", latency_ms=50, created_at=T0 + 25 * H),
    ]
    write_records(store, records)
    write_records(store, records)  # a replay changes nothing
    hourly = business_stats(store, T0, T0 + 26 * H, bucket="hour")
    keyed = {(r.bucket_start, r.site): r for r in hourly.rows}
    assert sorted(keyed) == sorted(
        [(T0, "gate"), (T0, "hall"), (T0 + H, None), (T0 + 25 * H, "gate")], key=lambda k: (k[0], k[1] or "")
    )
    gate = keyed[(T0, "gate")]
    assert gate.requests == 2
    assert gate.faces == {"mask_weared_incorrect": 1, "uncertain": 1, "with_mask": 2, "without_mask": 1}
    assert gate.compliance_rate == pytest.approx(2 / 4)  # uncertain is not classified
    assert keyed[(T0, "hall")].compliance_rate is None
    assert hourly.total.requests == 5
    assert hourly.total.faces_total == 7
    assert hourly.total.compliance_rate == pytest.approx(3 / 6)
    assert hourly.total.p50_ms == pytest.approx(30, rel=0.05)
    assert hourly.total.p95_ms == pytest.approx(50, rel=0.05)

    daily = business_stats(store, T0, T0 + 48 * H, bucket="day")
    day0 = datetime(2026, 12, 1)
    assert [(r.bucket_start, r.site, r.requests) for r in daily.rows] == [
        (day0, None, 1),
        (day0, "gate", 2),
        (day0, "hall", 1),
        (day0 + timedelta(days=1), "gate", 1),
    ]
    only_gate = business_stats(store, T0, T0 + 48 * H, bucket="day", site="gate")
    assert {r.site for r in only_gate.rows} == {"gate"}
    assert only_gate.total.requests == 3
    # bounds widen to whole hours: 09:59 -> 10:01 covers 09:00-11:00
    assert (
        business_stats(store, T0 + 59 * timedelta(minutes=1), T0 + H + timedelta(minutes=1)).total.requests
        == 4
    )
    assert business_stats(store, T0 + 30 * H, T0 + 31 * H).rows == []


@pytest.mark.parametrize(
    "bucket, start, end, error",
    [("week", T0, T0 + H, "bucket"), ("hour", T0 + H, T0, "before")],
)
def test_business_stats_errors(store: Engine, bucket, start, end, error) -> None:
    with pytest.raises(ValueError, match=error):
        business_stats(store, start, end, bucket=bucket)


def test_percentiles_from_bins_are_within_the_bin_width() -> None:
    latencies = [float(x) for x in range(1, 1001)]
    bins = Counter(latency_bin(ms) for ms in latencies)
    assert percentile_from_bins(bins, 0.5) == pytest.approx(500, rel=LATENCY_BIN_RATIO - 1)
    assert percentile_from_bins(bins, 0.95) == pytest.approx(950, rel=LATENCY_BIN_RATIO - 1)
    assert percentile_from_bins(Counter(), 0.5) is None


def test_prune_deletes_old_rows_and_keeps_rollups(store: Engine) -> None:
    write_records(
        store,
        [
            make_record("old", ("with_mask", "without_mask"), created_at=T0 - timedelta(days=40)),
            make_record("new", ("with_mask",), created_at=T0 - timedelta(days=1)),
        ],
    )
    add_feedback(store, request_id="old", face_index=0, true_label="with_mask")
    result = prune(store, parse_period("30d"), now=T0)
    assert (result.requests, result.faces, result.feedback) == (1, 2, 1)
    assert store_counts(store) == {"requests": 1, "faces": 1, "feedback": 0, "face_crops": 0}
    assert business_stats(store, T0 - timedelta(days=41), T0, bucket="day").total.requests == 2


@pytest.mark.parametrize(
    "text, expected",
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_parse_period(text: str, expected: timedelta) -> None:
    assert parse_period(text) == expected


@pytest.mark.parametrize("text", ["30", "0d", "-1d", "30 days", ""])
def test_parse_period_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="period"):
        parse_period(text)


def test_database_percentiles_match_the_nearest_rank(store: Engine) -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    latencies = rng.lognormal(3.0, 0.6, size=301)
    write_records(store, [make_record(f"l{i}", (), latency_ms=float(ms)) for i, ms in enumerate(latencies)])
    total = business_stats(store, T0, T0 + H).total
    bins = Counter(latency_bin(float(ms)) for ms in latencies)
    assert total.requests == 301
    assert total.p50_ms == percentile_from_bins(bins, 0.5)
    assert total.p95_ms == percentile_from_bins(bins, 0.95)
    assert total.p50_ms == pytest.approx(np.percentile(latencies, 50), rel=LATENCY_BIN_RATIO - 1)
    assert total.p95_ms == pytest.approx(np.percentile(latencies, 95), rel=LATENCY_BIN_RATIO - 1)
