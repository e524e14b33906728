"""Without chromium the browser tests skip, and the run ends with a loud note; under .ci/run they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("MASKOPS_CHROMIUM", "MASKOPS_REQUIRE_BROWSER")}
    clean["PATH"] = str(tmp_path)  # no chromium on it
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(HERE / "test_browser.py"),
            "-k",
            "models",
        ],
        cwd=HERE.parent.parent,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_missing_chromium_is_reported_loudly(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "BROWSER TESTS SKIPPED: chromium is not installed" in run.stdout


@pytest.mark.slow
def test_missing_chromium_fails_when_the_browser_is_required(tmp_path: Path) -> None:
    run = _run(tmp_path, MASKOPS_REQUIRE_BROWSER="1")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "MASKOPS_REQUIRE_BROWSER is set" in run.stdout
