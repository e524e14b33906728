"""The service records every served image in the store; feedback, store-backed stats, /metrics, /ready."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from monitor_helpers import make_record
from sqlalchemy import select

from maskops.data.images import sha256_file
from maskops.monitor.schema import FaceRow, RequestRow
from maskops.monitor.store import write_records
from maskops.serve.app import create_app
from maskops.serve.settings import ServeSettings
from maskops.types import ModelSpec

FACE_PHOTO = "maksssksksss123.jpg"  # two annotated faces, both found by YuNet


def jpeg(width: int = 64, height: int = 48) -> bytes:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", np.dstack([np.tile(x, (height, 1))] * 3))
    assert ok
    return buf.tobytes()


@pytest.fixture
def models_dir(tmp_path: Path, linear_model: Path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(linear_model, d / "facemask.onnx")
    shutil.copy(ModelSpec.card_path(linear_model), d / "facemask.json")
    return d


@pytest.fixture
def make_client(models_dir: Path, tmp_path: Path, store_url: str) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        values: dict[str, object] = {
            "models_dir": models_dir,
            "work_dir": tmp_path / "work",
            "workers": 2,
            "log_format": "text",
            "warm_up": False,
            "database_url": store_url,
        }
        values.update(overrides)
        client = TestClient(create_app(ServeSettings(**values)), raise_server_exceptions=False)  # type: ignore[arg-type]
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def flush(client: TestClient) -> None:
    assert client.app.state.prediction_store.writer.flush(20)


def stored(client: TestClient, request_id: str):  # type: ignore[no-untyped-def]
    with client.app.state.prediction_store.engine.connect() as conn:
        return conn.execute(select(RequestRow).where(RequestRow.request_id == request_id)).one_or_none()


def test_detect_and_batch_are_recorded_once(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    r = client.post(
        "/v1/detect", files={"file": ("a.jpg", jpeg(), "image/jpeg")}, headers={"X-Site": "gate-2"}
    )
    assert r.status_code == 200, r.text
    rid = r.json()["request_id"]
    b = client.post(
        "/v1/detect/batch",
        files=[("files", ("1.jpg", jpeg(), "image/jpeg")), ("files", ("2.jpg", jpeg(80, 60), "image/jpeg"))],
    )
    assert b.status_code == 200, b.text
    bid = b.json()["request_id"]
    flush(client)
    row = stored(client, rid)
    assert (row.source, row.site, row.width, row.height, row.n_faces) == ("api", "gate-2", 64, 48, 0)
    assert row.model_name == "facemask" and row.model_version
    yunet = client.app.state.settings.yunet_path
    assert row.detector == "yunet_cal"
    assert row.detector_version == (sha256_file(yunet)[:12] if yunet and yunet.is_file() else None)
    assert 0 < row.brightness < 1 and row.sharpness >= 0
    assert "decode" in row.stages_ms
    assert stored(client, f"{bid}-0").source == "batch"
    assert stored(client, f"{bid}-1").width == 80
    with client.app.state.prediction_store.engine.connect() as conn:
        assert len(conn.execute(select(RequestRow.request_id)).all()) == 3


def test_classify_is_recorded_with_the_whole_image_as_its_face(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client()
    r = client.post(
        "/v1/classify", files={"file": ("c.jpg", jpeg(40, 30), "image/jpeg")}, headers={"X-Site": "lab"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    flush(client)
    row = stored(client, body["request_id"])
    assert (row.source, row.site, row.width, row.height, row.n_faces) == ("classify", "lab", 40, 30, 1)
    with client.app.state.prediction_store.engine.connect() as conn:
        face = conn.execute(select(FaceRow).where(FaceRow.request_id == body["request_id"])).one()
    assert face.label == body["label"]
    assert (face.x1, face.y1, face.x2, face.y2) == (0.0, 0.0, 40.0, 30.0)
    assert face.probabilities == pytest.approx(body["probabilities"], abs=1e-4)
    bad = client.post("/v1/classify", files={"file": ("c.jpg", b"not an image", "image/jpeg")})
    assert bad.status_code in (415, 422)
    flush(client)
    with client.app.state.prediction_store.engine.connect() as conn:
        assert len(conn.execute(select(RequestRow.request_id)).all()) == 1  # refused uploads: no record


def test_feedback_route(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    write_records(
        client.app.state.prediction_store.engine, [make_record("seen", ("without_mask", "uncertain"))]
    )
    ok = client.post("/v1/feedback", json={"request_id": "seen", "face_index": 0, "label": "with_mask"})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {
        "request_id": "seen",
        "face_index": 0,
        "label": "with_mask",
        "predicted_label": "without_mask",
    }
    unknown = client.post("/v1/feedback", json={"request_id": "nope", "face_index": 0, "label": "with_mask"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_request"
    no_face = client.post("/v1/feedback", json={"request_id": "seen", "face_index": 5, "label": "with_mask"})
    assert no_face.status_code == 404
    assert no_face.json()["error"]["code"] == "unknown_face"
    bad = client.post("/v1/feedback", json={"request_id": "seen", "face_index": 0, "label": "beard"})
    assert bad.status_code == 422
    # a body that is not UTF-8 JSON: the documented 400 in the error envelope (found by schemathesis)
    garbled = client.post("/v1/feedback", content=b"\xff1", headers={"Content-Type": "application/json"})
    assert garbled.status_code == 400
    assert garbled.json()["error"]["code"] == "bad_request"
    documented = client.app.openapi()["paths"]["/v1/feedback"]["post"]["responses"]
    assert "400" in documented


def test_stats_from_the_store_and_metrics(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    now = datetime.now(UTC).replace(tzinfo=None)
    write_records(
        client.app.state.prediction_store.engine,
        [
            make_record("s1", ("with_mask", "without_mask"), site="hall", created_at=now),
            make_record("s2", ("with_mask",), site="gate", created_at=now),
        ],
    )
    r = client.get("/v1/stats")
    assert r.status_code == 200, r.text
    body = r.json()
    # the store's part is plain data, not the model: it must be exactly what the model would give
    from maskops.serve.routes.monitoring import StatsWithStore

    assert StatsWithStore.model_validate(body).model_dump(mode="json", by_alias=True) == body
    assert len(body["store"]["rows"]) == 2 and body["store"]["rows"][0]["bucket_start"].endswith("Z")
    assert "requests_by_route" in body  # the in-memory counters stay
    assert body["store"]["total"]["requests"] == 2
    assert body["store"]["total"]["compliance_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert body["store"]["accuracy"]["feedback"] == 0
    client.post("/v1/feedback", json={"request_id": "s1", "face_index": 1, "label": "with_mask"})
    accuracy = client.get("/v1/stats").json()["store"]["accuracy"]
    assert (accuracy["feedback"], accuracy["scored"], accuracy["accuracy"]) == (1, 1, 0.0)
    day = client.get("/v1/stats", params={"from": "2d", "bucket": "day", "site": "gate"}).json()["store"]
    assert day["bucket"] == "day" and [row["site"] for row in day["rows"]] == ["gate"]
    assert client.get("/v1/stats", params={"bucket": "week"}).status_code == 422
    assert client.get("/v1/stats", params={"from": "yesterday"}).status_code == 422
    assert client.get("/v1/stats", params={"from": "999999d"}).status_code == 422
    client.post("/v1/detect", files={"file": ("a.jpg", jpeg(), "image/jpeg")})
    flush(client)
    metrics = client.get("/metrics").text
    assert "maskops_store_records_logged_total 1.0" in metrics
    assert "maskops_store_records_dropped_total 0.0" in metrics


def test_ready_shows_the_store_and_degrades(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    r = client.get("/ready")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["prediction_store"] == "ok"
    client.app.state.prediction_store.writer._db_up = False  # the database went away: records spool
    assert client.get("/ready").json() == {
        "status": "ready",
        "checks": {"face_model": "ok", "detector": "ok", "prediction_store": "spooling"},
    }
    client.app.state.prediction_store.writer._degraded = (
        "spool /x cannot be written (No space left on device)"
    )
    r = client.get("/ready")
    assert r.status_code == 200
    assert r.json()["status"] == "degraded"
    assert "No space left" in r.json()["checks"]["prediction_store"]


def test_store_off(make_client: Callable[..., TestClient]) -> None:
    client = make_client(store_predictions=False)
    assert client.post("/v1/detect", files={"file": ("a.jpg", jpeg(), "image/jpeg")}).status_code == 200
    assert client.get("/ready").json()["checks"]["prediction_store"] == "off"
    r = client.post("/v1/feedback", json={"request_id": "x", "face_index": 0, "label": "with_mask"})
    assert r.status_code == 503
    assert "store" not in client.get("/v1/stats").json() or client.get("/v1/stats").json()["store"] is None


def test_faces_of_a_real_photo_are_recorded(make_client: Callable[..., TestClient], data_dir: Path) -> None:
    path = data_dir / "facemask-voc" / "images" / FACE_PHOTO
    if not path.is_file():
        pytest.skip(f"face photo not found at {path} (set MASKOPS_DATA_DIR to the shared datasets)")
    client = make_client()
    body = {"image_base64": base64.b64encode(path.read_bytes()).decode()}
    r = client.post("/v1/detect", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    flush(client)
    with client.app.state.prediction_store.engine.connect() as conn:
        faces = conn.execute(
            select(FaceRow).where(FaceRow.request_id == answer["request_id"]).order_by(FaceRow.face_index)
        ).all()
    assert [f.label for f in faces] == [f["label"] for f in answer["faces"]]
    assert [f.x1 for f in faces] == pytest.approx([f["box"][0] for f in answer["faces"]], abs=0.1)
    fb = client.post(
        "/v1/feedback", json={"request_id": answer["request_id"], "face_index": 1, "label": "not_a_face"}
    )
    assert fb.status_code == 200, fb.text
