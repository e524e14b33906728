"""The ``maskops`` command line: one Typer app; each command group lives in ``maskops.commands``.

Commands are thin: they parse input, call one library function and format its output.
"""

from __future__ import annotations

import logging

import typer

from maskops import __version__
from maskops.commands import classify as classify_cmd
from maskops.commands import data as data_cmd
from maskops.commands import detect as detect_cmd
from maskops.commands import evaluate as evaluate_cmd
from maskops.commands import export as export_cmd
from maskops.commands import keys as keys_cmd
from maskops.commands import models as models_cmd
from maskops.commands import monitor as monitor_cmd
from maskops.commands import pipeline as pipeline_cmd
from maskops.commands import serve as serve_cmd
from maskops.commands import stats as stats_cmd
from maskops.commands import train as train_cmd
from maskops.commands import tune as tune_cmd
from maskops.commands import watch as watch_cmd
from maskops.logs import setup_logging

app = typer.Typer(
    name="maskops",
    help="Face-mask detection and its MLOps life cycle.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # click's plain help: flags without a "<bool>" placeholder, long help and defaults wrapped at
    # the terminal width instead of cut with an ellipsis in a narrow table column
    rich_markup_mode=None,
)
app.add_typer(data_cmd.app, name="data", help="Validate raw datasets and prepare versioned manifests.")
serve_cmd.register(app)
app.add_typer(keys_cmd.app, name="keys", help="Create, list and revoke API keys of the service.")
train_cmd.register(app)
tune_cmd.register(app)
export_cmd.register(app)
classify_cmd.register(app)
models_cmd.register(app)
evaluate_cmd.register(app)
detect_cmd.register(app)
watch_cmd.register(app)
stats_cmd.register(app)
app.add_typer(
    monitor_cmd.app,
    name="monitor",
    help="The prediction store: migrate, prune, measured accuracy, drift, replay, export-reviewed.",
)
app.add_typer(
    pipeline_cmd.app,
    name="pipeline",
    help="DVC stage entry points (validate, export, evaluate, release); Prefect flows (retrain, monitor).",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    setup_logging(logging.DEBUG if verbose else logging.INFO)


if __name__ == "__main__":  # pragma: no cover
    app()
