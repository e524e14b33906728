"""The monitoring dashboard's JSON (/v1/monitor/*) and gauges (/metrics), read from a SQLite store
filled with records, checks and alerts written here."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, insert

from maskops.monitor.dashboard import categorical_histogram, numeric_histogram
from maskops.monitor.records import FaceRecord, PredictionRecord
from maskops.monitor.reference import build_reference
from maskops.monitor.schema import AlertEventRow, AlertStateRow, DriftResultRow, MonitorCheckRow
from maskops.monitor.store import write_records

PROBS = {
    "with_mask": {"with_mask": 0.9, "without_mask": 0.07, "mask_weared_incorrect": 0.03},
    "without_mask": {"with_mask": 0.05, "without_mask": 0.9, "mask_weared_incorrect": 0.05},
    "uncertain": {"with_mask": 0.4, "without_mask": 0.35, "mask_weared_incorrect": 0.25},
}


def now_hour() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)


def record(
    rid: str, labels: tuple[str, ...], at: datetime, site: str | None, latency_ms: float, brightness: float
) -> PredictionRecord:
    faces = tuple(
        FaceRecord(
            box=(10.0 * i, 5.0, 10.0 * i + 40.0, 55.0),
            face_score=0.9,
            probabilities=PROBS[label],
            label=label,
            uncertain_reason="low_confidence" if label == "uncertain" else None,
        )
        for i, label in enumerate(labels)
    )
    return PredictionRecord(
        request_id=rid,
        created_at=at,
        source="api",
        latency_ms=latency_ms,
        width=640,
        height=480,
        site=site,
        model_name="facemask",
        model_version="abc123",
        detector="yunet_cal",
        detector_version="def456",
        stages_ms={"decode": 1.0, "detect": 5.0},
        quality={"brightness": brightness, "contrast": 0.2, "sharpness": 100.0, "saturation": 0.3},
        faces=faces,
    )


def engine_of(client: TestClient) -> Engine:
    return client.app.state.prediction_store.engine  # type: ignore[attr-defined,no-any-return]


def fill_traffic(engine: Engine) -> datetime:
    """Two hours ago: 3 requests at gate-1 (2 masked, 1 unmasked face); one hour ago: 2 at gate-2
    (1 masked, 1 uncertain) and 1 untagged with no face. Returns the current hour."""
    h = now_hour()
    write_records(
        engine,
        [
            record("a1", ("with_mask",), h - timedelta(hours=2), "gate-1", 10.0, 0.5),
            record("a2", ("with_mask",), h - timedelta(hours=2, minutes=-5), "gate-1", 20.0, 0.5),
            record("a3", ("without_mask",), h - timedelta(hours=2, minutes=-9), "gate-1", 200.0, 0.5),
            record("b1", ("with_mask",), h - timedelta(hours=1), "gate-2", 30.0, 0.2),
            record("b2", ("uncertain",), h - timedelta(hours=1, minutes=-1), "gate-2", 40.0, 0.2),
            record("c1", (), h - timedelta(hours=1, minutes=-2), None, 50.0, 0.2),
        ],
    )
    return h


def add_check(
    engine: Engine,
    at: datetime,
    *,
    site: str | None = None,
    estimate: float = 0.9,
    measured: float | None = None,
    drifted: dict[str, tuple[str, float, float, bool]] | None = None,
) -> int:
    features = drifted or {}
    with engine.begin() as conn:
        check_id = conn.execute(
            insert(MonitorCheckRow).values(
                created_at=at,
                window_start=at - timedelta(hours=1),
                window_end=at,
                site=site,
                n_requests=6,
                n_faces=5,
                drifted=any(f[3] for f in features.values()),
                expected_accuracy=estimate,
                accuracy_low=estimate - 0.05,
                accuracy_high=estimate + 0.04,
                measured_accuracy=measured,
                n_feedback=0 if measured is None else 3,
                reference_accuracy=0.95,
                report={"drifted": [k for k, f in features.items() if f[3]]},
            )
        ).inserted_primary_key[0]
        for name, (test, score, threshold, flag) in features.items():
            conn.execute(
                insert(DriftResultRow).values(
                    check_id=check_id, feature=name, test=test, score=score, threshold=threshold, drifted=flag
                )
            )
    return int(check_id)


def add_alert(engine: Engine, at: datetime, rule: str, key: str, state: str, incident: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(AlertEventRow).values(
                created_at=at,
                rule=rule,
                key=key,
                state=state,
                incident_id=incident,
                value=0.3,
                threshold=0.5,
                message=f"{rule} {state}",
                delivery={"log": "sent"},
            )
        )


def set_state(engine: Engine, rule: str, key: str, firing: bool, at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(AlertStateRow).values(
                rule=rule,
                key=key,
                firing=firing,
                since=at,
                incident_id="inc-1" if firing else None,
                value=0.3,
            )
        )


@pytest.fixture
def store_client(make_client: Callable[..., TestClient], tmp_path: Path) -> TestClient:
    return make_client(database_url=f"sqlite:///{tmp_path / 'store.db'}")


# --------------------------------------------------------------------------- summary
def test_summary_per_bucket_and_site(store_client: TestClient) -> None:
    h = fill_traffic(engine_of(store_client))
    r = store_client.get("/v1/monitor/summary", params={"from": "3h"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["store"] == "ok"
    t = body["traffic"]
    starts = [b["bucket_start"] for b in t["buckets"]]
    assert starts[0] == (h - timedelta(hours=3)).isoformat() + "Z"
    assert len(starts) == 4  # 3 hours back to now, widened to whole hours (the current one included)
    by_start = {b["bucket_start"]: b for b in t["buckets"]}
    two = by_start[(h - timedelta(hours=2)).isoformat() + "Z"]
    assert two["requests"] == 3
    assert two["faces"] == {"with_mask": 2, "without_mask": 1}
    assert two["compliance_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert two["p50_ms"] == pytest.approx(20.0, rel=0.05)
    assert two["p95_ms"] == pytest.approx(200.0, rel=0.05)
    one = by_start[(h - timedelta(hours=1)).isoformat() + "Z"]
    assert one["requests"] == 3 and one["faces"] == {"uncertain": 1, "with_mask": 1}
    assert one["compliance_rate"] == 1.0  # uncertain faces are not classified
    empty = by_start[(h - timedelta(hours=3)).isoformat() + "Z"]
    assert empty["requests"] == 0 and empty["p50_ms"] is None and empty["compliance_rate"] is None
    sites = {s["site"]: s for s in t["sites"]}
    assert set(sites) == {None, "gate-1", "gate-2"}
    assert sites["gate-1"]["requests"] == 3 and sites["gate-1"]["faces_total"] == 3
    assert sites[None]["faces_total"] == 0
    compliance = {c["site"]: c["compliance_rate"] for c in t["compliance_by_site"]}
    assert compliance["gate-1"][1] == pytest.approx(2 / 3, abs=1e-4)
    assert compliance["gate-1"][2] is None and compliance["gate-2"][2] == 1.0
    assert t["total"]["requests"] == 6 and t["total"]["faces_total"] == 5
    assert body["review_queue"] == {"waiting": 0, "storing_crops": False}


def test_summary_of_one_site_by_day(store_client: TestClient) -> None:
    fill_traffic(engine_of(store_client))
    body = store_client.get("/v1/monitor/summary", params={"site": "gate-2", "bucket": "day"}).json()
    t = body["traffic"]
    assert t["bucket"] == "day" and t["site"] == "gate-2"
    assert len(t["buckets"]) >= 30
    assert sum(b["requests"] for b in t["buckets"]) == 2
    assert [s["site"] for s in t["sites"]] == ["gate-2"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-45"}, "to"),
        ({"from": "99999999999d"}, "from"),
        ({"from": "2026-12-02", "to": "2026-12-01"}, "to"),
        ({"from": "2020-01-01", "to": "2026-01-01"}, "from"),  # too many hour buckets
        ({"bucket": "week"}, "bucket"),
        ({"site": "x" * 65}, "site"),
    ],
)
def test_summary_rejects_bad_query_naming_the_field(
    store_client: TestClient, params: dict[str, str], field: str
) -> None:
    r = store_client.get("/v1/monitor/summary", params=params)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"].startswith(f"query.{field}:")
    assert error["details"][0]["loc"] == ["query", field]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/monitor/checks", {"limit": "0"}, "limit"),
        ("/v1/monitor/checks", {"from": "soon"}, "from"),
        ("/v1/monitor/alerts", {"limit": "many"}, "limit"),
        ("/v1/monitor/alerts", {"to": "later"}, "to"),
        ("/v1/monitor/drift/latest", {"last": "0"}, "last"),
        ("/v1/monitor/drift/latest", {"since": "1h", "last": "10"}, "last"),
        ("/v1/monitor/drift/latest", {"since": "ages"}, "since"),
        ("/v1/monitor/drift/latest", {"bins": "1"}, "bins"),
    ],
)
def test_other_routes_reject_bad_query_naming_the_field(
    store_client: TestClient, path: str, params: dict[str, str], field: str
) -> None:
    r = store_client.get(path, params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["loc"] == ["query", field]


# --------------------------------------------------------------------------- checks, alerts
def test_checks_oldest_first_with_estimate_measured_and_drifted_features(store_client: TestClient) -> None:
    engine = engine_of(store_client)
    h = now_hour()
    add_check(engine, h - timedelta(hours=2), estimate=0.93)
    add_check(
        engine,
        h - timedelta(hours=1),
        estimate=0.81,
        measured=0.78,
        drifted={"brightness": ("ks", 1e-6, 0.01, True), "confidence": ("ks", 0.4, 0.01, False)},
    )
    add_check(engine, h - timedelta(minutes=30), site="gate-1", estimate=0.88)
    checks = store_client.get("/v1/monitor/checks").json()["checks"]
    assert [c["expected_accuracy"] for c in checks] == [0.93, 0.81, 0.88]
    assert checks[1]["measured_accuracy"] == 0.78 and checks[1]["n_feedback"] == 3
    assert checks[1]["accuracy_low"] == pytest.approx(0.76) and checks[1]["accuracy_high"] == pytest.approx(
        0.85
    )
    assert checks[1]["drifted"] is True and checks[1]["drifted_features"] == ["brightness"]
    assert checks[0]["drifted_features"] == []
    only = store_client.get("/v1/monitor/checks", params={"site": "gate-1"}).json()["checks"]
    assert [c["site"] for c in only] == ["gate-1"]
    latest = store_client.get("/v1/monitor/checks", params={"limit": 2}).json()["checks"]
    assert [c["expected_accuracy"] for c in latest] == [0.81, 0.88]
    since = (h - timedelta(hours=1)).isoformat()
    recent = store_client.get("/v1/monitor/checks", params={"from": since}).json()["checks"]
    assert [c["expected_accuracy"] for c in recent] == [0.81, 0.88]


def test_alerts_firing_now_and_history(store_client: TestClient) -> None:
    engine = engine_of(store_client)
    h = now_hour()
    add_alert(engine, h - timedelta(hours=3), "drift", "", "firing", "inc-0")
    add_alert(engine, h - timedelta(hours=2), "drift", "", "resolved", "inc-0")
    add_alert(engine, h - timedelta(hours=1), "compliance", "gate-1", "firing", "inc-1")
    set_state(engine, "compliance", "gate-1", True, h - timedelta(hours=1))
    set_state(engine, "drift", "", False, h - timedelta(hours=2))
    body = store_client.get("/v1/monitor/alerts").json()
    assert body["store"] == "ok"
    assert body["firing"] == [
        {
            "rule": "compliance",
            "key": "gate-1",
            "since": (h - timedelta(hours=1)).isoformat() + "Z",
            "value": 0.3,
            "incident_id": "inc-1",
        }
    ]
    assert [(e["rule"], e["state"]) for e in body["events"]] == [
        ("compliance", "firing"),
        ("drift", "resolved"),
        ("drift", "firing"),
    ]
    assert body["events"][1]["key"] is None and body["events"][0]["delivery"] == {"log": "sent"}
    since = (h - timedelta(hours=2)).isoformat()
    recent = store_client.get("/v1/monitor/alerts", params={"from": since, "limit": 1}).json()["events"]
    assert [e["incident_id"] for e in recent] == ["inc-1"]
    window = store_client.get("/v1/monitor/alerts", params={"from": since}).json()["events"]
    assert [e["state"] for e in window] == ["firing", "resolved"]


# --------------------------------------------------------------------------- drift
def write_reference(models_dir: Path, brightness: float) -> None:
    rng = np.random.default_rng(0)
    profile = build_reference(
        numeric={"brightness": rng.normal(brightness, 0.02, 500), "confidence": rng.uniform(0.85, 0.95, 500)},
        categorical={"label": ["with_mask"] * 300 + ["without_mask"] * 200},
        accuracy=0.95,
    )
    profile.save(models_dir / "facemask.reference.json")


def test_drift_latest_without_a_reference_says_so(store_client: TestClient) -> None:
    engine = engine_of(store_client)
    fill_traffic(engine)
    add_check(engine, now_hour(), drifted={"brightness": ("ks", 1e-6, 0.01, True)})
    body = store_client.get("/v1/monitor/drift/latest").json()
    assert body["store"] == "ok"
    assert body["reference"]["available"] is False
    assert "no reference profile" in body["reference"]["note"]
    assert body["reference"]["path"].endswith("facemask.reference.json")
    assert body["check"]["drifted_features"] == ["brightness"]
    assert [(f["feature"], f["histogram"]) for f in body["features"]] == [("brightness", None)]


def test_drift_latest_histograms_reference_against_current(
    store_client: TestClient, models_dir: Path
) -> None:
    engine = engine_of(store_client)
    fill_traffic(engine)  # brightness 0.5 and 0.2 in the store
    write_reference(models_dir, brightness=0.5)
    add_check(
        engine,
        now_hour(),
        drifted={"brightness": ("ks", 1e-6, 0.01, True), "confidence": ("ks", 0.5, 0.01, False)},
    )
    body = store_client.get("/v1/monitor/drift/latest", params={"bins": 10}).json()
    assert body["reference"]["available"] is True and body["reference"]["accuracy"] == 0.95
    assert body["window"]["last"] == 5 and body["window"]["faces"] == 5  # the check's size
    features = {f["feature"]: f for f in body["features"]}
    assert body["features"][0]["feature"] == "brightness"  # drifted first
    b = features["brightness"]
    assert b["drifted_in_check"] is True and b["kind"] == "numeric"
    hist = b["histogram"]
    assert len(hist["edges"]) == 11 and len(hist["reference"]) == len(hist["current"]) == 10
    assert sum(hist["reference"]) == pytest.approx(1.0) and sum(hist["current"]) == pytest.approx(1.0)
    assert hist["n_current"] == 5  # one value per request of the window
    label = features["label"]["histogram"]
    assert label["categories"][:2] == ["with_mask", "without_mask"]
    assert label["reference"][:2] == pytest.approx([0.6, 0.4])
    assert features["label"]["drifted_in_check"] is None  # not in the check
    one_hour = (now_hour() - timedelta(hours=1)).isoformat()
    since = store_client.get("/v1/monitor/drift/latest", params={"since": one_hour}).json()
    assert since["window"]["requests"] == 3 and since["window"]["last"] is None


def test_histograms_pure() -> None:
    h = numeric_histogram(np.array([0.0, 1.0, 2.0, 3.0]), np.array([3.0, 3.0, np.nan]), bins=3)
    assert h is not None and h["n_current"] == 2
    assert h["current"][-1] == 1.0
    assert numeric_histogram(np.array([np.nan]), np.array([])) is None
    same = numeric_histogram(np.ones(5), np.ones(3))
    assert same is not None and same["reference"] == [1.0] and same["current"] == [1.0]
    c = categorical_histogram({"a": 3, "b": 1}, ["b", "c", "c", "c"])
    assert c["categories"] == ["a", "b", "c"]
    assert c["reference"] == [0.75, 0.25, 0.0] and c["current"] == [0.0, 0.25, 0.75]


# --------------------------------------------------------------------------- store off
@pytest.mark.parametrize(
    "path", ["/v1/monitor/summary", "/v1/monitor/checks", "/v1/monitor/alerts", "/v1/monitor/drift/latest"]
)
def test_store_off_is_an_empty_state(make_client: Callable[..., TestClient], path: str) -> None:
    client = make_client(store_predictions=False)
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.json()["store"] == "off"


def test_routes_need_a_predict_key_when_auth_is_on(make_client: Callable[..., TestClient]) -> None:
    client = make_client(auth=True)
    for path in (
        "/v1/monitor/summary",
        "/v1/monitor/checks",
        "/v1/monitor/alerts",
        "/v1/monitor/drift/latest",
    ):
        r = client.get(path)
        assert r.status_code == 401, path
    assert client.get("/monitor").status_code == 200  # the page itself asks for the key


def test_monitor_page_and_nav(client: TestClient) -> None:
    page = client.get("/monitor")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/lib/chart.umd.min.js" in page.text and "/static/monitor.js" in page.text
    assert client.get("/static/lib/chart.umd.min.js").status_code == 200
    assert client.get("/static/monitor.js").status_code == 200
    for other in ("/", "/live", "/models", "/review"):
        assert 'href="/monitor"' in client.get(other).text, other


# --------------------------------------------------------------------------- gauges
def scrape(client: TestClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = client.get("/metrics").text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_gauges_show_the_latest_check_alerts_and_queue(store_client: TestClient) -> None:
    engine = engine_of(store_client)
    h = now_hour()
    add_check(engine, h - timedelta(hours=1), estimate=0.7, drifted={"brightness": ("ks", 0.5, 0.01, False)})
    add_check(
        engine,
        h,
        estimate=0.81,
        measured=0.78,
        drifted={"brightness": ("ks", 1e-6, 0.01, True), "label": ("chi2", 0.2, 0.01, False)},
    )
    add_check(engine, h, site="gate-1", estimate=0.6, drifted={"brightness": ("psi", 0.3, 0.2, True)})
    set_state(engine, "drift", "", True, h)
    set_state(engine, "compliance", "gate-1", True, h)
    set_state(engine, "compliance", "gate-2", True, h)
    set_state(engine, "latency", "", False, h)
    m = scrape(store_client)
    assert m["maskops_monitor_store_up"] == [({}, 1.0)]
    scores = {(lab["site"], lab["feature"], lab["test"]): v for lab, v in m["maskops_monitor_drift_score"]}
    assert scores == {
        ("", "brightness", "ks"): pytest.approx(1e-6),
        ("", "label", "chi2"): pytest.approx(0.2),
        ("gate-1", "brightness", "psi"): pytest.approx(0.3),
    }
    flags = {(lab["site"], lab["feature"]): v for lab, v in m["maskops_monitor_feature_drifted"]}
    assert flags == {("", "brightness"): 1.0, ("", "label"): 0.0, ("gate-1", "brightness"): 1.0}
    est = {lab["site"]: v for lab, v in m["maskops_monitor_estimated_accuracy"]}
    assert est == {"": pytest.approx(0.81), "gate-1": pytest.approx(0.6)}
    low = dict((lab["site"], v) for lab, v in m["maskops_monitor_estimated_accuracy_low"])
    assert low[""] == pytest.approx(0.76)
    assert m["maskops_monitor_measured_accuracy"] == [({"site": ""}, pytest.approx(0.78))]
    assert {lab["site"]: v for lab, v in m["maskops_monitor_drifted"]} == {"": 1.0, "gate-1": 1.0}
    firing = {lab["rule"]: v for lab, v in m["maskops_alerts_firing"]}
    assert firing == {"compliance": 2.0, "drift": 1.0, "latency": 0.0}
    assert m["maskops_review_queue"] == [({}, 0.0)]


def test_gauges_without_a_store_are_declared_without_samples(make_client: Callable[..., TestClient]) -> None:
    client = make_client(store_predictions=False)
    text = client.get("/metrics").text
    assert "# TYPE maskops_monitor_drift_score gauge" in text
    assert "# TYPE maskops_alerts_firing gauge" in text
    m = scrape(client)
    assert "maskops_monitor_store_up" not in m and "maskops_alerts_firing" not in m


def test_gauges_report_a_store_that_does_not_answer(store_client: TestClient) -> None:
    engine = engine_of(store_client)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE drift_results")
        conn.exec_driver_sql("DROP TABLE monitor_checks")
    m = scrape(store_client)
    assert m["maskops_monitor_store_up"] == [({}, 0.0)]
    r = store_client.get("/v1/monitor/checks")
    assert r.status_code == 200 and r.json() == {"store": "unavailable", "checks": []}


def test_summary_round_trips_as_json(store_client: TestClient) -> None:
    fill_traffic(engine_of(store_client))
    body = store_client.get("/v1/monitor/summary").json()
    assert json.loads(json.dumps(body)) == body


def test_grafana_dashboard_charts_the_monitoring_gauges() -> None:
    import re

    from maskops.serve.metrics import ServiceMetrics

    path = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "maskops.json"
    dashboard = json.loads(path.read_text())
    used = {
        m
        for p in dashboard["panels"]
        for t in p["targets"]
        for m in re.findall(r"\bmaskops_[a-z_]+", t["expr"])
    }
    exported = {family.name for family in ServiceMetrics().registry.collect()}
    for gauge in (
        "maskops_monitor_drift_score",
        "maskops_monitor_feature_drifted",
        "maskops_monitor_estimated_accuracy",
        "maskops_monitor_estimated_accuracy_low",
        "maskops_monitor_estimated_accuracy_high",
        "maskops_monitor_measured_accuracy",
        "maskops_alerts_firing",
        "maskops_review_queue",
    ):
        assert gauge in used and gauge in exported, gauge
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
