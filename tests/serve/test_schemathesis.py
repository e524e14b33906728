"""schemathesis over every operation of the OpenAPI schema, with auth on: once with an ``admin`` key
(every route may answer) and once without a key (every protected route must refuse with a reason).
Valid requests (positive mode) and invalid ones (negative mode) are generated for each operation.

Checks: no 5xx; every 4xx is the JSON error envelope with a code, a message and the request id;
status codes, content types, headers and bodies as the schema declares them. The examples are
bounded per operation and derandomized, so a run is repeatable. schemathesis' ``negative_data_rejection``
is not used: it counts as accepted invalid data a malformed ``Authorization`` header sent beside a
valid ``X-API-Key`` (the key authorizes) and a repeated scalar query parameter (FastAPI takes the
last value), which are not faults.
``test_openapi_fuzz.py`` does the same with auth off.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks
from starlette.routing import Mount

from maskops.serve.app import create_app
from maskops.serve.keys import KeyStore
from maskops.serve.settings import ServeSettings

pytestmark = pytest.mark.slow

SCHEMA_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
# routes the schema leaves out on purpose: the web app's pages, the docs, the WebSocket, static files
NOT_IN_SCHEMA = {
    "GET /",
    "GET /live",
    "GET /models",
    "GET /review",
    "GET /monitor",
    "GET /favicon.ico",
    "GET /openapi.json",
    "GET /docs",
    "GET /docs/oauth2-redirect",
    "WS /v1/stream",
}
OPEN_OPERATIONS = {"GET /health", "GET /ready", "GET /metrics"}  # answer without a key


def error_has_a_reason(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """A schemathesis check: a 4xx is ``{"error": {"code", "message", "details", "request_id"}}``."""
    if not 400 <= response.status_code < 500:
        return None
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), (
        f"{response.status_code} without a JSON body: {response.headers}"
    )
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not the error envelope: {body}"
    err = body["error"]
    assert isinstance(err.get("code"), str) and err["code"], f"no error code: {body}"
    assert isinstance(err.get("message"), str) and err["message"], f"no reason: {body}"
    assert err.get("request_id") == response.headers.get("x-request-id", [None])[0], body
    return None


def schema_operations(app: FastAPI) -> set[str]:
    return {f"{m.upper()} {p}" for p, methods in app.openapi()["paths"].items() for m in methods}


def app_routes(app: FastAPI) -> set[str]:
    """Every ``METHOD /path`` the app routes (HEAD left out), the WebSocket as ``WS``, mounts skipped."""
    found: set[str] = set()

    def add(route: Any) -> None:
        original = getattr(route, "original_route", route)
        path = getattr(route, "path", "") or getattr(original, "path", "")
        if isinstance(original, Mount):
            return
        if type(original).__name__ == "APIWebSocketRoute":
            found.add(f"WS {path}")
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                found.add(f"{method} {path}")

    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)  # FastAPI's included routers
        for r in contexts() if contexts is not None else [route]:
            add(r)
    return found


def fuzz(
    app: FastAPI, headers: dict[str, str], check_list: list[Any], max_examples: int
) -> tuple[set[str], dict[str, str], Counter[int]]:
    """Run ``max_examples`` generated requests per operation; returns the operations tested, the
    failures by operation and the count of each status seen."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    tested: set[str] = set()
    failures: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err (a broken schema) fails here
        tested.add(f"{operation.method.upper()} {operation.path}")

        @given(case=st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode)))
        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            statuses[response.status_code] += 1
            case.validate_response(response, checks=check_list, headers=headers)

        try:
            run()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # schemathesis raises a BaseExceptionGroup; collect them all
            subs = getattr(exc, "exceptions", ())
            detail = "".join(f"\n  - {type(e).__name__}: {str(e)[:800]}" for e in subs)
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:1500]}{detail}"
    return tested, failures, statuses


@pytest.fixture
def auth_app(make_settings: Callable[..., ServeSettings], tmp_path: Path) -> tuple[FastAPI, str]:
    """Auth on, an admin key in the store; failed-auth limiting out of the way of the generated keys."""
    app = create_app(
        make_settings(auth=True, keys_db=tmp_path / "keys.db", max_batch=4, auth_failures_per_minute=0)
    )
    # a reload from "the registry" re-reads the test models dir (no MLflow in this test)
    app.state.service.loader.resolvers["registry"] = app.state.service.loader.resolvers["dir"]
    store: KeyStore = app.state.keys
    _, admin = store.create("fuzz", "admin")
    return app, admin


def test_the_fuzzed_operations_are_every_api_route(auth_app: tuple[FastAPI, str]) -> None:
    app, _ = auth_app
    operations = schema_operations(app)
    assert operations == app_routes(app) - NOT_IN_SCHEMA
    assert len(operations) >= 21


def test_every_operation_with_an_admin_key(auth_app: tuple[FastAPI, str]) -> None:
    app, admin = auth_app
    tested, failures, statuses = fuzz(
        app,
        {"X-API-Key": admin},
        [*SCHEMA_CHECKS, error_has_a_reason],
        max_examples=10,
    )
    assert tested == schema_operations(app)
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
    assert statuses[200] > 0 and not [s for s in statuses if s >= 500], statuses
    assert statuses[401] == 0, statuses  # the key was taken everywhere
    print(f"statuses with an admin key: {dict(sorted(statuses.items()))}")


def test_every_operation_without_a_key(auth_app: tuple[FastAPI, str]) -> None:
    app, _ = auth_app
    tested, failures, statuses = fuzz(app, {}, [*SCHEMA_CHECKS, error_has_a_reason], max_examples=4)
    assert tested == schema_operations(app)
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses[401] > 0, statuses
    print(f"statuses without a key: {dict(sorted(statuses.items()))}")


def test_every_protected_operation_refuses_a_missing_key_with_a_reason(auth_app: tuple[FastAPI, str]) -> None:
    """Whatever the request, no key means 401 ``unauthorized`` (or a 422 for a request that is
    refused before the key is looked at), never an answer."""
    app, _ = auth_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err (a broken schema) fails here
        label = f"{operation.method.upper()} {operation.path}"
        case = operation.Case(
            path_parameters={"request_id": "a" * 32, "face_index": 0} if "{" in operation.path else None
        )
        response = case.call()
        if label in OPEN_OPERATIONS:
            assert response.status_code == 200, (label, response.text)
            continue
        assert response.status_code == 401, (label, response.status_code, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == ["Bearer"]
