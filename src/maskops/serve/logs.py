"""The service's logs: one JSON object per line for machines, a readable line for a person.

``MASKOPS_LOG_FORMAT`` (or ``maskops serve --log-format``) picks ``json`` or ``text``; the default
``auto`` writes text on a terminal and JSON otherwise (a container, a pipe, a log collector). Every
line carries the request id.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from maskops.serve.context import RequestIdFilter

# LogRecord attributes that are not ``extra=`` fields
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "color_message",
}


# an API key in a URL's query (the WebSocket takes ``?api_key=``, as browsers cannot set its headers)
_KEY_IN_QUERY = re.compile(r"(?i)([?&]api_key=)[^&\s\"']*")
REDACTED = "<redacted>"


class RedactKeysFilter(logging.Filter):
    """Hides an API key given in a URL's query in every line: uvicorn logs a WebSocket handshake
    with its path and query (``"WebSocket /v1/stream?api_key=..." [accepted]``), and keys must never
    reach the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "api_key=" in message.lower():
            record.msg, record.args = _KEY_IN_QUERY.sub(r"\1" + REDACTED, message), None
            if hasattr(record, "color_message"):
                del record.color_message  # uvicorn's coloured copy of the same line
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id", ...extra}``; exceptions as text."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """``12:04:31 INFO  maskops.serve.access  GET /v1/detect 200 14.2 ms  [request id]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s  %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", "-")
        return line if request_id in ("-", "") else f"{line}  [{request_id}]"


def resolve_format(fmt: str, stream: TextIO) -> str:
    """``json`` or ``text``; ``auto`` is text when ``stream`` is a terminal, else JSON."""
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        return "text" if isatty is not None and isatty() else "json"
    if fmt not in ("json", "text"):
        raise ValueError(f"unknown log format {fmt!r}; valid: auto, json, text")
    return fmt


def configure_logging(fmt: str = "auto", level: str | int = "INFO", stream: TextIO | None = None) -> str:
    """Replace the root handlers with one handler (JSON or text) that adds request ids.

    Args:
        fmt: ``auto``, ``json`` or ``text``.
        level: root log level.
        stream: where lines go (default: stderr).

    Returns:
        The format used (``json`` or ``text``).
    """
    stream = stream or sys.stderr
    fmt = resolve_format(fmt, stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactKeysFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # uvicorn's own loggers propagate to the root so they get the same format
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    return fmt
