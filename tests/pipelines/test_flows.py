"""The Prefect flows offline (``prefect_test_harness``: a throwaway local API, no server to reach):
``retrain`` end to end on the toy task, its cache, the human-approval mode, and ``monitor`` deciding when
to start it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("prefect")

from prefect.artifacts import Artifact
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from maskops import registry
from maskops.pipelines.flows import monitor, retrain

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    storage = tmp_path_factory.mktemp("prefect-results")
    # the throwaway API server starts in a subprocess: slow on a busy machine
    with (
        prefect_test_harness(server_startup_timeout=300),
        temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}),
    ):
        yield


def test_retrain_runs_caches_and_waits_for_approval(toy_env: Path, tmp_path: Path) -> None:
    outcome = retrain(task=str(toy_env), reference=False)
    assert outcome["version"] == 1 and outcome["promoted"] is True  # no champion yet: the gate lets it in
    assert outcome["status"] == "v1 promoted to champion"
    assert set(outcome["validation"]) == {"toy-folder"} and outcome["validation"]["toy-folder"]["ok"]
    assert Path(outcome["model"]).name == "model_int8.onnx" and Path(outcome["model"]).is_file()
    evaluation = outcome["evaluation"]
    assert evaluation["split"] == "test" and 0.0 <= evaluation["macro_f1"] <= 1.0
    assert set(evaluation["recall"]) == {"red", "green", "blue"}
    artifact = Artifact.get("toy-evaluation")
    assert artifact is not None
    assert "| macro_f1 |" in str(artifact.data) and "promoted to champion" in str(artifact.data)

    # nothing changed: the data, training, export and evaluation steps come from the cache (same MLflow
    # run); a person must approve the new challenger, the champion stays
    again = retrain(task=str(toy_env), reference=False, approval="human")
    assert again["mlflow_run_id"] == outcome["mlflow_run_id"]
    assert again["evaluation"] == evaluation
    assert again["version"] == 2 and again["promoted"] is False
    assert "awaiting approval" in again["status"] and "maskops models promote --task toy" in again["status"]
    assert registry.get_alias("toy", "champion") == 1 and registry.get_alias("toy", "challenger") == 2

    # a training option changed: the data steps stay cached, training runs again
    cfg = tmp_path / "lr.yaml"
    cfg.write_text("lr: 0.01\n")
    third = retrain(task=str(toy_env), reference=False, config=str(cfg), min_macro_f1=1.01)
    assert third["mlflow_run_id"] != outcome["mlflow_run_id"]
    assert third["manifest_hash"] == outcome["manifest_hash"]
    assert third["version"] is None and "quality bar" in third["status"]  # never registered

    # a cached training whose run folder was deleted since is trained again
    shutil.rmtree(outcome["run_dir"])
    fourth = retrain(task=str(toy_env), reference=False, approval="human")
    assert fourth["mlflow_run_id"] != outcome["mlflow_run_id"] and Path(fourth["model"]).is_file()


@dataclass
class _Check:
    firing: list[tuple[str, str]] = field(default_factory=list)


def _monitor_config(path: Path) -> Path:
    rule = {"kind": "no_traffic", "params": {"minutes": 30}, "channels": ["log"]}
    path.write_text(
        yaml.safe_dump(
            {
                "interval": "5m",
                "channels": {"log": {"kind": "log"}},
                "rules": [
                    {
                        "name": "input-drift",
                        "kind": "drift",
                        "params": {},
                        "channels": ["log"],
                        "retrain": True,
                    },
                    {"name": "silent", **rule},
                ],
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("firing", "reviewed", "started"),
    [
        ([], 100, False),  # nothing firing
        ([("silent", "")], 100, False),  # firing, but the rule does not ask for retraining
        ([("input-drift", "")], 3, False),  # too few reviewed hard cases
        ([("input-drift", "")], 10, True),
    ],
)
def test_monitor_starts_retrain_only_when_asked(
    toy_env: Path, tmp_path: Path, firing: list[tuple[str, str]], reviewed: int, started: bool
) -> None:
    seen: dict[str, Any] = {}

    def checks(engine: Any, config: Any, now: datetime | None) -> _Check:
        seen["rules"] = [r.name for r in config.rules]
        return _Check(firing)

    def count(engine: Any, since: datetime | None) -> int:
        seen["since"] = since
        return reviewed

    out = monitor(
        config_path=str(_monitor_config(tmp_path / "monitor.yaml")),
        task=str(toy_env),
        min_reviewed=5,
        checks=checks,
        reviewed=count,
        retrain_options={"reference": False},
    )
    assert seen["rules"] == ["input-drift", "silent"] and seen["since"] is None
    assert out["reviewed"] == reviewed
    if not started:
        assert out["retrain"] is None and out["decision"].startswith("no retrain")
        return
    assert out["retrain_alerts"] == [("input-drift", "")]
    # a scheduled retrain waits for a person by default; the next check counts reviews after it
    assert "awaiting approval" in out["retrain"]["status"]
    assert registry.get_alias("toy", "champion") is None
    out = monitor(
        config_path=str(tmp_path / "monitor.yaml"), task=str(toy_env), checks=checks, reviewed=count
    )
    assert isinstance(seen["since"], datetime)


def test_importing_maskops_does_not_need_prefect() -> None:
    code = (
        "import sys; sys.modules['prefect'] = None\n"
        "import maskops, maskops.cli, maskops.pipelines, maskops.pipelines.stages, maskops.commands.pipeline\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(maskops.cli.app, ['pipeline', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('prefect' in sys.modules and sys.modules['prefect'] is not None)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
