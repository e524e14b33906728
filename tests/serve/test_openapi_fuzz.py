"""schemathesis against the app's own OpenAPI: no 5xx, and every response fits the documented schema."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from maskops.serve.app import create_app
from maskops.serve.settings import ServeSettings

pytestmark = pytest.mark.slow

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
]
MAX_EXAMPLES = 12


def test_every_operation_survives_generated_requests(make_settings: Callable[..., ServeSettings]) -> None:
    app = create_app(make_settings(max_batch=4))
    # a reload from "the registry" re-reads the test models dir (no MLflow in this test)
    app.state.service.loader.resolvers["registry"] = app.state.service.loader.resolvers["dir"]
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    documented = sum(len(methods) for methods in app.openapi()["paths"].values())
    assert len(operations) == documented >= 14  # every documented operation is fuzzed
    failures: dict[str, str] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            run()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # schemathesis raises a BaseExceptionGroup; collect them all
            subs = getattr(exc, "exceptions", ())  # e.g. Hypothesis' FlakyFailure: say what failed
            detail = "".join(f"\n  - {type(e).__name__}: {str(e)[:800]}" for e in subs)
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:1500]}{detail}"
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
