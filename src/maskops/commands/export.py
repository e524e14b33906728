"""``maskops export``: checkpoint -> ONNX (+ card), parity check on validation images, optional int8."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)


def validation_sample(
    manifest: Path, class_names: Sequence[str], n: int | None, *, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray]:
    """Up to ``n`` images of the manifest's ``val`` split, drawn per class in turn."""
    from maskops.data.samples import split_sample

    return split_sample(manifest, class_names, "val", n, seed=seed)


def register(app: typer.Typer) -> None:
    @app.command()
    def export(
        checkpoint: Path = typer.Option(..., exists=True, dir_okay=False, help="Training checkpoint (.pt)."),
        out: Path = typer.Option(..., help="Output .onnx file; the card is written beside it (.json)."),
        opset: int = typer.Option(17, min=17, help="ONNX opset (>= 17)."),
        int8: bool = typer.Option(False, "--int8", help="Also write an int8 model (<out>_int8.onnx)."),
        parity_manifest: Path | None = typer.Option(
            None, help="Data manifest: parity on its 'val' images (and int8 calibration/accuracy)."
        ),
        parity_n: int = typer.Option(64, min=1, help="Validation images for the parity check."),
        calibration_n: int = typer.Option(128, min=1, help="Validation images to calibrate int8 on."),
        atol: float = typer.Option(1e-4, help="Largest allowed |diff| of probabilities torch vs ONNX."),
        as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    ) -> None:
        """Export a checkpoint to ONNX, check it against torch, optionally quantize to int8."""
        from rich.console import Console

        from maskops.export.onnx import ParityError, check_parity, export_onnx
        from maskops.train.checkpoint import load_model

        console = Console()
        if int8 and parity_manifest is None:
            raise typer.BadParameter("--int8 needs --parity-manifest (validation images to calibrate on)")
        try:
            model, spec = load_model(checkpoint)
            images, labels = (
                validation_sample(parity_manifest, spec.class_names, None)
                if parity_manifest is not None
                else ([], None)
            )
            path = export_onnx(model, spec, out, opset=opset)
        except ValueError as exc:  # CheckpointError, ManifestError, bad images: all name the file
            console.print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False)
            raise typer.Exit(code=2) from exc
        report: dict[str, Any] = {"onnx": str(path), "size_bytes": path.stat().st_size}
        failed = False
        if parity_manifest is not None:
            sample = images[:parity_n]
            try:
                parity = check_parity(model, path, sample, spec, atol=atol)
            except ParityError as exc:
                parity, failed = exc.result, True
                console.print(f"[red]parity check failed:[/red] {exc}", soft_wrap=True)
            report["parity"] = parity.to_dict()
            projection = None
            if not failed:
                from maskops.export.embedding import fit_embedding, record_projection

                try:  # the compact embedding, fitted on the val images as a release does
                    projection = fit_embedding(path, images, fitted_on=f"val split of {parity_manifest.name}")
                    record_projection(projection, path)
                    report["embedding_dims"] = projection.dims
                except ValueError as exc:
                    logger.warning("no embedding projection: %s", exc)
            if int8 and not failed:
                from maskops.export.quantize import calibration_sample, compare_accuracy, quantize_int8

                q_path = quantize_int8(
                    path,
                    path.with_name(f"{path.stem}_int8.onnx"),
                    calibration_sample(images, calibration_n),
                    spec,
                )
                if projection is not None:
                    record_projection(projection, q_path)
                assert labels is not None  # --int8 needs --parity-manifest, which gives labels
                report["int8"] = {
                    "onnx": str(q_path),
                    "size_bytes": q_path.stat().st_size,
                    **compare_accuracy(path, q_path, images, labels),
                }
        else:
            logger.warning("no --parity-manifest: the ONNX file was not checked against torch")

        if as_json:
            typer.echo(json.dumps(report, indent=2))
        else:
            console.print(f"wrote {report['onnx']} ({report['size_bytes'] / 1e6:.2f} MB) and its card")
            if "parity" in report:
                p = report["parity"]
                console.print(
                    f"parity on {p['n']} val images: max |diff| {p['max_abs_diff']:.2e} "
                    f"(allowed {p['atol']:.0e}), argmax agreement {p['argmax_agreement']:.4f} -> "
                    + ("[green]passed[/green]" if p["passed"] else "[red]FAILED[/red]")
                )
            if "int8" in report:
                q = report["int8"]
                console.print(
                    f"int8 {q['onnx']} ({q['size_bytes'] / 1e6:.2f} MB): accuracy on {q['n']} val images "
                    f"{q['fp32_accuracy']:.4f} -> {q['int8_accuracy']:.4f} "
                    f"(change {q['accuracy_change']:+.4f}), agreement {q['agreement']:.4f}"
                )
        if failed:
            raise typer.Exit(code=1)
