"""``maskops serve``: the web app and API."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str = typer.Option(None, help="Bind address (default: MASKOPS_HOST or 127.0.0.1)."),
        port: int = typer.Option(None, help="Port (default: MASKOPS_PORT or 8000)."),
    ) -> None:
        """Start the web app and API."""
        import uvicorn

        from maskops.config import Settings
        from maskops.serve.app import create_app

        settings = Settings()
        uvicorn.run(
            create_app(settings),
            host=host or settings.host,
            port=port or settings.port,
            log_level=settings.log_level.lower(),
        )
