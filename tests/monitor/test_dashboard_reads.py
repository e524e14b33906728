"""The dashboard's reads (maskops.monitor.dashboard) on SQLite and PostgreSQL: traffic per bucket and
site from the rollups, checks with their drifted features, alerts, and the gauges' snapshot."""

from __future__ import annotations

from datetime import timedelta

import pytest
from monitor_helpers import T0, make_record
from sqlalchemy import Engine, insert

from maskops.monitor.dashboard import (
    MAX_BUCKETS,
    alert_overview,
    bucket_range,
    gauge_snapshot,
    latest_checks,
    list_checks,
    traffic,
)
from maskops.monitor.schema import AlertEventRow, AlertStateRow, DriftResultRow, MonitorCheckRow
from maskops.monitor.store import write_records


def add_check(engine: Engine, minutes: int, site: str | None, drifted: dict[str, bool]) -> int:
    at = T0 + timedelta(minutes=minutes)
    with engine.begin() as conn:
        check_id = conn.execute(
            insert(MonitorCheckRow)
            .values(
                created_at=at,
                window_start=at - timedelta(hours=1),
                window_end=at,
                site=site,
                n_requests=3,
                n_faces=4,
                drifted=any(drifted.values()),
                expected_accuracy=0.9,
                accuracy_low=0.85,
                accuracy_high=0.94,
                measured_accuracy=None,
                n_feedback=0,
                reference_accuracy=0.95,
                report={},
            )
            .returning(MonitorCheckRow.id)
        ).scalar_one()
        for feature, flag in drifted.items():
            conn.execute(
                insert(DriftResultRow).values(
                    check_id=check_id, feature=feature, test="ks", score=0.001 if flag else 0.5,
                    threshold=0.05, drifted=flag,
                )
            )  # fmt: skip
    return int(check_id)


def test_traffic_per_bucket_site_and_both(store: Engine) -> None:
    write_records(
        store,
        [
            make_record("a", ("with_mask", "without_mask"), created_at=T0, site="gate-1", latency_ms=10),
            make_record(
                "b", ("with_mask",), created_at=T0 + timedelta(minutes=70), site="gate-2", latency_ms=30
            ),
            make_record("c", ("uncertain",), created_at=T0 + timedelta(minutes=75), latency_ms=90),
        ],
    )
    report = traffic(store, T0 - timedelta(hours=1), T0 + timedelta(hours=2), bucket="hour")
    assert [row.requests for row in report.buckets] == [0, 1, 2]
    assert report.bucket_starts[1] == T0
    assert report.buckets[1].compliance_rate == 0.5
    assert report.buckets[2].faces == {"with_mask": 1, "uncertain": 1}
    assert set(report.sites) == {"", "gate-1", "gate-2"}
    assert report.site_buckets["gate-1"] == [None, 0.5, None]
    assert report.site_buckets[""] == [None, None, None]  # an uncertain face only: no compliance
    assert report.total.requests == 3 and sum(report.total.faces.values()) == 4
    data = report.to_dict()
    assert data["buckets"][0]["p50_ms"] is None
    assert data["buckets"][2]["p95_ms"] == pytest.approx(90, rel=0.05)
    one = traffic(store, T0, T0 + timedelta(hours=2), site="gate-2", bucket="day")
    assert len(one.buckets) == 1 and one.total.requests == 1 and list(one.sites) == ["gate-2"]


def test_bucket_range_limits() -> None:
    p0, p1 = bucket_range(T0, T0, "hour")
    assert p1 == p0 + 1  # an empty window is still one bucket
    with pytest.raises(ValueError, match="bucket=day"):
        bucket_range(T0, T0 + timedelta(hours=MAX_BUCKETS + 1), "hour")
    with pytest.raises(ValueError, match="before it starts"):
        bucket_range(T0, T0 - timedelta(hours=1), "hour")
    with pytest.raises(ValueError, match="bucket must be"):
        bucket_range(T0, T0, "week")


def test_checks_alerts_and_gauge_snapshot(store: Engine) -> None:
    add_check(store, 0, None, {"brightness": False})
    add_check(store, 10, None, {"brightness": True, "label": False})
    add_check(store, 20, "gate-1", {"brightness": True})
    checks = list_checks(store)
    assert [c["drifted_features"] for c in checks] == [[], ["brightness"], ["brightness"]]
    assert [c["site"] for c in list_checks(store, site="gate-1")] == ["gate-1"]
    latest = latest_checks(store)
    assert set(latest) == {"", "gate-1"}
    assert [r.feature for r in latest[""].results] == ["brightness", "label"]
    with store.begin() as conn:
        conn.execute(
            insert(AlertStateRow),
            [
                {"rule": "drift", "key": "", "firing": True, "since": T0, "incident_id": "i1", "value": 1.0},
                {"rule": "slow", "key": "", "firing": False, "since": T0, "incident_id": None, "value": 20.0},
            ],
        )
        conn.execute(
            insert(AlertEventRow).values(
                created_at=T0, rule="drift", key="", state="firing", incident_id="i1", value=1.0,
                threshold=0.0, message="drift in 1 feature(s)", delivery={},
            )
        )  # fmt: skip
    alerts = alert_overview(store)
    assert [a["rule"] for a in alerts["firing"]] == ["drift"]
    assert [(e["state"], e["key"]) for e in alerts["events"]] == [("firing", None)]
    assert alert_overview(store, T0 + timedelta(minutes=1))["events"] == []
    snap = gauge_snapshot(store)
    assert snap.firing == {"drift": 1, "slow": 0}
    assert snap.review_waiting == 0
    assert snap.checks[""].check.expected_accuracy == 0.9
