"""The threat model of SECURITY.md, checked: who may call what, failed-auth limiting, CORS, security
headers, no path from a request to the file system, uploads never written to disk."""

from __future__ import annotations

import logging
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from serve_helpers import assert_error, gradient, png_bytes
from starlette.routing import Mount
from test_browser import executable, page, server  # noqa: F401  (the browser fixtures)

from maskops.serve.authguard import AuthGuard
from maskops.serve.keys import KeyStore

REPO_ROOT = Path(__file__).resolve().parents[2]
SECURITY_MD = REPO_ROOT / "SECURITY.md"
_ROW = re.compile(
    r"^\|\s*(GET|POST|WS|MOUNT)\s*\|\s*`([^`]+)`\s*\|\s*(open|predict|admin)\s*\|", re.MULTILINE
)


def documented_routes() -> dict[tuple[str, str], str]:
    """The route table of SECURITY.md: (method, path) -> role."""
    return {(m, p): role for m, p, role in _ROW.findall(SECURITY_MD.read_text(encoding="utf-8"))}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app answers: API routes, pages, the WebSocket and the static mounts."""
    found: set[tuple[str, str]] = set()

    def add(route: Any) -> None:
        original = getattr(route, "original_route", route)
        path = getattr(route, "path", "") or getattr(original, "path", "")
        if isinstance(original, Mount):
            found.add(("MOUNT", path))
        elif type(original).__name__ == "APIWebSocketRoute":
            found.add(("WS", path))
        else:
            for method in getattr(route, "methods", None) or ():
                if method != "HEAD":
                    found.add((method, path))

    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)  # FastAPI's included routers
        for r in contexts() if contexts is not None else [route]:
            add(r)
    return found


@pytest.fixture
def auth_app(make_client: Callable[..., TestClient], tmp_path: Path) -> tuple[TestClient, str, str]:
    client = make_client(auth=True, keys_db=tmp_path / "keys.db", auth_failures_per_minute=1000)
    store: KeyStore = client.app.state.keys  # type: ignore[attr-defined]
    _, predict = store.create("app", "predict")
    _, admin = store.create("ops", "admin")
    return client, predict, admin


def test_every_route_is_in_the_threat_model_table(client: TestClient) -> None:
    documented = set(documented_routes())
    actual = app_routes(client.app)  # type: ignore[arg-type]
    assert len(actual) >= 30  # the enumeration sees the included routers
    assert actual - documented == set(), "routes missing from the table in SECURITY.md"
    assert documented - actual == set(), "SECURITY.md lists routes the app does not have"


def _call(client: TestClient, method: str, path: str, key: str | None) -> int:
    url = path.replace("{request_id}", "r1").replace("{face_index}", "0")
    if method == "MOUNT":
        url = "/static/vendor/swagger-ui.css" if path == "/static/vendor" else "/static/style.css"
        method = "GET"
    headers = {"X-API-Key": key} if key else {}
    if method == "WS":
        try:
            with client.websocket_connect(url, headers=headers) as ws:
                ws.close()
                return 101
        except Exception as exc:  # the server closed before accepting: starlette's WebSocketDisconnect
            return int(getattr(exc, "code", 0))
    return client.request(method, url, headers=headers).status_code


def test_each_route_asks_for_the_role_of_the_table(auth_app: tuple[TestClient, str, str]) -> None:
    client, predict, admin = auth_app
    wrong: list[str] = []
    for (method, path), role in sorted(documented_routes().items()):
        anonymous = _call(client, method, path, None)
        with_predict = _call(client, method, path, predict)
        with_admin = _call(client, method, path, admin)
        refused = {401, 403, 1008}
        expect_anonymous_refused = role != "open"
        if (anonymous in refused) != expect_anonymous_refused:
            wrong.append(f"{method} {path} ({role}): no key -> {anonymous}")
        if (with_predict in refused) != (role == "admin"):
            wrong.append(f"{method} {path} ({role}): predict key -> {with_predict}")
        if with_admin in refused:
            wrong.append(f"{method} {path} ({role}): admin key -> {with_admin}")
    assert not wrong, "\n".join(wrong)


def test_a_predict_key_gets_403_on_every_admin_route(auth_app: tuple[TestClient, str, str]) -> None:
    client, predict, _ = auth_app
    admin_routes = [(m, p) for (m, p), role in documented_routes().items() if role == "admin"]
    assert ("POST", "/v1/models/reload") in admin_routes
    for method, path in admin_routes:
        assert_error(client.request(method, path, headers={"X-API-Key": predict}), 403, "forbidden")


# --- failed authentication


def test_invalid_keys_are_limited_per_address_and_logged_without_the_key(
    make_client: Callable[..., TestClient], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(auth=True, keys_db=tmp_path / "k.db", auth_failures_per_minute=3)
    store: KeyStore = client.app.state.keys  # type: ignore[attr-defined]
    _, good = store.create("app")
    guess = "mko_0123abcd_" + "G" * 43
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        assert_error(client.get("/v1/stats", headers={"X-API-Key": guess}), 401, "unauthorized")
    r = client.get("/v1/stats", headers={"X-API-Key": guess})
    err = assert_error(r, 429, "rate_limited")
    assert 1 <= int(r.headers["retry-after"]) <= 60 and "failed authentications" in err["message"]
    # the address is blocked whatever it sends, the WebSocket included
    assert_error(client.get("/v1/stats", headers={"X-API-Key": good}), 429, "rate_limited")
    with pytest.raises(Exception) as closed, client.websocket_connect(f"/v1/stream?api_key={guess}"):
        pass
    assert getattr(closed.value, "code", None) == 1008
    failures = [r for r in caplog.records if r.name == "maskops.serve.auth"]
    assert len(failures) == 3 and all("testclient" in r.getMessage() for r in failures)
    for secret in (guess, guess.split("_", 2)[2], good, good.split("_", 2)[2]):
        assert secret not in caplog.text
    # requests without a key do not count (a page loaded before its key was typed)
    other = make_client(auth=True, keys_db=tmp_path / "k2.db", auth_failures_per_minute=1)
    for _ in range(3):
        assert_error(other.get("/v1/stats"), 401, "unauthorized")


def test_the_failed_auth_window_slides() -> None:
    now = [0.0]
    guard = AuthGuard(limit=2, window_s=60.0, clock=lambda: now[0])
    guard.failed("a", "x")
    now[0] = 30.0
    guard.failed("a", "x")
    assert guard.blocked_for("a") == pytest.approx(30.0)
    assert guard.blocked_for("b") == 0.0
    now[0] = 60.5  # the first failure left the window
    assert guard.blocked_for("a") == 0.0
    assert AuthGuard(limit=0).blocked_for("a") == 0.0  # 0 = off


def test_keys_are_never_read_from_config_files_or_stored_plain(tmp_path: Path) -> None:
    """Keys live in the key store (hashed), or come from the environment or a secret file
    (``MASKOPS_API_KEYS``, a secret value, and ``MASKOPS_API_KEYS_FILE``, a path); no other setting
    takes a key, and the task configs hold none."""
    from pydantic import SecretStr

    from maskops.config import TaskConfig
    from maskops.serve.settings import ServeSettings

    fields = set(ServeSettings.model_fields)
    assert {f for f in fields if re.search(r"api_?key|secret|token|password", f)} == {
        "api_keys",
        "api_keys_file",
    }
    assert ServeSettings.model_fields["api_keys"].annotation == SecretStr | None
    assert "**" in repr(ServeSettings(api_keys="ops:admin:" + "k" * 32).api_keys)
    assert not {f for f in TaskConfig.model_fields if re.search(r"api_?key|secret|token|password", f)}
    store = KeyStore(tmp_path / "k.db")
    _, plain = store.create("x")
    store.close()
    assert plain.encode() not in (tmp_path / "k.db").read_bytes()


# --- CORS and headers


def test_cors_is_closed_by_default(client: TestClient) -> None:
    r = client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    pre = client.options(
        "/v1/detect",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in pre.headers


def test_cors_allows_only_the_configured_origins(make_client: Callable[..., TestClient]) -> None:
    client = make_client(cors_origins=["https://app.example"])
    ok = client.get("/v1/models", headers={"Origin": "https://app.example"})
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    other = client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


PAGES = ["/", "/live", "/models", "/review", "/monitor", "/docs", "/docs/oauth2-redirect"]


def _csp(value: str) -> dict[str, str]:
    return {d.split()[0]: d.strip() for d in value.split(";") if d.strip()}


@pytest.mark.parametrize(
    "path",
    [
        *PAGES,
        "/health",
        "/v1/models",
        "/static/style.css",
        "/favicon.ico",
        "/metrics",
        "/nowhere",
        "/openapi.json",
    ],
)
def test_security_headers_on_every_response(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    csp = _csp(r.headers["content-security-policy"])
    assert csp["default-src"] == "default-src 'self'"
    assert csp["frame-ancestors"] == "frame-ancestors 'none'"
    assert "unsafe-inline" not in csp["script-src"] and "unsafe-eval" not in csp["script-src"]
    assert "unsafe-inline" not in csp.get("style-src", "")


def test_security_headers_on_errors_the_middleware_writes(client: TestClient) -> None:
    r = client.post("/v1/detect", content=b"x", headers={"content-length": str(10**9)})
    assert r.status_code == 413 and r.headers["x-frame-options"] == "DENY"


def test_the_docs_page_allows_exactly_its_inline_script_by_hash(client: TestClient) -> None:
    r = client.get("/docs")
    script_src = _csp(r.headers["content-security-policy"])["script-src"]
    assert re.fullmatch(r"script-src 'self' 'sha256-[A-Za-z0-9+/=]{44}'", script_src), script_src


STATIC = Path(__file__).resolve().parents[2] / "src" / "maskops" / "serve" / "static"


@pytest.mark.parametrize("name", sorted(p.name for p in STATIC.glob("*.html")))
def test_pages_have_no_inline_script_style_or_handler(name: str) -> None:
    html = (STATIC / name).read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert "<style" not in html, "inline <style>"
    assert not re.search(r"\sstyle\s*=", html), "style attribute"
    assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE), "inline event handler"
    assert "javascript:" not in html.lower()
    for src in re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html):
        assert not re.match(r"(?i)(https?:)?//", src), f"{name} loads {src} from another host"


# --- no path from a request to the file system


class _OpenSpy:
    """Records every file the process opens while active (a ``sys.addaudithook`` cannot be removed,
    so one hook is installed per process and switched on and off)."""

    installed = False
    active = False
    opened: ClassVar[list[str]] = []

    @classmethod
    def hook(cls, event: str, args: tuple[Any, ...]) -> None:
        if cls.active and event in ("open", "os.listdir", "os.scandir") and args and args[0] is not None:
            cls.opened.append(str(args[0]))


@pytest.fixture
def open_spy() -> Iterator[type[_OpenSpy]]:
    if not _OpenSpy.installed:
        sys.addaudithook(_OpenSpy.hook)
        _OpenSpy.installed = True
    _OpenSpy.opened = []
    _OpenSpy.active = True
    try:
        yield _OpenSpy
    finally:
        _OpenSpy.active = False


HOSTILE_NAMES = [
    "../facemask",
    "../../../../etc/passwd",
    "/etc/passwd",
    "facemask.onnx",
    "models/facemask",
    "..\\facemask",
    "%2e%2e%2ffacemask",
    "facemask\x00.onnx",
    "~/facemask",
    ".",
    "..",
]


def test_model_names_are_looked_up_never_joined_into_paths(
    client: TestClient, plain_jpeg: bytes, open_spy: type[_OpenSpy]
) -> None:
    for name in HOSTILE_NAMES:
        r = client.post("/v1/classify", params={"model": name}, files={"file": ("a.jpg", plain_jpeg)})
        assert r.status_code in (404, 422), (name, r.status_code, r.text)
        assert r.json()["error"]["code"] in ("unknown_model", "validation_error")
    stems = {"passwd", "facemask", "facemask.onnx", "models"}
    touched = [p for p in open_spy.opened if Path(p).name in stems or "etc/passwd" in p]
    assert touched == [], touched


@pytest.mark.parametrize(
    "path",
    [
        "/static/../keys.db",
        "/static/..%2f..%2fkeys.db",
        "/static/%2e%2e/%2e%2e/serve/keys.py",
        "/static//etc/passwd",
        "/static/vendor/..%2f..%2fapp.py",
        "/v1/review/crops/..%2F..%2Fetc%2Fpasswd/0",
        "/v1/review/crops/%2Fetc%2Fpasswd/0",
    ],
)
def test_traversal_paths_read_no_file(client: TestClient, path: str, open_spy: type[_OpenSpy]) -> None:
    r = client.get(path)
    assert r.status_code in (404, 422), (path, r.status_code)
    assert not [p for p in open_spy.opened if p.endswith(("keys.db", "passwd", "keys.py", "app.py"))]


# --- uploads never written to disk


def _files_under(*roots: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for r in roots if r.exists() for p in r.rglob("*") if p.is_file()}


@pytest.mark.parametrize("store_faces", ["off", "hard"])
def test_uploads_are_not_written_to_disk(
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    store_faces: str,
) -> None:
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    rollovers: list[int] = []
    real_rollover = tempfile.SpooledTemporaryFile.rollover

    def spy(self: Any) -> None:
        rollovers.append(1)
        real_rollover(self)

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", spy)
    client = make_client(store_faces=store_faces)
    work = Path(client.app.state.settings.work_dir)  # type: ignore[attr-defined]
    small = png_bytes(gradient(64, 48))
    assert client.post("/v1/detect", files={"file": ("warm.png", small)}).status_code == 200
    before = _files_under(tmp, work)
    # a large upload (over Starlette's 1 MB spool: its default would roll it to a temp file)
    rng = __import__("numpy").random.default_rng(0)
    big = png_bytes(rng.integers(0, 255, (700, 700, 3), dtype="uint8"))
    assert len(big) > 1024 * 1024
    marker = b"maskops-upload-marker-7f3a"
    for data in (big, small + marker):
        r = client.post("/v1/detect", files={"file": ("u.png", data)})
        assert r.status_code == 200, r.text
        r = client.post("/v1/detect/batch", files=[("files", ("a.png", data)), ("files", ("b.png", small))])
        assert r.status_code == 200, r.text
    r = client.post("/v1/classify", files={"file": ("c.png", big)})
    assert r.status_code == 200, r.text
    client.__exit__(None, None, None)  # the store writes what is queued
    after = _files_under(tmp, work)
    assert rollovers == [], "an upload was spooled to a temporary file"
    assert sorted(set(after) - set(before)) == [] or store_faces == "hard"
    new_files = sorted(set(after) - set(before))
    assert not [p for p in new_files if Path(p).is_relative_to(tmp)], new_files
    for path in after:
        if Path(path).is_relative_to(work) and not Path(path).is_relative_to(work / "models"):
            assert marker not in Path(path).read_bytes(), f"upload bytes in {path}"


# --- the policy in a real browser: no page breaks under it

BROWSER_PAGES = ["/", "/live", "/models", "/review", "/monitor", "/docs"]


@pytest.mark.slow
def test_no_page_violates_its_content_security_policy(page: Any) -> None:  # noqa: F811
    """Chromium loads each page (its scripts run, the live page opens the fake camera and the
    stream): no CSP violation is reported, in the console or as a ``securitypolicyviolation``."""
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.add_init_script(
        "window.__csp = []; document.addEventListener('securitypolicyviolation',"
        " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile));"
    )
    for path in BROWSER_PAGES:
        response = page.goto(path)
        assert response is not None and response.ok, path
        assert "content-security-policy" in response.headers
        page.wait_for_load_state("networkidle")
        violations = page.evaluate("window.__csp")
        assert violations == [], (path, violations)
    if "/docs" in BROWSER_PAGES:  # Swagger UI rendered the operations: its start-up script ran
        page.goto("/docs")
        page.wait_for_selector(".opblock", timeout=60_000)
        assert page.evaluate("window.__csp") == []
    assert not [m for m in console if "Content Security Policy" in m], console


def test_every_test_named_in_security_md_exists() -> None:
    """SECURITY.md names its evidence as ``file::test``: each must be a test function of that file."""
    text = SECURITY_MD.read_text(encoding="utf-8")
    named = set(re.findall(r"`(test_\w+\.py)::(test_\w+)`", text))
    assert len(named) >= 20
    missing = []
    for file, test in sorted(named):
        source = (Path(__file__).parent / file).read_text(encoding="utf-8")
        if not re.search(rf"^def {test}\(", source, re.MULTILINE):
            missing.append(f"{file}::{test}")
    assert not missing, missing
