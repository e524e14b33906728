"""Log lines go to stderr, so `--json` output on stdout stays parseable."""

from __future__ import annotations

import logging

import pytest

from maskops.logs import setup_logging


def test_log_lines_go_to_stderr_not_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    root.handlers = []  # basicConfig only configures a root without handlers
    try:
        setup_logging()
        logging.getLogger("maskops.test").info("validated 3 files")
        out, err = capsys.readouterr()
        assert "validated 3 files" in err
        assert out == ""
    finally:
        root.handlers = saved
        root.setLevel(level)
