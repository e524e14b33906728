"""Hot swap under load: ``POST /v1/models/reload`` while requests flow, and bad model files refused.

Requests run on threads through one ``TestClient`` (the app's own event loop and inference pool)
while the main thread rewrites the model files and reloads: no request may fail. A corrupt, truncated
or wrong-shape file is refused with 409 ``reload_failed`` naming the model, and the old model keeps
answering exactly as before. A new champion in the MLflow registry is picked up by a reload from it.
"""

from __future__ import annotations

import gc
import os
import shutil
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serve_helpers import assert_error, gradient, jpeg_bytes

from maskops.types import ModelSpec

RELOADS = 6
WEIGHTS_B = np.array([[0.0, 0.0, 4.0], [0.0, 4.0, 0.0], [4.0, 0.0, 0.0]], np.float32)


def _swap_in(target: Path, write: Callable[..., Path], spec: ModelSpec, weight: np.ndarray) -> None:
    """Write a new version of ``target`` beside it and move it in place (a reader never sees half a file)."""
    tmp = target.parent.parent / "staging"  # outside the models directory: never loaded as a model
    tmp.mkdir(exist_ok=True)
    new = write(tmp / target.name, spec, weight, np.zeros(weight.shape[0], np.float32))
    os.replace(ModelSpec.card_path(new), ModelSpec.card_path(target))
    os.replace(new, target)


def _classify(client: TestClient, image: bytes, model: str) -> dict[str, Any]:
    r = client.post("/v1/classify", params={"model": model}, files={"file": ("c.jpg", image)})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _answer(client: TestClient, image: bytes, model: str) -> tuple[str, dict[str, float]]:
    """The model version and the probabilities it gives ``image``."""
    body = _classify(client, image, model)
    return body["model"]["version"], body["probabilities"]


def _generation(client: TestClient) -> int:
    return int(client.get("/v1/models").json()["generation"])


def test_requests_keep_flowing_through_reloads(
    client: TestClient,
    models_dir: Path,
    plain_jpeg: bytes,
    write_linear_onnx: Callable[..., Path],
    facemask_spec: ModelSpec,
) -> None:
    first = _classify(client, plain_jpeg, "facemask")["model"]["version"]
    stop = threading.Event()
    lock = threading.Lock()
    failures: list[str] = []
    versions: set[str] = set()
    done = [0]

    def detect() -> Any:
        return client.post("/v1/detect", files={"file": ("a.jpg", plain_jpeg)})

    def batch() -> Any:
        files = [("files", (f"b{i}.jpg", plain_jpeg)) for i in range(3)]
        return client.post("/v1/detect/batch", files=files)

    def classify() -> Any:
        return client.post(
            "/v1/classify", params={"model": "facemask"}, files={"file": ("c.jpg", plain_jpeg)}
        )

    def malaria() -> Any:
        return client.post("/v1/classify", params={"model": "malaria"}, files={"file": ("m.jpg", plain_jpeg)})

    def loop(call: Callable[[], Any]) -> None:
        while not stop.is_set():
            try:
                r = call()
                ok = r.status_code == 200 and (r.json().get("failed", 0) == 0)
                what = f"{r.status_code} {r.text[:200]}"
            except Exception as exc:  # a transport error is a failure too
                ok, what = False, repr(exc)
            with lock:
                done[0] += 1
                if not ok:
                    failures.append(what)
                elif call in (detect, classify):
                    versions.add(r.json()["model"]["version"])

    threads = [threading.Thread(target=loop, args=(f,)) for f in (detect, batch, classify, malaria)]
    for t in threads:
        t.start()
    target = models_dir / "facemask.onnx"
    staging = models_dir.parent / "staging"
    staging.mkdir(exist_ok=True)
    good = shutil.copy(target, staging / "good.onnx")
    reloads = []
    try:
        for i in range(RELOADS):
            if i % 2 == 0:
                _swap_in(target, write_linear_onnx, facemask_spec, WEIGHTS_B)
            else:
                os.replace(shutil.copy(good, staging / "copy.onnx"), target)
            r = client.post("/v1/models/reload")
            reloads.append(r.status_code)
            assert r.status_code == 200, r.text
            before = done[0]
            while done[0] < before + 8 and all(t.is_alive() for t in threads):  # traffic between reloads
                time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    assert reloads == [200] * RELOADS
    assert done[0] >= RELOADS * 8
    assert first in versions and len(versions) == 2  # both files answered, nothing else
    assert _generation(client) == 1 + RELOADS


def _corrupt(path: Path, *_: object) -> None:
    path.write_bytes(b"\x08\x07not an onnx model at all" * 50)


def _truncated(path: Path, *_: object) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _wrong_classes(path: Path, write: Callable[..., Path], spec: ModelSpec) -> None:
    """A valid ONNX file with one class fewer than its card names (the card is left as it is)."""
    n = spec.num_classes - 1
    write(path, spec, np.eye(n, 3, dtype=np.float32) * 4.0, np.zeros(n, np.float32), card=False)


def _wrong_input(path: Path, write: Callable[..., Path], spec: ModelSpec) -> None:
    """A valid ONNX file whose fixed input size is not the card's."""
    h, w = spec.input_size
    other = ModelSpec(task=spec.task, class_names=spec.class_names, input_size=(h * 2, w * 2))
    weight = np.eye(spec.num_classes, 3, dtype=np.float32) * 4.0
    write(path, other, weight, np.zeros(spec.num_classes, np.float32), fixed_batch=1, card=False)


BREAKERS = {
    "corrupt": (_corrupt, "not a loadable ONNX model"),
    "truncated": (_truncated, "not a loadable ONNX model"),
    "wrong_classes": (_wrong_classes, "outputs but the card names"),
    "wrong_input": (_wrong_input, "but the card expects"),
}


def _spec_of(models_dir: Path, name: str) -> ModelSpec:
    return ModelSpec.load(ModelSpec.card_path(models_dir / f"{name}.onnx"))


@pytest.mark.parametrize("model", ["facemask", "malaria"])
@pytest.mark.parametrize("breaker", sorted(BREAKERS))
def test_a_bad_model_file_is_refused_and_the_old_model_keeps_serving(
    client: TestClient,
    models_dir: Path,
    write_linear_onnx: Callable[..., Path],
    model: str,
    breaker: str,
) -> None:
    image = jpeg_bytes(gradient(40, 30))
    before = _answer(client, image, model)
    other = "malaria" if model == "facemask" else "facemask"
    other_before = _answer(client, image, other)
    generation = _generation(client)
    path = models_dir / f"{model}.onnx"
    good = path.read_bytes()
    break_file, reason = BREAKERS[breaker]
    break_file(path, write_linear_onnx, _spec_of(models_dir, model))

    r = client.post("/v1/models/reload")
    err = assert_error(r, 409, "reload_failed")
    assert model in err["message"] and reason in err["message"], err
    assert set(err["details"]["errors"]) == {model}
    assert str(models_dir) not in r.text  # no server path in the answer
    assert _answer(client, image, model) == before  # the old model, the same answer
    assert _answer(client, image, other) == other_before
    assert _generation(client) == generation
    assert client.get("/ready").status_code == 200
    metrics = client.get("/metrics").text
    assert 'maskops_model_reloads_total{outcome="failed"} 1.0' in metrics

    path.write_bytes(good)  # the file fixed: the next reload goes through
    r = client.post("/v1/models/reload")
    assert r.status_code == 200, r.text
    assert r.json()["generation"] > generation
    assert _answer(client, image, model) == before


def test_a_removed_secondary_model_is_dropped_not_refused(client: TestClient, models_dir: Path) -> None:
    """Taking a model out of the directory is a deliberate change, unlike a broken file."""
    (models_dir / "malaria.onnx").unlink()
    r = client.post("/v1/models/reload")
    assert r.status_code == 200, r.text
    assert {m["name"] for m in r.json()["models"]} == {"facemask"}
    assert_error(
        client.post(
            "/v1/classify", params={"model": "malaria"}, files={"file": ("m.jpg", jpeg_bytes(gradient()))}
        ),
        404,
        "unknown_model",
    )


def test_a_new_champion_in_the_registry_is_picked_by_a_reload(
    client: TestClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    write_linear_onnx: Callable[..., Path],
    facemask_spec: ModelSpec,
) -> None:
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from maskops import registry

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow_client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = mlflow_client.create_experiment("hot-swap", artifact_location=str(tmp_path / "artifacts"))
    image = jpeg_bytes(gradient(40, 30))

    def register(weight: np.ndarray) -> int:
        run = mlflow_client.create_run(experiment)
        folder = tmp_path / "src" / run.info.run_id
        folder.mkdir(parents=True)
        path = write_linear_onnx(folder / "facemask.onnx", facemask_spec, weight, np.zeros(3, np.float32))
        version = registry.register_onnx_model(
            run.info.run_id, path, "facemask", alias=registry.CHAMPION, tracking_uri=uri
        )
        mlflow_client.set_terminated(run.info.run_id)
        return version

    from_dir = _answer(client, image, "facemask")
    assert register(WEIGHTS_B) == 1
    r = client.post("/v1/models/reload", params={"source": "registry"})
    assert r.status_code == 200, r.text
    champion1 = _answer(client, image, "facemask")
    assert champion1 != from_dir
    cards = client.get("/v1/models").json()["models"]
    assert [(m["name"], m["source"]) for m in cards] == [("facemask", "registry")]

    assert register(np.eye(3, dtype=np.float32) * 8.0) == 2  # a new champion
    r = client.post("/v1/models/reload", params={"source": "registry"})
    assert r.status_code == 200, r.text
    champion2 = _answer(client, image, "facemask")
    assert champion2[0] != champion1[0] and champion2 != from_dir

    registry.set_alias("facemask", registry.CHAMPION, 1, tracking_uri=uri)  # a rollback is a reload too
    assert client.post("/v1/models/reload", params={"source": "registry"}).status_code == 200
    assert _answer(client, image, "facemask") == champion1


def test_a_replaced_model_set_is_freed(client: TestClient) -> None:
    """Nothing keeps the models of an old generation (their ONNX sessions) once its requests are done."""
    service = client.app.state.service  # type: ignore[attr-defined]
    sets = [weakref.ref(service.models)]
    for _ in range(2):
        assert client.post("/v1/models/reload").status_code == 200
        sets.append(weakref.ref(service.models))
    gc.collect()
    assert [s() is None for s in sets] == [True, True, False]
