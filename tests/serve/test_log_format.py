"""The service's log format: readable text on a terminal, JSON elsewhere or when asked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from maskops.serve.context import reset_request_id, set_request_id
from maskops.serve.logs import configure_logging, resolve_format
from maskops.serve.settings import ServeSettings


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    ("fmt", "tty", "expected"),
    [("auto", True, "text"), ("auto", False, "json"), ("json", True, "json"), ("text", False, "text")],
)
def test_format_follows_the_terminal_unless_asked(fmt: str, tty: bool, expected: str) -> None:
    assert resolve_format(fmt, _Terminal() if tty else io.StringIO()) == expected


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, json, text"):
        resolve_format("xml", io.StringIO())


def test_text_lines_on_a_terminal_are_readable(restore_root: None) -> None:
    stream = _Terminal()
    assert configure_logging("auto", "INFO", stream) == "text"
    token = set_request_id("req-1")
    try:
        logging.getLogger("maskops.serve.access").info("GET /health 200 1.0 ms", extra={"status": 200})
    finally:
        reset_request_id(token)
    line = stream.getvalue().strip()
    assert not line.startswith("{")
    assert (
        "INFO" in line and "maskops.serve.access" in line and line.endswith("GET /health 200 1.0 ms  [req-1]")
    )


def test_json_lines_when_not_a_terminal(restore_root: None) -> None:
    stream = io.StringIO()
    assert configure_logging("auto", "INFO", stream) == "json"
    logging.getLogger("maskops.test").warning("hello", extra={"status": 503})
    rec = json.loads(stream.getvalue())
    assert rec["message"] == "hello" and rec["status"] == 503 and rec["level"] == "WARNING"


def test_the_setting_reads_maskops_log_format(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServeSettings().log_format == "auto"
    monkeypatch.setenv("MASKOPS_LOG_FORMAT", "json")
    assert ServeSettings().log_format == "json"
    monkeypatch.setenv("MASKOPS_LOG_FORMAT", "text")
    assert ServeSettings().log_format == "text"
