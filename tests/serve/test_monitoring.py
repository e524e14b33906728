"""/metrics, /v1/stats, structured logs with the request id, the inference pool."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from maskops.serve.context import RequestIdFilter
from maskops.serve.logs import JsonFormatter
from maskops.serve.service import InferencePool, ServiceUnavailable
from maskops.serve.settings import ServeSettings


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_requests_faces_and_errors(client: TestClient, face_photo: bytes) -> None:
    for _ in range(2):
        assert (
            client.post(
                "/v1/detect", files={"file": ("a.jpg", face_photo)}, params={"uncertain": "false"}
            ).status_code
            == 200
        )
    client.post("/v1/detect", files={"file": ("a.txt", b"text")})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    s = _samples(r.text)
    ok = (("method", "POST"), ("route", "/v1/detect"), ("status", "200"))
    assert s[("maskops_http_requests_total", ok)] == 2
    assert (
        s[("maskops_http_requests_total", (("method", "POST"), ("route", "/v1/detect"), ("status", "415")))]
        == 1
    )
    assert s[("maskops_errors_total", (("code", "unsupported_media_type"),))] == 1
    faces = sum(v for (name, _), v in s.items() if name == "maskops_faces_total")
    assert faces == 4
    assert (
        s[("maskops_http_request_duration_seconds_count", (("method", "POST"), ("route", "/v1/detect")))] == 3
    )
    assert s[("maskops_inference_stage_seconds_count", (("stage", "detect"),))] == 2
    assert (
        s[
            (
                "maskops_model_info",
                (
                    ("name", "facemask"),
                    ("task", "facemask"),
                    ("version", client.get("/model-info").json()["version"]),
                ),
            )
        ]
        == 1
    )


def test_unmatched_paths_share_one_metric_label(client: TestClient) -> None:
    for i in range(3):
        client.get(f"/random/{i}")
    s = _samples(client.get("/metrics").text)
    assert (
        s[("maskops_http_requests_total", (("method", "GET"), ("route", "<unmatched>"), ("status", "404")))]
        == 3
    )


def test_stats_aggregate(client: TestClient, face_photo: bytes) -> None:
    client.post("/v1/detect", files={"file": ("a.jpg", face_photo)}, params={"uncertain": "false"})
    client.post("/v1/detect", files={"file": ("a.txt", b"text")})
    body = client.get("/v1/stats").json()
    assert body["requests_by_route"]["POST /v1/detect"] == 2
    assert body["errors_by_code"] == {"unsupported_media_type": 1}
    assert body["images"] == {"ok": 1, "rejected": 1}
    assert body["faces_total"] == 2 and sum(body["faces_by_label"].values()) == 2
    lat = body["latency_window"]["POST /v1/detect"]
    assert lat["count"] == 2 and lat["p50_ms"] <= lat["p99_ms"]
    assert body["model_generation"] == 1 and body["queue"] == 0


def test_stats_count_api_routes_only(client: TestClient) -> None:
    for path in ("/", "/live", "/static/style.css", "/docs", "/favicon.ico", "/openapi.json", "/nope"):
        client.get(path)
    client.get("/health")
    body = client.get("/v1/stats").json()
    assert body["requests_by_route"] == {"GET /health": 1}
    assert body["responses_by_status"] == {"200": 1}
    assert set(body["latency_window"]) == {"GET /health"}
    s = _samples(client.get("/metrics").text)
    web = sum(
        v
        for (name, labels), v in s.items()
        if name == "maskops_http_requests_total" and ("route", "<non-api>") in labels
    )
    assert web == 6


def test_access_log_lines_are_json_with_the_request_id(client: TestClient) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    access = logging.getLogger("maskops.serve.access")
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        client.get("/health", headers={"X-Request-ID": "log-check-1"})
        client.get("/missing", headers={"X-Request-ID": "log-check-2"})
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [(x["request_id"], x["status"], x["route"]) for x in lines] == [
        ("log-check-1", 200, "/health"),
        ("log-check-2", 404, "<unmatched>"),
    ]
    assert all(x["level"] == "INFO" and "duration_ms" in x for x in lines)


def test_pool_refuses_work_past_the_queue_limit_and_runs_off_the_loop() -> None:
    settings = ServeSettings(workers=1, max_queue=1, timeout_s=5)
    pool = InferencePool(settings)
    release = threading.Event()
    loop_thread = threading.get_ident()

    def job() -> int:
        release.wait(5)
        return threading.get_ident()

    async def main() -> tuple[int, str]:
        first = asyncio.ensure_future(pool.run(job))
        await asyncio.sleep(0)  # let the first job take the only slot
        with pytest.raises(ServiceUnavailable) as info:
            await pool.run(job)
        release.set()
        return await first, info.value.code

    try:
        worker_thread, code = asyncio.run(main())
    finally:
        pool.shutdown()
    assert code == "overloaded"
    assert worker_thread != loop_thread


def test_each_worker_thread_has_its_own_detector() -> None:
    pool = InferencePool(ServeSettings(workers=2))
    barrier = threading.Barrier(2)

    def job() -> int:
        barrier.wait(5)  # forces the two jobs onto the two threads
        return id(pool.detector())

    async def main() -> list[int]:
        return list(await asyncio.gather(pool.run(job), pool.run(job)))

    try:
        ids = asyncio.run(main())
    finally:
        pool.shutdown()
    assert len(set(ids)) == 2
