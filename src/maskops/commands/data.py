"""``maskops data validate|prepare|export-reviewed``: thin wrappers over ``maskops.data`` (and the
prediction store's reviewed crops).

Library imports happen inside the commands so ``maskops --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from maskops.commands.monitor import export_reviewed  # typer only at import: --help stays fast

if TYPE_CHECKING:
    from maskops.data.prepare import PrepareReport
    from maskops.data.validate import ValidationReport

app = typer.Typer(no_args_is_help=True)
_EXAMPLES = 3


def _split_names(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@app.command()
def validate(
    dataset: str = typer.Argument(..., help="Dataset folder name under MASKOPS_DATA_DIR, or a path."),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON on stdout."),
    out: Path | None = typer.Option(None, "--out", help="Also write the JSON report to this file."),
    classes: str | None = typer.Option(
        None, help="Comma-separated class names (folder names; VOC: known box labels)."
    ),
    block: list[str] = typer.Option(None, "--block", help="Make these rules blocking (repeat or comma)."),
    allow: list[str] = typer.Option(None, "--allow", help="Make these rules non-blocking."),
    tiny_px: int = typer.Option(32, help="Shorter side below this is a tiny image."),
    max_aspect: float = typer.Option(4.0, help="Longer/shorter side above this is extreme."),
    phash_max: int = typer.Option(6, help="Near duplicate: pHash Hamming distance at most this ..."),
    dhash_max: int = typer.Option(10, help="... and dHash Hamming distance at most this."),
) -> None:
    """Check a raw dataset: counts, unreadable files, duplicates, sizes, modes, VOC boxes. Exit 1 if blocked."""
    from maskops.config import Settings
    from maskops.data.validate import ValidationRules, resolve_dataset, validate_dataset

    try:
        root = resolve_dataset(dataset, Settings().data_dir)
        rules = ValidationRules(
            tiny_px=tiny_px, max_aspect=max_aspect, phash_max=phash_max, dhash_max=dhash_max
        ).with_blocking(add=_split_names(block), remove=_split_names(allow))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    class_list = _split_names([classes]) if classes else None
    report = validate_dataset(root, rules, classes=class_list)
    data = report.to_dict()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        _print_validation(report)
    if not report.ok:
        raise typer.Exit(code=1)


def _kv_table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("")
    table.add_column("value", justify="right")
    for k, v in rows.items():
        table.add_row(str(k), str(v))
    return table


def _print_validation(report: ValidationReport) -> None:
    console = Console()
    console.print(f"[bold]{report.dataset}[/] ({report.kind}) at {report.root}")
    console.print(
        f"{report.n_files} files, {report.n_ok} readable images, checked in {report.elapsed_s:.1f} s"
    )
    console.print(_kv_table("counts", report.counts))
    console.print(_kv_table("formats (by content)", report.formats))
    console.print(_kv_table("colour modes", report.modes))
    sizes = Table(title="image size (px)", title_justify="left")
    sizes.add_column("")
    pcts = list(report.image_size.get("width", {}))
    for p in pcts:
        sizes.add_column(p, justify="right")
    for dim, values in report.image_size.items():
        sizes.add_row(dim, *[f"{values[p]:g}" for p in pcts])
    console.print(sizes)
    console.print(_kv_table("duplicates", report.duplicate_summary()))
    if report.box_stats:
        _print_box_stats(console, report.box_stats)
    rules = Table(title="rules", title_justify="left")
    for col in ("rule", "count", "blocking", "examples"):
        rules.add_column(col, overflow="fold")
    by_rule: dict[str, list[str]] = {}
    for issue in report.issues:
        rel = issue.path.removeprefix(report.root + "/")
        by_rule.setdefault(issue.rule, []).append(f"{rel}: {issue.detail.replace(report.root + '/', '')}")
    for rule, n in report.rule_counts.items():
        blocking = "[red]yes[/]" if rule in report.blocking_rules else "no"
        rules.add_row(rule, str(n), blocking, "\n".join(by_rule[rule][:_EXAMPLES]))
    console.print(rules)
    if report.ok:
        console.print("[green]OK[/]: no blocking problem")
    else:
        console.print(f"[red]BLOCKED[/] by: {', '.join(report.blocking_found)}")


def _print_box_stats(console: Console, stats: dict[str, Any]) -> None:
    table = Table(title=f"boxes ({stats['n_boxes']})", title_justify="left")
    pcts = list(stats["all"]["width"])
    for col in ("class", "count", "measure", *pcts):
        table.add_column(col, justify="right")
    groups = {"all": stats["all"], **stats["per_class"]}
    for name, s in groups.items():
        for measure in ("width", "height", "area"):
            first = measure == "width"
            table.add_row(
                name if first else "",
                str(s["count"]) if first else "",
                measure,
                *[f"{s[measure].get(p, 0):g}" for p in pcts],
            )
    console.print(table)
    console.print(_kv_table("boxes per image", stats["boxes_per_image"]))


@app.command()
def prepare(
    task: str = typer.Argument(
        None, help="Task name (configs/tasks/<task>.yaml) or a path to a task yaml.", show_default=False
    ),
    task_option: str = typer.Option(
        None, "--task", help="The task, as an option (as in train and evaluate).", show_default=False
    ),
    workers: int = typer.Option(2, help="Processes for scanning."),
) -> None:
    """Write the versioned manifest (group-aware splits, face crops) for a task."""
    from maskops.config import Settings, load_task
    from maskops.data.prepare import prepare_task
    from maskops.detect import create_detector

    if task and task_option and task != task_option:
        raise typer.BadParameter(f"two different tasks given: {task!r} and --task {task_option!r}")
    task = task or task_option
    if not task:
        raise typer.BadParameter("name the task: `maskops data prepare facemask` (or --task facemask)")
    settings = Settings()
    try:
        task_cfg = load_task(task, settings)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    report = prepare_task(task_cfg, settings, workers=workers, make_detector=create_detector)
    _print_prepare(report)


def _print_prepare(report: PrepareReport) -> None:
    console = Console()
    console.print(f"[bold]{report.task}[/]: manifest {report.manifest_path}")
    console.print(f"content hash {report.manifest_hash}, {report.n_rows} rows, {report.elapsed_s:.1f} s")
    splits = sorted({s for s in report.counts}, key=["train", "val", "test"].index)
    classes = report.classes
    table = Table(title="rows per split x class", title_justify="left")
    table.add_column("split")
    for c in classes:
        table.add_column(c, justify="right")
    table.add_column("total", justify="right")
    for s in splits:
        row = report.counts[s]
        table.add_row(s, *[str(row.get(c, 0)) for c in classes], str(sum(row.values())))
    console.print(table)
    for title, values in report.summary.items():
        if isinstance(values, dict):
            console.print(_kv_table(title, values))
        else:
            console.print(f"{title}: {values}")
    reasons = report.excluded_reasons()
    console.print(_kv_table(f"left out ({len(report.excluded)} files/boxes)", reasons))


# the reviewed hard cases as a folder source: the same command as `maskops monitor export-reviewed`
app.command("export-reviewed")(export_reviewed)
