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


def read_bgr(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 BGR; ValueError naming the file when it cannot be read."""
    import cv2
    import numpy as np

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read image: {exc}") from exc
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None or image.size == 0:
        raise ValueError(f"{path}: not a decodable image")
    return image


def _manifest_rows(manifest: Path) -> list[Any]:
    from maskops.data.manifest import read_manifest

    return list(read_manifest(manifest))


def validation_sample(
    manifest: Path, class_names: Sequence[str], n: int | None, *, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray]:
    """Up to ``n`` images of the manifest's ``val`` split (all when ``n`` is None), with class ids.

    The sample is drawn per class in turn (round robin over a seeded shuffle), so rare classes are
    represented even in a small sample.

    Raises:
        ValueError: no ``val`` rows, or labels that are not among ``class_names``.
    """
    import numpy as np

    rows = [r for r in _manifest_rows(manifest) if r.split == "val"]
    if not rows:
        raise ValueError(f"{manifest}: no rows in the 'val' split")
    index = {c: i for i, c in enumerate(class_names)}
    unknown = sorted({r.label for r in rows} - set(index))
    if unknown:
        raise ValueError(f"{manifest}: labels {unknown} are not classes of the model {list(class_names)}")
    rng = np.random.default_rng(seed)
    per_class = {c: [rows[i] for i in rng.permutation(len(rows)) if rows[i].label == c] for c in class_names}
    chosen: list[Any] = []
    limit = len(rows) if n is None else min(n, len(rows))
    while len(chosen) < limit:
        for c in class_names:
            if per_class[c] and len(chosen) < limit:
                chosen.append(per_class[c].pop())
    return [read_bgr(r.path) for r in chosen], np.array([index[r.label] for r in chosen], np.int64)


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
            if int8 and not failed:
                from maskops.export.quantize import compare_accuracy, quantize_int8

                q_path = quantize_int8(
                    path, path.with_name(f"{path.stem}_int8.onnx"), images[:calibration_n], spec
                )
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
