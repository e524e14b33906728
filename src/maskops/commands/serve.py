"""``maskops serve``: the web app and API."""

from __future__ import annotations

from typing import Any

import typer


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
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            log_level=settings.log_level.lower(),
        )
