"""MLflow Model Registry: register, promote with the gate, roll back, download, and the CLI.

One sqlite store per module (creating it takes a few seconds); each test registers under its own
task name so the tests stay independent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from maskops.cli import app
from maskops.inference.classifier import OnnxClassifier
from maskops.registry import (
    PromotionDecision,
    RegistryError,
    compare,
    download,
    get_alias,
    list_versions,
    metric_tags,
    promote,
    register_onnx_model,
    resolve_tracking_uri,
    rollback,
    set_alias,
)
from maskops.types import ModelSpec

CLASSES = ["with_mask", "without_mask", "mask_weared_incorrect"]


def _metrics(macro_f1: float, recalls: list[float], accuracy: float = 0.95) -> dict:
    return {
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "per_class": {
            c: {"precision": 0.9, "recall": r, "f1": 0.9, "support": 10, "roc_auc": 0.99}
            for c, r in zip(CLASSES, recalls, strict=True)
        },
    }


def _write_model(folder: Path, bias: float, metrics: dict) -> Path:
    """A 4x4-input ONNX classifier (pool + Gemm) whose bias marks which version it is."""
    folder.mkdir(parents=True, exist_ok=True)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("Gemm", ["f", "W", "b"], ["logits"], transB=1),
        ],
        "m",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [
            numpy_helper.from_array(np.zeros((3, 3), np.float32), "W"),
            numpy_helper.from_array(np.array([bias, 0.0, 0.0], np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "facemask.onnx"
    onnx.save(model, str(path))
    ModelSpec(task="facemask", class_names=CLASSES, input_size=(4, 4), metrics=metrics).save(
        ModelSpec.card_path(path)
    )
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A sqlite tracking store with one experiment whose artifacts live in the temp folder."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("registry-tests", artifact_location=str(root / "artifacts"))
    return {"uri": uri, "client": client, "experiment": exp, "root": root}


def _register(store: dict, task: str, macro_f1: float, recalls: list[float], bias: float = 0.0) -> int:
    client = store["client"]
    run = client.create_run(store["experiment"])
    path = _write_model(store["root"] / "src" / run.info.run_id, bias, _metrics(macro_f1, recalls))
    version = register_onnx_model(run.info.run_id, path, task, tracking_uri=store["uri"])
    client.set_terminated(run.info.run_id)
    return version


def test_register_sets_challenger_and_metric_tags(store) -> None:
    v1 = _register(store, "t_register", 0.90, [0.97, 0.90, 0.81])
    v2 = _register(store, "t_register", 0.91, [0.97, 0.90, 0.80])
    assert (v1, v2) == (1, 2)
    assert get_alias("t_register", "challenger", tracking_uri=store["uri"]) == 2
    tags = store["client"].get_model_version("t_register", "2").tags
    assert float(tags["macro_f1"]) == pytest.approx(0.91)
    assert float(tags["recall/mask_weared_incorrect"]) == pytest.approx(0.80)
    assert tags["input_size"] == "4x4"
    rows = list_versions("t_register", tracking_uri=store["uri"])
    assert [r.version for r in rows] == [2, 1]
    assert rows[0].aliases == ["challenger"]
    assert rows[0].macro_f1 == pytest.approx(0.91)
    assert rows[1].accuracy == pytest.approx(0.95)
    assert rows[0].run_id


def test_a_trained_card_promotes_on_its_val_figures(store) -> None:
    # maskops train writes {"val": ..., "test": ...}; the gate must see val's figures, not none
    client = store["client"]
    versions = []
    for val_f1, test_f1, bias in ((0.80, 0.95, 0.0), (0.85, 0.70, 1.0)):
        run = client.create_run(store["experiment"])
        metrics = {
            "val": _metrics(val_f1, [0.97, 0.90, 0.60]),
            "test": _metrics(test_f1, [0.90, 0.90, 0.90]),
        }
        path = _write_model(store["root"] / "src" / run.info.run_id, bias, metrics)
        versions.append(register_onnx_model(run.info.run_id, path, "t_card", tracking_uri=store["uri"]))
        client.set_terminated(run.info.run_id)
        if len(versions) == 1:
            assert promote("t_card", tracking_uri=store["uri"]).promoted  # first champion
    tags = client.get_model_version("t_card", str(versions[1])).tags
    assert float(tags["macro_f1"]) == pytest.approx(0.85)
    assert float(tags["test.macro_f1"]) == pytest.approx(0.70)
    assert float(tags["test.recall/mask_weared_incorrect"]) == pytest.approx(0.90)
    assert list_versions("t_card", tracking_uri=store["uri"])[0].macro_f1 == pytest.approx(0.85)
    # better on val (test is worse, and is not looked at): promoted
    decision = promote("t_card", tracking_uri=store["uri"])
    assert decision.promoted, decision.reasons
    assert get_alias("t_card", "champion", tracking_uri=store["uri"]) == versions[1]


def test_promotion_life_cycle_with_refusal_and_rollback(store) -> None:
    uri, task = store["uri"], "t_cycle"
    v1 = _register(store, task, 0.90, [0.97, 0.90, 0.81], bias=1.0)

    first = promote(task, tracking_uri=uri)
    assert first.promoted and first.champion_version is None
    assert first.reasons == ["no champion yet"]
    assert get_alias(task, "champion", tracking_uri=uri) == v1
    assert get_alias(task, "challenger", tracking_uri=uri) is None

    # Better macro-F1 but the rare class's recall falls 0.10: refused, naming that figure.
    v2 = _register(store, task, 0.92, [0.99, 0.95, 0.71])
    refused = promote(task, tolerance=0.02, tracking_uri=uri)
    assert not refused.promoted
    assert refused.reasons == ["recall of mask_weared_incorrect 0.7100 < champion 0.8100 - 0.02"]
    assert (refused.challenger_version, refused.champion_version) == (v2, v1)
    assert get_alias(task, "champion", tracking_uri=uri) == v1
    assert get_alias(task, "challenger", tracking_uri=uri) == v2

    # Within tolerance (-0.01) and a higher macro-F1: promoted.
    v3 = _register(store, task, 0.91, [0.97, 0.90, 0.80], bias=3.0)
    accepted = promote(task, tolerance=0.02, tracking_uri=uri)
    assert accepted.promoted, accepted.reasons
    assert get_alias(task, "champion", tracking_uri=uri) == v3
    assert get_alias(task, "previous_champion", tracking_uri=uri) == v1

    assert rollback(task, tracking_uri=uri) == (v3, v1)
    assert get_alias(task, "champion", tracking_uri=uri) == v1
    assert get_alias(task, "previous_champion", tracking_uri=uri) is None
    with pytest.raises(RegistryError, match="nothing to roll back to: t_cycle has no previous champion"):
        rollback(task, tracking_uri=uri)

    # The champion downloads with its card and is the model registered as v1 (bias 1.0).
    path = download(task, "champion", store["root"] / "dl", tracking_uri=uri)
    assert path.name == "facemask.onnx"
    assert ModelSpec.card_path(path).is_file()
    logits = OnnxClassifier(path).predict_logits([np.zeros((4, 4, 3), np.uint8)])
    assert logits[0].tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert download(task, "3", store["root"] / "dl3", tracking_uri=uri).is_file()


def test_promotion_refused_on_lower_macro_f1(store) -> None:
    uri, task = store["uri"], "t_f1"
    _register(store, task, 0.90, [0.97, 0.90, 0.81])
    promote(task, tracking_uri=uri)
    _register(store, task, 0.89, [0.97, 0.90, 0.81])
    decision = promote(task, tracking_uri=uri)
    assert not decision.promoted
    assert decision.reasons == ["macro_f1 0.8900 < champion 0.9000"]


def test_promote_without_challenger_and_unknown_model(store) -> None:
    uri = store["uri"]
    _register(store, "t_nochal", 0.9, [0.9, 0.9, 0.9])
    promote("t_nochal", tracking_uri=uri)
    with pytest.raises(RegistryError, match="no 'challenger' alias"):
        promote("t_nochal", tracking_uri=uri)
    with pytest.raises(RegistryError, match=r"no registered model named 'nope'; registered: .*t_nochal"):
        list_versions("nope", tracking_uri=uri)
    with pytest.raises(RegistryError, match="has no alias 'staging'; aliases: champion"):
        download("t_nochal", "staging", tracking_uri=uri)
    with pytest.raises(RegistryError, match="t_nochal has no version 9"):
        set_alias("t_nochal", "challenger", 9, tracking_uri=uri)


def test_register_needs_an_existing_run_and_file(store, tmp_path) -> None:
    path = _write_model(tmp_path, 0.0, {})
    with pytest.raises(RegistryError, match="MLflow run 'deadbeef' not found"):
        register_onnx_model("deadbeef", path, "t_bad", tracking_uri=store["uri"])
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        register_onnx_model("deadbeef", tmp_path / "missing.onnx", "t_bad", tracking_uri=store["uri"])


@pytest.mark.parametrize(
    ("challenger", "champion", "tolerance", "passed", "blocking"),
    [
        ({"macro_f1": 0.9, "recall/a": 0.8}, {"macro_f1": 0.9, "recall/a": 0.8}, 0.02, True, None),
        ({"macro_f1": 0.9, "recall/a": 0.78}, {"macro_f1": 0.9, "recall/a": 0.8}, 0.02, True, None),
        ({"macro_f1": 0.9, "recall/a": 0.77}, {"macro_f1": 0.9, "recall/a": 0.8}, 0.02, False, "recall of a"),
        ({"macro_f1": 0.9}, {"macro_f1": 0.8, "recall/a": 0.8}, 0.02, False, "no recall for class a"),
        ({"recall/a": 0.9}, {"macro_f1": 0.8}, 0.02, False, "challenger has no macro_f1"),
        ({"macro_f1": 0.7, "recall/a": 0.5}, {"macro_f1": 0.8, "recall/a": 0.8}, 0.02, False, "macro_f1 0.7"),
    ],
)
def test_compare_gate(challenger, champion, tolerance, passed, blocking) -> None:
    ok, reasons = compare(challenger, champion, tolerance)
    assert ok is passed
    if blocking:
        assert any(blocking in r for r in reasons)


def test_compare_names_every_blocking_figure() -> None:
    ok, reasons = compare(
        {"macro_f1": 0.7, "recall/a": 0.5, "recall/b": 0.5},
        {"macro_f1": 0.8, "recall/a": 0.8, "recall/b": 0.9},
        0.0,
    )
    assert not ok
    assert reasons == [
        "macro_f1 0.7000 < champion 0.8000",
        "recall of a 0.5000 < champion 0.8000 - 0",
        "recall of b 0.5000 < champion 0.9000 - 0",
    ]


def test_metric_tags_flatten_card_metrics() -> None:
    tags = metric_tags(
        {"macro_f1": 0.5, "ece": {"before": 0.1}, "note": "x", "flag": True, **_metrics(0.5, [1, 0, 0.5])}
    )
    assert tags["macro_f1"] == "0.5"
    assert tags["recall/with_mask"] == "1.0"
    assert tags["support/without_mask"] == "10.0"
    assert tags["ece.before"] == "0.1"
    assert "note" not in tags and "flag" not in tags


def test_tracking_uri_resolution(monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert resolve_tracking_uri() == "http://mlflow:5000"
    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"


def test_models_cli(store, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    runner = CliRunner()
    task = "t_cli"
    _register(store, task, 0.90, [0.97, 0.90, 0.81])

    result = runner.invoke(app, ["models", "promote", "--task", task])
    assert result.exit_code == 0, result.output
    assert "promoted" in result.output and "no champion yet" in result.output

    _register(store, task, 0.95, [0.99, 0.95, 0.70])
    result = runner.invoke(app, ["models", "promote", "--task", task, "--tolerance", "0.05"])
    assert result.exit_code == 1
    assert "refused" in result.output
    assert "recall of mask_weared_incorrect 0.7000 < champion 0.8100 - 0.05" in result.output

    result = runner.invoke(app, ["models", "promote", "--task", task, "--tolerance", "0.2", "--json"])
    assert result.exit_code == 0, result.output
    decision = PromotionDecision(**json.loads(result.output))
    assert decision.promoted and decision.champion_version == 1 and decision.challenger_version == 2

    result = runner.invoke(app, ["models", "list", "--task", task, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["version"], r["aliases"]) for r in rows] == [(2, ["champion"]), (1, ["previous_champion"])]
    result = runner.invoke(app, ["models", "list", "--task", task])
    assert result.exit_code == 0 and "champion" in result.output and "0.9500" in result.output

    result = runner.invoke(app, ["models", "rollback", "--task", task])
    assert result.exit_code == 0, result.output
    assert "rolled back from v2 to v1" in result.output
    result = runner.invoke(app, ["models", "rollback", "--task", task])
    assert result.exit_code == 2
    assert "nothing to roll back to" in result.output

    result = runner.invoke(app, ["models", "list", "--task", "unknown_task"])
    assert result.exit_code == 2
    assert "no registered model named 'unknown_task'" in result.output
