"""``maskops pipeline export|evaluate|release|retrain|monitor``: the DVC stages' entry points
(``dvc.yaml``) and the Prefect flows, run once or served on a schedule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import typer

app = typer.Typer(no_args_is_help=True)

TASK = typer.Option(..., "--task", help="Task name (configs/tasks/<task>.yaml) or a task YAML path.")


def _write(out: Path | None, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, default=str) + "\n"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    typer.echo(text, nl=False)


def _flag(value: str, option: str) -> bool:
    """``true``/``false`` of an option DVC fills from params.yaml (a YAML boolean renders as either)."""
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise typer.BadParameter(f"{option} takes true or false, got {value!r}")
    return lowered == "true"


def _approval(value: str) -> Literal["auto", "human"]:
    if value not in ("auto", "human"):
        raise typer.BadParameter(f"--approval takes auto or human, got {value!r}")
    return "auto" if value == "auto" else "human"


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2)


@app.command()
def validate(
    task: str = TASK,
    source: str = typer.Option(..., "--source", help="The task's source to validate."),
    out: Path = typer.Option(None, "--out", help="Write the summary and the data fingerprint (JSON) here."),
    report: Path = typer.Option(None, "--report", help="Write the full validation report (JSON) here."),
) -> None:
    """Validate one raw source of a task; exit 1 when a blocking rule fires (the summary is written)."""
    from maskops.config import Settings, load_task
    from maskops.pipelines.stages import validate_source

    settings = Settings()
    try:
        result = validate_source(load_task(task, settings), source, settings, report)
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(exc) from None
    _write(out, result)
    if not result["ok"]:
        typer.echo(f"blocked by: {', '.join(result['blocking'])}", err=True)
        raise typer.Exit(code=1)


@app.command()
def export(
    task: str = TASK,
    checkpoint: Path = typer.Option(..., "--checkpoint", help="The run's best.pt."),
    out: Path = typer.Option(..., "--out", help="A new folder for the ONNX files and cards."),
    manifest: Path = typer.Option(None, "--manifest", help="Manifest CSV (default: the run's)."),
    weights: str = typer.Option("int8", "--weights", help="Shipped form: int8, fp16 or fp32."),
    reference: str = typer.Option(
        "true", "--reference", help="Write the reference profile beside it: true/false."
    ),
    metrics: Path = typer.Option(None, "--metrics", help="Write the export figures (JSON) here."),
) -> None:
    """Export a finished run to ONNX (parity, int8, card) as `maskops train`'s release does."""
    from maskops.config import Settings, load_task
    from maskops.pipelines.stages import export_model

    try:
        task_cfg = load_task(task, Settings())
        result = export_model(
            checkpoint,
            out,
            task=task_cfg,
            manifest=manifest,
            weights=weights,
            reference=_flag(reference, "--reference"),
        )
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(exc) from None
    _write(metrics, result)


@app.command()
def evaluate(
    task: str = typer.Option(..., "--task", help="Task name (the model card's task)."),
    model: Path = typer.Option(..., "--model", help="The .onnx file, or an export folder."),
    manifest: Path = typer.Option(..., "--manifest", help="Manifest CSV."),
    split: str = typer.Option("test", "--split", help="Manifest split to evaluate."),
    out: Path = typer.Option(..., "--out", help="Report folder (report.md, report.json, plots)."),
    metrics: Path = typer.Option(None, "--metrics", help="Write the headline figures (JSON) here."),
) -> None:
    """Evaluate the exported model: the report in --out, the headline figures as JSON."""
    from maskops.pipelines.stages import evaluate_model

    try:
        result = evaluate_model(model, manifest, task_name=task, split=split, out_dir=out)
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(exc) from None
    _write(metrics, result)


@app.command()
def release(
    task: str = typer.Option(..., "--task", help="Task name = registered model name."),
    model: Path = typer.Option(..., "--model", help="The shipped .onnx file, or an export folder."),
    promote: str = typer.Option("true", "--promote", help="Run the promotion gate: true/false."),
    tolerance: float = typer.Option(0.02, "--tolerance", min=0, help="Largest allowed class-recall drop."),
    tracking_uri: str = typer.Option(
        None, "--tracking-uri", help="MLflow URI (default: $MLFLOW_TRACKING_URI)."
    ),
    out: Path = typer.Option(None, "--out", help="Write the outcome (JSON) here."),
) -> None:
    """Register the model as the task's challenger and ask the promotion gate (a refusal is not an error)."""
    from maskops.pipelines.stages import promotion_gate, register_model
    from maskops.registry import RegistryError

    try:
        version = register_model(model, task, tracking_uri=tracking_uri)
        outcome: dict[str, Any] = {"version": version, "promoted": False}
        if _flag(promote, "--promote"):
            gate = promotion_gate(task, tolerance=tolerance, tracking_uri=tracking_uri)
            outcome.update(promoted=gate["promoted"], reasons=gate["reasons"], champion=gate["champion"])
    except (RegistryError, ValueError, FileNotFoundError, RuntimeError) as exc:
        raise _fail(exc) from None
    _write(out, outcome)


@app.command()
def retrain(
    task: str = typer.Option("facemask", "--task", help="Task name or task YAML path."),
    config: Path = typer.Option(None, "--config", help="YAML of training options (as maskops train)."),
    approval: str = typer.Option(
        "auto", "--approval", help="auto: the gate promotes; human: register the challenger and stop."
    ),
    tolerance: float = typer.Option(0.02, "--tolerance", min=0, help="Largest allowed class-recall drop."),
    weights: str = typer.Option("int8", "--weights", help="Shipped form: int8, fp16 or fp32."),
) -> None:
    """Run the Prefect `retrain` flow once (validate, prepare, train, evaluate, gate, register)."""
    from maskops.pipelines.flows import retrain as retrain_flow

    outcome = retrain_flow(
        task=task,
        config=str(config) if config else None,
        approval=_approval(approval),
        tolerance=tolerance,
        weights=weights,
    )
    _write(None, outcome)


@app.command()
def monitor(
    config: Path = typer.Option(None, "--config", help="Monitoring config (default: configs/monitor.yaml)."),
    task: str = typer.Option("facemask", "--task", help="The task a retrain trains."),
    min_reviewed: int = typer.Option(
        50, "--min-reviewed", min=0, help="Reviewed hard cases a retrain needs."
    ),
    approval: str = typer.Option("human", "--approval", help="The retrain's approval (auto or human)."),
    serve: bool = typer.Option(False, "--serve", help="Serve the flow on the config's interval."),
) -> None:
    """Run the Prefect `monitor` flow once, or serve it on the monitoring config's interval."""
    from maskops.pipelines.flows import monitor as monitor_flow
    from maskops.pipelines.flows import serve_monitor

    params: dict[str, Any] = {
        "config_path": str(config) if config else None,
        "task": task,
        "min_reviewed": min_reviewed,
        "approval": _approval(approval),
    }
    if serve:
        serve_monitor(**params)
        return
    _write(None, monitor_flow(**params))
