"""End-to-end: a tiny ONNX classifier (colour -> class) evaluated through the library and the CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from maskops.data.manifest import ManifestRow, write_manifest
from maskops.evaluate import run as run_mod
from maskops.evaluate.run import EvaluationError, box_wh, evaluate_classifier
from maskops.types import MaskClass, ModelSpec

CLASSES = MaskClass.names()


@dataclass
class Row:
    path: str
    label: str
    split: str
    box: str


def _tiny_onnx(path: Path, temperature: float = 1.0, task: str = "facemask") -> Path:
    """Global average pool + fixed linear layer: logits = 10 * mean(R, G, B) in [0, 1]."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array((10.0 * np.eye(3)).astype(np.float32), "W")
    bias = numpy_helper.from_array(np.zeros(3, np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["mm"]),
            helper.make_node("Add", ["mm", "B"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    ModelSpec(
        task=task,
        class_names=CLASSES,
        input_size=(8, 8),
        mean=(0.0, 0.0, 0.0),
        std=(255.0, 255.0, 255.0),
        temperature=temperature,
    ).save(ModelSpec.card_path(path))
    return path


def _dataset(root: Path, n_per_split: int = 60) -> list[Row]:
    """Images whose dominant RGB channel is the class (with noise, so a few are wrong)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    for split in ("val", "test"):
        for i in range(n_per_split):
            cls = i % 3
            rgb = rng.integers(0, 150, size=3)
            rgb[cls] = 120 + rng.integers(0, 60)
            img = np.empty((16, 16, 3), np.uint8)
            img[:] = rgb[::-1]  # stored as BGR
            path = root / f"{split}_{i}.png"
            cv2.imwrite(str(path), img)
            side = [10, 30, 60][i % 3]
            rows.append(Row(str(path), CLASSES[cls], split, f"5,5,{5 + side},{5 + side + 4}"))
    bad = root / "broken.png"
    bad.write_text("not an image")
    rows.append(Row(str(bad), CLASSES[0], "test", ""))
    return rows


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, list[Row]]:
    rows = _dataset(tmp_path / "crops")
    manifest = tmp_path / "manifest.csv"
    write_manifest(
        [
            ManifestRow(r.path, f"sha{i}", r.label, r.split, f"g{i}", "toy", "", r.box)
            for i, r in enumerate(rows)
        ],
        manifest,
    )
    model = _tiny_onnx(tmp_path / "tiny.onnx", temperature=2.0)
    return model, manifest, rows


def _expected(rows: list[Row], split: str) -> tuple[np.ndarray, np.ndarray]:
    y, pred = [], []
    for r in rows:
        if r.split != split or r.path.endswith("broken.png"):
            continue
        rgb = cv2.imread(r.path)[0, 0, ::-1]
        y.append(CLASSES.index(r.label))
        pred.append(int(np.argmax(rgb)))
    return np.array(y), np.array(pred)


def test_evaluate_classifier_end_to_end(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, manifest, rows = setup
    run = evaluate_classifier(model, manifest, task="facemask", split="test", out_dir=tmp_path / "out")
    y, pred = _expected(rows, "test")
    m = run.report.metrics
    assert m["n"] == 60
    assert m["accuracy"] == pytest.approx(float((y == pred).mean()))
    assert 0.5 < m["accuracy"] < 1.0  # the noise makes some wrong: the test can tell right from wrong
    assert run.skipped == [(str(Path(rows[-1].path)), "not a decodable image")]
    assert run.temperature == 2.0 and run.temperature_source == "card"
    assert run.report.ece_before is not None and run.report.ece_before != run.report.ece_after
    assert set(run.report.slices["size"]) == {"<24px", "24-48px", ">=48px"}
    assert sum(v["n"] for v in run.report.slices["brightness"].values()) == 60
    for name in ("markdown", "json", "confusion_matrix", "roc", "pr", "reliability", "skipped", "errors"):
        assert run.paths[name].is_file()
    assert run.y_true.tolist() == y.tolist() and run.y_prob.shape == (60, 3)
    assert run.y_prob.argmax(1).tolist() == pred.tolist()
    assert run.face_side.shape == (60,) and np.isfinite(run.face_side).all()
    wrong = int((y != pred).sum())
    assert len(run.report.errors) == min(wrong, 48) and wrong > 0
    assert all(Path(e["sample"]).is_file() and e["true"] != e["predicted"] for e in run.report.errors)


def test_fit_temperature_on_val(setup) -> None:  # type: ignore[no-untyped-def]
    model, manifest, _ = setup
    run = evaluate_classifier(model, manifest, task="facemask", fit_temperature_on="val")
    assert run.temperature_source == "fitted on val"
    assert run.temperature != 2.0
    assert run.paths == {}


def test_evaluate_classifier_errors(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, manifest, rows = setup
    with pytest.raises(EvaluationError, match="for task 'facemask', not 'malaria'"):
        evaluate_classifier(model, manifest, task="malaria")
    with pytest.raises(EvaluationError, match="splits present: test, val"):
        evaluate_classifier(model, manifest, task="facemask", split="train")
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        evaluate_classifier(model, tmp_path / "nope.csv", task="facemask")
    rows.append(Row(rows[0].path, "hat", "test", ""))
    bad = tmp_path / "bad_label.csv"
    write_manifest(
        [
            ManifestRow(r.path, f"s{i}", r.label, r.split, f"g{i}", "toy", "", r.box)
            for i, r in enumerate(rows)
        ],
        bad,
    )
    with pytest.raises(EvaluationError, match=r"\['hat'\].*with_mask"):
        evaluate_classifier(model, bad, task="facemask")


def test_box_wh() -> None:
    assert box_wh("1,2,11,32") == (10.0, 30.0)
    assert box_wh("") is None
    with pytest.raises(EvaluationError, match="'box'"):
        box_wh("1,2,3")
    with pytest.raises(EvaluationError, match="x1 <= x2"):
        box_wh("5,0,1,1")


def test_cli_evaluate(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from maskops.cli import app

    model, manifest, _ = setup
    runner = CliRunner()
    args = ["evaluate", "--task", "facemask", "--model", str(model), "--manifest", str(manifest)]
    out = tmp_path / "cli_out"
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "macro-F1" in result.output and "ECE before calibration" in result.output
    data = json.loads((out / "report.json").read_text())
    assert data["metrics"]["n"] == 60

    result = runner.invoke(app, [*args, "--out", str(out), "--min-macro-f1", "0.999"])
    assert result.exit_code == 1

    result = runner.invoke(app, [*args, "--detection", "--split", "nope", "--oracle-labels"])
    assert result.exit_code == 2
    assert "no split 'nope'" in result.output or "not found" in result.output

    result = runner.invoke(app, [*args, "--split", "nope"])
    assert result.exit_code == 2
    assert "no rows in split 'nope'" in result.output


def test_cli_default_out_and_bad_model(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from maskops.cli import app
    from maskops.config import Settings

    model, manifest, _ = setup
    runner = CliRunner()
    base = ["evaluate", "--task", "facemask", "--manifest", str(manifest)]
    result = runner.invoke(app, [*base, "--model", str(model)])
    assert result.exit_code == 0, result.output
    assert (Settings().work_dir / "reports" / "facemask" / "tiny" / "report.md").is_file()

    fake = tmp_path / "fake.onnx"
    fake.write_text("not onnx")
    ModelSpec.load(ModelSpec.card_path(model)).save(ModelSpec.card_path(fake))
    result = runner.invoke(app, [*base, "--model", str(fake)])
    assert result.exit_code == 2
    assert "fake.onnx" in result.output


def test_predict_rows_chunks_keep_order(setup) -> None:  # type: ignore[no-untyped-def]
    from maskops.inference.classifier import OnnxClassifier

    model, _, rows = setup
    clf = OnnxClassifier(model)
    one = run_mod.predict_rows(clf, rows, chunk=1000)
    many = run_mod.predict_rows(clf, rows, chunk=7, batch_size=3)
    assert np.allclose(one[0], many[0])
    assert one[1].tolist() == many[1].tolist() == [i for i, r in enumerate(rows) if "broken" not in r.path]
    assert one[2].tolist() == many[2].tolist()
    assert len(many[3]) == 1


def test_cli_evaluate_a_registry_alias(setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """`--model champion` downloads the champion of the task's registered model and evaluates it."""
    from mlflow import MlflowClient

    from maskops.cli import app
    from maskops.registry import promote, register_onnx_model

    model, manifest, _ = setup
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MASKOPS_WORK_DIR", str(tmp_path / "work"))
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("alias-test", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(exp)
    register_onnx_model(run.info.run_id, model, "facemask", tracking_uri=uri)
    client.set_terminated(run.info.run_id)
    assert promote("facemask", tracking_uri=uri).promoted

    runner = CliRunner()
    base = ["evaluate", "--task", "facemask", "--manifest", str(manifest)]
    result = runner.invoke(app, [*base, "--model", "champion", "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["metrics"]["n"] == 60
    direct = runner.invoke(app, [*base, "--model", str(model), "--out", str(tmp_path / "rep2")])
    assert direct.exit_code == 0
    a = json.loads((tmp_path / "rep" / "report.json").read_text())["metrics"]["accuracy"]
    b = json.loads((tmp_path / "rep2" / "report.json").read_text())["metrics"]["accuracy"]
    assert a == b

    result = runner.invoke(app, [*base, "--model", "staging"])
    assert result.exit_code == 2
    assert "not a registry alias" in result.output and "aliases: champion" in result.output
