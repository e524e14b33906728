"""MLflow tracking: the only module of the training side that talks to MLflow.

The default store is embedded: ``sqlite:///mlflow.db`` in the working directory, with artifacts in
``./mlartifacts`` beside it. ``MLFLOW_TRACKING_URI`` (or an explicit URI) is honoured. MLflow
would put a SQLite store's artifacts under ``./mlruns``; we create each experiment with an explicit
``artifact_location`` instead: ``<folder of the .db>/mlartifacts/<experiment>``. For a tracking
server the server decides where artifacts go.

All calls go through an ``MlflowClient`` bound to the URI (no global active run), so several
trackers and tests never step on each other.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from maskops.registry import resolve_tracking_uri

logger = logging.getLogger(__name__)

ARTIFACTS_DIRNAME = "mlartifacts"


def artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment's artifacts go: ``<db folder>/mlartifacts/<experiment>`` for SQLite.

    Returns ``None`` (let MLflow/the server decide) for any other store.
    """
    if uri.startswith("sqlite:///"):
        db = Path(unquote(uri[len("sqlite:///") :]))
        root = db.resolve().parent if db.name not in ("", ":memory:") else Path.cwd()
        return (root / ARTIFACTS_DIRNAME / experiment).as_uri()
    return None


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"a.b": "value"}`` strings (MLflow params)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


def numeric_metrics(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a nested metrics dict, flattened (``test.per_class.x.recall``)."""
    out: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}".replace(" ", "_")
        if isinstance(value, Mapping):
            out.update(numeric_metrics(value, prefix=f"{name}."))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int | float) and value == value and abs(float(value)) != float("inf"):
            out[name] = float(value)
    return out


class Tracker:
    """One MLflow run of one experiment.

    Args:
        tracking_uri: the store (see ``resolve_tracking_uri``).
        experiment: experiment name (the task name).
        run_name: display name of a new run.
        run_id: continue this existing run instead (``--resume``).
    """

    def __init__(
        self,
        tracking_uri: str | None,
        experiment: str,
        *,
        run_name: str | None = None,
        run_id: str | None = None,
    ) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network at run time
        from mlflow.tracking import MlflowClient

        self.uri = resolve_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            location = artifact_location(self.uri, experiment)
            exp_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            exp_id = exp.experiment_id
        self.experiment_id = exp_id
        if run_id is not None:
            try:
                run = self.client.get_run(run_id)
            except Exception:  # the store may have been reset; start afresh rather than fail the resume
                logger.warning("MLflow run %s not found in %s; starting a new run", run_id, self.uri)
                run = None
            if run is not None:
                self.client.update_run(run_id, status="RUNNING")
                self.run_id = run_id
                logger.info("continuing MLflow run %s (%s)", run_id, self.uri)
                return
        run = self.client.create_run(exp_id, run_name=run_name)
        self.run_id = run.info.run_id
        logger.info("MLflow run %s in experiment %r (%s)", self.run_id, experiment, self.uri)

    @property
    def artifact_uri(self) -> str:
        return str(self.client.get_run(self.run_id).info.artifact_uri)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log a (nested) mapping as flat params; values already logged are left alone."""
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        flat = {k: v for k, v in flatten(params).items() if k not in existing}
        items = list(flat.items())
        for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in items[i : i + 100]])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log the finite numbers of a (nested) metrics dict at ``step``."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        flat = list(numeric_metrics(metrics).items())
        for i in range(0, len(flat), 1000):
            batch = [Metric(k, v, ts, step or 0) for k, v in flat[i : i + 1000]]
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, data: dict[str, Any], name: str) -> None:
        self.client.log_dict(self.run_id, data, name)

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run ``FINISHED``, ``FAILED`` or ``KILLED``."""
        self.client.set_terminated(self.run_id, status=status)
