"""``maskops serve``: the web app and API."""

from __future__ import annotations

import signal
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from maskops.serve.settings import ServeSettings


def uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    """The keyword arguments ``maskops serve`` gives uvicorn (besides the app).

    WebSocket limits: a message may be at most one image (``max_image_bytes``, the largest frame the
    stream can use); a longer one is closed by uvicorn with 1009 as soon as its frame header
    announces the length, before the payload is read. Compression is off (JPEG frames do not
    shrink, and a deflated message costs a window per connection); a client that stops answering
    pings is dropped after ``ws_ping_interval + ws_ping_timeout`` seconds.

    On SIGTERM the requests in flight get ``shutdown_timeout_s`` seconds to finish; no new
    connection is accepted meanwhile.
    """
    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "log_level": settings.log_level.lower(),
        "ws_max_size": settings.max_image_bytes,
        "ws_max_queue": 4,
        "ws_per_message_deflate": False,
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        "timeout_graceful_shutdown": settings.shutdown_timeout_s,
    }


def exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside uvicorn's own handling. uvicorn stops gracefully on SIGTERM, then raises the
    signal again for the handler it found: this one makes that a clean exit 0 (the default handler
    would end the process as killed by SIGTERM). Before uvicorn starts, it exits 0 at once."""
    raise SystemExit(0)


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str = typer.Option(None, help="Bind address (default: MASKOPS_HOST or 127.0.0.1)."),
        port: int = typer.Option(None, help="Port (default: MASKOPS_PORT or 8000)."),
        workers: int = typer.Option(
            None, help="Inference threads (default: MASKOPS_WORKERS or one per core)."
        ),
        auth: bool = typer.Option(None, "--auth/--no-auth", help="Require API keys (default: MASKOPS_AUTH)."),
        log_format: str = typer.Option(
            None,
            help="json or text (default: MASKOPS_LOG_FORMAT, else text on a terminal and JSON otherwise).",
        ),
    ) -> None:
        """Start the web app and API (models from MASKOPS_MODELS_DIR, default models/)."""
        import uvicorn

        from maskops.serve.app import create_app
        from maskops.serve.keys import KeyProvisioningError
        from maskops.serve.logs import configure_logging
        from maskops.serve.settings import ServeSettings

        overrides: dict[str, Any] = {
            k: v
            for k, v in {
                "host": host,
                "port": port,
                "workers": workers,
                "auth": auth,
                "log_format": log_format,
            }.items()
            if v is not None
        }
        try:
            settings = ServeSettings(**overrides)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from exc
        configure_logging(settings.log_format, settings.log_level)
        previous = signal.signal(signal.SIGTERM, exit_on_sigterm)
        try:
            try:
                app = create_app(settings)
            except KeyProvisioningError as exc:  # names the variable or file and the entry, never a key
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(code=2) from exc
            uvicorn.run(app, **uvicorn_options(settings))
        finally:
            signal.signal(signal.SIGTERM, previous)
