"""The web app in a real browser: Playwright (Python) driving Debian's chromium, fake camera included.

The server is the real app under uvicorn on loopback (tiny linear face classifier + YuNet).
Screenshots go to ``$MASKOPS_TEST_ARTIFACTS`` (default ``test-artifacts/``)/browser.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn

from maskops.serve.app import create_app
from maskops.serve.settings import ServeSettings

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("MASKOPS_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


# the reason of the skip; tests/serve/conftest.py repeats these skips loudly at the end of the run
NO_CHROMIUM = "chromium not installed (apt-get install chromium; .ci/run installs it)"


def _chromium() -> str:
    path = os.environ.get("MASKOPS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        if os.environ.get("MASKOPS_REQUIRE_BROWSER"):  # set by .ci/run: there a skip is a failure
            pytest.fail(f"MASKOPS_REQUIRE_BROWSER is set but {NO_CHROMIUM}")
        pytest.skip(NO_CHROMIUM)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def executable() -> str:
    return _chromium()  # before the server starts: no server for a test that cannot run


@pytest.fixture
def server(make_settings: Callable[..., ServeSettings]) -> Iterator[str]:
    port = _free_port()
    app = create_app(make_settings(port=port))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def page(executable: str, server: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server)
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        yield pg
        context.close()
        browser.close()


def test_upload_a_face_photo_shows_boxes_and_labels(page: object, face_photo: bytes, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    photo = tmp_path / "two-faces.jpg"
    photo.write_bytes(face_photo)
    page.goto("/")
    page.set_input_files("#picker", str(photo))
    card = page.locator(".result[data-status=ok]")
    expect(card).to_have_count(1)
    expect(card.locator(".face-list li")).to_have_count(2)
    labels = card.locator(".face-list li").evaluate_all("els => els.map(e => e.dataset.label)")
    assert all(
        label in ("with_mask", "without_mask", "mask_weared_incorrect", "uncertain") for label in labels
    )
    assert card.get_attribute("data-faces") == "2"
    for li in card.locator(".face-list li[data-label=uncertain]").all():
        assert "%" not in li.inner_text()  # the reason, not the guess's confidence
    # boxes are drawn: the canvas has pixels of a class colour that the photo does not have
    drawn = card.locator("canvas").evaluate(
        """c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const colours = [[60,180,75],[230,48,48],[255,140,0],[160,160,160]];
            let n = 0;
            for (let i = 0; i < d.length; i += 4)
              for (const [r,g,b] of colours)
                if (d[i] === r && d[i+1] === g && d[i+2] === b) { n++; break; }
            return n;
        }"""
    )
    assert drawn > 100
    expect(page.locator("#summary .chip")).not_to_have_count(0)
    expect(page.locator("#download")).to_be_enabled()
    with page.expect_download() as info:
        page.click("#download")
    saved = tmp_path / "results.json"
    info.value.save_as(saved)
    assert '"two-faces.jpg"' in saved.read_text()
    page.screenshot(path=str(ARTIFACTS / "upload-faces.png"), full_page=True)


def test_upload_a_text_file_shows_the_rejection(page: object, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    note = tmp_path / "notes.txt"
    note.write_text("this is not an image")
    page.goto("/")
    page.set_input_files("#picker", str(note))
    rejected = page.locator(".result.reject")
    expect(rejected).to_have_count(1)
    expect(rejected.locator(".message")).to_contain_text("not an image")
    expect(rejected.locator(".message")).to_contain_text("415")
    page.screenshot(path=str(ARTIFACTS / "upload-rejected.png"), full_page=True)


def test_live_page_streams_the_fake_camera(page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto("/live")
    page.click("#start")
    page.wait_for_function("() => Number(document.querySelector('#frames').textContent) >= 5", timeout=60_000)
    expect(page.locator("#fps")).not_to_have_text("0.0")
    assert "error" not in (page.locator("#status").get_attribute("class") or "")
    page.screenshot(path=str(ARTIFACTS / "live-fake-camera.png"), full_page=True)
    page.click("#stop")
    expect(page.locator("#status")).to_have_text("camera off")


def test_models_page_lists_the_cards(page: object) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto("/models")
    expect(page.locator("section.model")).to_have_count(2)
    face = page.locator("section.model[data-name=facemask]")
    expect(face.locator("h2")).to_contain_text("face classifier")
    expect(face).to_contain_text("with_mask, without_mask, mask_weared_incorrect")
    page.screenshot(path=str(ARTIFACTS / "models.png"), full_page=True)


@pytest.mark.parametrize("path", ["/", "/live", "/models", "/docs"])
def test_pages_load_nothing_from_another_host(page: object, server: str, path: str) -> None:
    """Every request a page makes goes to the app (the API docs included), and none fails."""
    from playwright.sync_api import Page, Request, Response, Route

    assert isinstance(page, Page)
    requested: list[str] = []
    failed: list[str] = []
    console_errors: list[str] = []

    def local(url: str) -> bool:
        return url.startswith((server + "/", "data:", "blob:")) or url == server

    def guard(route: Route, request: Request) -> None:
        # the test must not depend on this machine's network: anything else is refused here
        route.continue_() if local(request.url) else route.abort()

    def on_response(response: Response) -> None:
        if response.status >= 400:
            failed.append(f"{response.status} {response.url}")

    page.context.route("**/*", guard)
    page.on("request", lambda r: requested.append(r.url))
    page.on("response", on_response)
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.goto(path)
    if path == "/docs":
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "maskops" in page.locator(".swagger-ui .info .title").inner_text()
        page.wait_for_selector(".opblock-tag", timeout=30_000)
    page.wait_for_load_state("networkidle")
    assert page.request.get(f"{server}/favicon.ico").status == 200  # no 404 logged for the tab icon
    assert requested
    assert [u for u in requested if not local(u)] == []
    assert failed == []
    assert [e for e in console_errors if "404" in e or "Failed to load" in e] == []
    page.screenshot(path=str(ARTIFACTS / f"page{path.replace('/', '-') or '-index'}.png"))


def test_face_tags_stay_inside_the_image_and_apart(page: object) -> None:
    """Crowded faces at the edges: every tag fits the canvas, none covers another, uncertain says why."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.goto("/")
    tags = page.evaluate(
        """() => {
            const c = document.createElement('canvas');
            c.width = 332; c.height = 250;
            const faces = [
              {box: [300, 2, 330, 30], label: 'without_mask', confidence: 0.99},     // top-right corner
              {box: [290, 20, 325, 55], label: 'with_mask', confidence: 0.91},       // just below it
              {box: [0, 100, 40, 140], label: 'mask_weared_incorrect', confidence: 0.7},
              {box: [10, 104, 50, 144], label: 'uncertain', confidence: 0.98,
               uncertain_reason: 'too dark (brightness 20 < 35)'},                  // overlaps the one before
              {box: [120, 200, 160, 249], label: 'with_mask', confidence: 0.88},     // bottom edge
            ];
            return MaskOps.drawFaces(c.getContext('2d'), faces, 1);
        }"""
    )
    assert len(tags) == 5
    for t in tags:
        assert t["x"] >= 0 and t["x"] + t["w"] <= 332 + 1e-6, t
        assert t["y"] >= 0 and t["y"] + t["h"] <= 250 + 1e-6, t
    for i, a in enumerate(tags):
        for b in tags[i + 1 :]:
            apart = (
                a["x"] + a["w"] <= b["x"]
                or b["x"] + b["w"] <= a["x"]
                or a["y"] + a["h"] <= b["y"]
                or b["y"] + b["h"] <= a["y"]
            )
            assert apart, (a, b)
    texts = {t["text"] for t in tags}
    assert "uncertain: too dark" in texts
    assert not any(t.startswith("uncertain") and "%" in t for t in texts)


@pytest.mark.parametrize("width", [390, 320])  # at 320 px the button wraps onto its own line
def test_choose_files_button_leaves_the_drop_text_readable_on_a_phone(page: object, width: int) -> None:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.set_viewport_size({"width": width, "height": 844})
    page.goto("/")
    rects = page.evaluate(
        """() => {
            const r = (el) => { const b = el.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
            const drop = document.getElementById('drop');
            const button = drop.querySelector('.button');
            // the drop text, line by line (a Range gives one rectangle per line box)
            const texts = [];
            for (const p of drop.querySelectorAll('p')) {
              for (const node of p.childNodes) {
                if (node === button) continue;
                const range = document.createRange();
                range.selectNodeContents(node);
                for (const b of range.getClientRects()) texts.push([b.left, b.top, b.right, b.bottom]);
              }
            }
            return {button: r(button), texts, drop: r(drop)};
        }"""
    )
    bx1, by1, bx2, by2 = rects["button"]
    dx1, _, dx2, _ = rects["drop"]
    assert dx1 <= bx1 and bx2 <= dx2
    for x1, y1, x2, y2 in rects["texts"]:
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        assert bx2 <= x1 or x2 <= bx1 or by2 <= y1 or y2 <= by1, (
            "button covers text",
            rects["button"],
            (x1, y1, x2, y2),
        )
    page.screenshot(path=str(ARTIFACTS / f"upload-{width}px.png"))
