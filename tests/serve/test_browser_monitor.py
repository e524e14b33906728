"""The monitoring dashboard (/monitor) in Chromium: charts filled from replayed traffic, the drift
histograms against a reference profile, and an alert shown once it fires.

The server is the real app under uvicorn on loopback (tiny linear face classifier + YuNet) with a
SQLite store; images from facemask-voc are replayed through ``POST /v1/detect`` (plain at one site,
then darkened at another). The reference profile is made from the plain replay; the monitoring checks
and alerts come from the monitor itself (``run_checks`` with a drift rule on brightness), beside
three older checks written into the table (with measured accuracy, which needs feedback).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, insert
from test_browser import ARTIFACTS, CHROMIUM_ARGS, _chromium, _free_port

from maskops.monitor.alert_config import parse_monitor_config
from maskops.monitor.reference import ReferenceProfile, build_reference
from maskops.monitor.replay import http_sender, image_files, replay
from maskops.monitor.runner import run_checks
from maskops.monitor.schema import DriftResultRow, MonitorCheckRow
from maskops.monitor.window import load_window
from maskops.serve.app import create_app
from maskops.serve.settings import ServeSettings

pytestmark = pytest.mark.slow

REPLAYED = 12  # images per site


@dataclass
class Served:
    url: str
    app: FastAPI

    @property
    def engine(self) -> Engine:
        return self.app.state.prediction_store.engine  # type: ignore[no-any-return]

    def flush(self) -> None:
        assert self.app.state.prediction_store.writer.flush(30)


@pytest.fixture
def executable() -> str:
    return _chromium()


@pytest.fixture
def served(
    executable: str, make_settings: Callable[..., ServeSettings], tmp_path: Path, data_dir: Path
) -> Iterator[Served]:
    images = data_dir / "facemask-voc" / "images"
    if not images.is_dir():
        pytest.skip(
            f"facemask-voc images not found at {images} (set MASKOPS_DATA_DIR to the shared datasets)"
        )
    port = _free_port()
    app = create_app(make_settings(port=port, database_url=f"sqlite:///{tmp_path / 'store.db'}"))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield Served(f"http://127.0.0.1:{port}", app)
    srv.should_exit = True
    thread.join(10)


def replay_site(served: Served, data_dir: Path, site: str, transforms: list[tuple[str, float]]) -> int:
    """Replay the first images of facemask-voc at ``site``; returns the faces they added."""
    before = load_window(served.engine, last=100_000).n_faces
    files = image_files(data_dir / "facemask-voc" / "images")[:REPLAYED]
    summary = replay(files, http_sender(served.url, site=site), transforms=transforms)
    assert summary.ok == REPLAYED, summary.statuses
    served.flush()
    return load_window(served.engine, last=100_000).n_faces - before


def make_reference(served: Served, models_dir: Path) -> ReferenceProfile:
    window = load_window(served.engine, last=100_000)
    profile = build_reference(numeric=window.numeric, categorical=window.categorical, accuracy=0.95)
    profile.save(models_dir / "facemask.reference.json")
    return profile


def monitor_check(served: Served, profile: ReferenceProfile, faces: int) -> Any:
    """One check of the latest ``faces`` faces by the monitor, with a drift rule on brightness."""
    config = parse_monitor_config(
        {
            "interval": "1m",
            "window": {"last": faces},
            "channels": {"log": {"kind": "log"}},
            "rules": [
                {
                    "name": "input-drift",
                    "kind": "drift",
                    "params": {"features": ["brightness"]},
                    "channels": ["log"],
                }
            ],
        }
    )
    return run_checks(served.engine, config, reference=profile)


def add_checks(engine: Engine) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        for i, (est, measured, drifted) in enumerate(
            [(0.93, 0.95, False), (0.9, None, False), (0.74, 0.7, True)]
        ):
            at = now - timedelta(minutes=30 * (3 - i))
            check_id = conn.execute(
                insert(MonitorCheckRow).values(
                    created_at=at,
                    window_start=at - timedelta(minutes=30),
                    window_end=at,
                    site=None,
                    n_requests=REPLAYED,
                    n_faces=40,
                    drifted=drifted,
                    expected_accuracy=est,
                    accuracy_low=est - 0.04,
                    accuracy_high=est + 0.03,
                    measured_accuracy=measured,
                    n_feedback=0 if measured is None else 20,
                    reference_accuracy=0.95,
                    report={},
                )
            ).inserted_primary_key[0]
            conn.execute(
                insert(DriftResultRow).values(
                    check_id=check_id,
                    feature="brightness",
                    test="ks",
                    score=1e-9 if drifted else 0.4,
                    threshold=0.01,
                    drifted=drifted,
                )
            )


def points(page: object, selector: str) -> int:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    return int(page.locator(selector).first.get_attribute("data-points") or 0)


def test_monitor_page_charts_a_replay_and_shows_a_firing_alert(
    served: Served, executable: str, data_dir: Path, models_dir: Path
) -> None:
    from playwright.sync_api import Request, Route, expect, sync_playwright

    plain_faces = replay_site(served, data_dir, "gate-1", [])
    assert plain_faces > 0
    profile = make_reference(served, models_dir)
    add_checks(served.engine)
    first = monitor_check(served, profile, plain_faces)
    assert first.firing == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    requested: list[str] = []
    console_errors: list[str] = []

    def local(url: str) -> bool:
        return url.startswith((served.url + "/", "data:", "blob:"))

    def guard(route: Route, request: Request) -> None:
        route.continue_() if local(request.url) else route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=served.url)
        context.route("**/*", guard)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("request", lambda r: requested.append(r.url))
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        try:
            page.goto("/monitor")
            page.wait_for_selector("body[data-loads='1']")
            assert "error" not in (page.locator("#status").get_attribute("class") or "")
            # traffic: one bar per hour bucket with requests in it, latency lines
            assert points(page, "#chart-traffic") > 0
            assert points(page, "#chart-classes") > 0
            assert points(page, "#chart-compliance") > 0
            assert points(page, "#chart-sites") > 0
            requests = page.evaluate(
                "() => Chart.getChart('chart-traffic').data.datasets[0].data.reduce((a, b) => a + b, 0)"
            )
            assert requests == REPLAYED
            expect(page.locator("#sites-table tbody tr")).to_have_count(1)
            expect(page.locator("#sites-table tbody tr[data-site=gate-1]")).to_contain_text(str(REPLAYED))
            # estimated against measured accuracy: 4 checks with intervals, 2 of them measured
            assert points(page, "#chart-accuracy") >= 4 * 3 + 2
            expect(page.locator("#accuracy-note")).to_contain_text(f"{plain_faces} faces")
            # drift: every feature of the reference drawn against the window; nothing drifted yet
            assert page.locator("#drift-features .feature").count() >= 5
            expect(page.locator(".feature[data-feature=brightness]")).to_have_attribute(
                "data-drifted", "false"
            )
            assert points(page, ".feature[data-feature=brightness] canvas") > 0
            assert points(page, ".feature[data-feature=label] canvas") > 0
            expect(page.locator("#review-waiting")).to_have_text("0")
            expect(page.locator("#alerts-note")).to_contain_text("No alert firing")
            page.screenshot(path=str(ARTIFACTS / "monitor.png"), full_page=True)

            dark_faces = replay_site(served, data_dir, "gate-2", [("darken", 0.5)])
            second = monitor_check(served, profile, dark_faces)
            assert [rule for rule, _ in second.firing] == ["input-drift"]
            page.click("#refresh")
            page.wait_for_selector("body[data-loads='2']")
            firing = page.locator("#alerts-firing li[data-state=firing][data-rule=input-drift]")
            expect(firing).to_have_count(1)
            expect(firing).to_contain_text("brightness")
            expect(page.locator("#alerts-note")).to_contain_text("1 firing")
            expect(page.locator(".feature[data-feature=brightness]")).to_have_attribute(
                "data-drifted", "true"
            )
            expect(page.locator("#sites-table tbody tr")).to_have_count(2)
            expect(page.locator("#site option")).to_have_count(3)  # all sites, gate-1, gate-2
            page.screenshot(path=str(ARTIFACTS / "monitor-alert.png"), full_page=True)

            page.select_option("#site", "gate-2")
            page.wait_for_selector("body[data-loads='3']")
            expect(page.locator("#sites-table tbody tr")).to_have_count(1)

            # on a phone nothing sticks out sideways: the nav wraps, the site table scrolls in its box
            page.set_viewport_size({"width": 390, "height": 844})
            page.click("#refresh")
            page.wait_for_selector("body[data-loads='4']")
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.screenshot(path=str(ARTIFACTS / "monitor-390px.png"), full_page=True)
        finally:
            context.close()
            browser.close()
    assert [u for u in requested if not local(u)] == []
    assert console_errors == []


def test_monitor_page_without_a_store_says_so(
    executable: str, make_settings: Callable[..., ServeSettings]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    port = _free_port()
    app = create_app(make_settings(port=port, store_predictions=False))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            page = browser.new_page(base_url=f"http://127.0.0.1:{port}")
            page.goto("/monitor")
            page.wait_for_selector("body[data-loads='1']")
            expect(page.locator("#status")).to_contain_text("prediction store is off")
            expect(page.locator("#traffic-note")).to_contain_text("store is off")
            assert points(page, "#chart-traffic") == 0
            browser.close()
    finally:
        srv.should_exit = True
        thread.join(10)
