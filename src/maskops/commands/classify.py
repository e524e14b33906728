"""``maskops classify IMAGE... --model PATH``: class probabilities of image files (ONNX Runtime only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def classify(
        images: list[Path] = typer.Argument(..., help="Image files (each one crop / one face)."),
        model: Path = typer.Option(..., help="ONNX model; its card must be beside it."),
        threads: int | None = typer.Option(None, min=1, help="Intra-op threads (default: all cores)."),
        batch_size: int = typer.Option(64, min=1, help="Images per ONNX Runtime call."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
    ) -> None:
        """Print each image's class probabilities. Unreadable images are reported; exit 1 if any."""
        from rich.console import Console
        from rich.table import Table

        from maskops.data.images import read_bgr
        from maskops.inference.classifier import ModelLoadError, OnnxClassifier

        err = Console(stderr=True)
        try:
            clf = OnnxClassifier(model, num_threads=threads)
        except ModelLoadError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from exc

        decoded, ok_paths, failures = [], [], []
        for path in images:
            try:
                decoded.append(read_bgr(path))
                ok_paths.append(path)
            except ValueError as exc:
                failures.append({"path": str(path), "error": str(exc)})
        proba = clf.predict_proba(decoded, batch_size=batch_size)
        names = clf.class_names
        results: list[dict[str, Any]] = []
        for path, p in zip(ok_paths, proba, strict=True):
            best = int(p.argmax())
            results.append(
                {
                    "path": str(path),
                    "label": names[best],
                    "confidence": round(float(p[best]), 6),
                    "probabilities": {n: round(float(v), 6) for n, v in zip(names, p, strict=True)},
                }
            )

        if as_json:
            for rec in [*results, *failures]:
                typer.echo(json.dumps(rec))
        else:
            table = Table(title=f"{clf.spec.task} ({model.name})")
            table.add_column("image", overflow="fold")
            table.add_column("label")
            for n in names:
                table.add_column(n, justify="right")
            for rec in results:
                table.add_row(rec["path"], rec["label"], *[f"{rec['probabilities'][n]:.4f}" for n in names])
            Console().print(table)
            for f in failures:
                err.print(f"[red]failed:[/red] {f['error']}", highlight=False, soft_wrap=True)
        if failures:
            raise typer.Exit(code=1)
