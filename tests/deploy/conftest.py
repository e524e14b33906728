"""Deployment tests: the `container` marker, and a loud line when the container test could not run."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "container: builds and runs the serving image with podman (skipped where it cannot run)"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = [
        r for r in terminalreporter.stats.get("skipped", []) if "tests/deploy/test_container.py" in r.nodeid
    ]
    if not skipped:
        return
    terminalreporter.write_sep(
        "!", "SERVING IMAGE NOT BUILT OR RUN: the container test was skipped", red=True
    )
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        terminalreporter.write_line(reason, red=True, bold=True)
