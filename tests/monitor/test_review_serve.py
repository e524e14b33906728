"""The review queue through the API and in a real browser (MASKOPS_STORE_FACES=hard)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from monitor_helpers import record
from sqlalchemy import select
from typer.testing import CliRunner

from maskops.cli import app as cli_app
from maskops.monitor.capture import HardCasePolicy
from maskops.monitor.schema import FeedbackRow
from maskops.monitor.store import write_records
from maskops.serve.app import create_app
from maskops.serve.settings import ServeSettings
from maskops.types import ModelSpec


@pytest.fixture
def settings_factory(tmp_path: Path, linear_model: Path) -> Callable[..., ServeSettings]:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(linear_model, models / "facemask.onnx")
    shutil.copy(ModelSpec.card_path(linear_model), models / "facemask.json")

    def make(**overrides: object) -> ServeSettings:
        values: dict[str, object] = {
            "models_dir": models,
            "work_dir": tmp_path / "work",
            "workers": 1,
            "log_format": "text",
            "warm_up": False,
            "store_faces": "hard",
        }
        values.update(overrides)
        return ServeSettings(**values)  # type: ignore[arg-type]

    return make


def test_review_api(settings_factory: Callable[..., ServeSettings], store_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(settings_factory(database_url=store_url))) as client:
        engine = client.app.state.prediction_store.engine
        assert client.app.state.prediction_store.hard_cases is not None
        assert client.get("/v1/review/next").json() == {"case": None, "waiting": 0, "storing_crops": True}
        write_records(engine, [record("a", HardCasePolicy()), record("b", HardCasePolicy())])
        nxt = client.get("/v1/review/next").json()
        assert nxt["waiting"] == 4
        case = nxt["case"]
        assert (case["request_id"], case["face_index"], case["label"]) == ("a", 1, "without_mask")
        crop = client.get(case["crop_url"])
        assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
        assert client.get("/v1/review/crops/a/0").status_code == 404
        skipped = client.get(
            "/v1/review/next", params={"after_request_id": "a", "after_face_index": 1}
        ).json()
        assert (skipped["case"]["request_id"], skipped["case"]["face_index"]) == ("a", 2)
        r = client.post(
            "/v1/feedback",
            json={"request_id": "a", "face_index": 1, "label": "with_mask", "origin": "review"},
        )
        assert r.status_code == 200, r.text
        assert client.get("/v1/review/next").json()["waiting"] == 3
        assert client.get("/review").status_code == 200
    out = CliRunner().invoke(
        cli_app, ["monitor", "export-reviewed", "--out", str(tmp_path / "rev"), "--db", store_url]
    )
    assert out.exit_code == 0, out.output
    assert "wrote 1 reviewed crop(s)" in out.output
    assert (tmp_path / "rev" / "with_mask" / "a_1.jpg").is_file()


def test_faces_off_keeps_no_crops(settings_factory: Callable[..., ServeSettings], tmp_path: Path) -> None:
    with TestClient(create_app(settings_factory(store_faces="off"))) as client:
        assert client.app.state.prediction_store.hard_cases is None
        assert client.get("/v1/review/next").json()["storing_crops"] is False


# ---- in a browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(settings_factory: Callable[..., ServeSettings]) -> Iterator[tuple[str, object]]:
    import uvicorn

    chromium = (
        os.environ.get("MASKOPS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if not chromium:
        if os.environ.get("MASKOPS_REQUIRE_BROWSER"):
            pytest.fail("MASKOPS_REQUIRE_BROWSER is set but chromium is not installed")
        pytest.skip("chromium not installed (apt-get install chromium; .ci/run installs it)")
    port = _free_port()
    app = create_app(settings_factory(port=port))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app, chromium
    srv.should_exit = True
    thread.join(10)


@pytest.mark.slow
def test_review_page_answers_with_the_keyboard(server) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    url, app, chromium = server
    engine = app.state.prediction_store.engine
    write_records(engine, [record("a", HardCasePolicy())])  # faces 1 and 2 are hard
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.goto(f"{url}/review")
            # a function, not an expression: the page's CSP forbids eval, which Playwright uses for those
            page.wait_for_function(
                "() => document.getElementById('status').textContent.includes('2 waiting')"
            )
            assert page.locator("#guess").inner_text().startswith("without_mask")
            assert page.evaluate("document.getElementById('crop').naturalWidth") > 0
            page.keyboard.press("5")  # skip face 1
            page.wait_for_function("() => document.getElementById('status').textContent.includes('face 2')")
            page.keyboard.press("4")  # face 2: not a face
            page.wait_for_function("() => document.getElementById('status').textContent.includes('face 1')")
            page.keyboard.press("2")  # face 1: without mask
            page.wait_for_function(
                "() => document.getElementById('status').textContent.includes('Nothing to review')"
            )
        finally:
            browser.close()
    with engine.connect() as conn:
        answers = conn.execute(
            select(FeedbackRow.face_index, FeedbackRow.true_label, FeedbackRow.origin)
        ).all()
    assert sorted(tuple(a) for a in answers) == [(1, "without_mask", "review"), (2, "not_a_face", "review")]


def test_served_hard_faces_keep_crops(settings_factory: Callable[..., ServeSettings], data_dir: Path) -> None:
    photo = data_dir / "facemask-voc" / "images" / "maksssksksss123.jpg"
    if not photo.is_file():
        pytest.skip(f"face photo not found at {photo} (set MASKOPS_DATA_DIR to the shared datasets)")
    # every face is hard below a top probability of 1
    with TestClient(create_app(settings_factory(hard_case_confidence=1.0))) as client:
        r = client.post("/v1/detect", files={"file": ("p.jpg", photo.read_bytes(), "image/jpeg")})
        assert r.status_code == 200, r.text
        faces = r.json()["faces"]
        assert client.app.state.prediction_store.writer.flush(20)
        nxt = client.get("/v1/review/next").json()
    assert nxt["waiting"] == len(faces) > 0
    assert nxt["case"]["request_id"] == r.json()["request_id"]
