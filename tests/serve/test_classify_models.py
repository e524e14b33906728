"""/v1/classify, /v1/models, /health, /ready."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serve_helpers import assert_error, jpeg_bytes, png_bytes

from maskops import __version__


def _solid(bgr: tuple[int, int, int]) -> np.ndarray:
    img = np.zeros((32, 32, 3), np.uint8)
    img[:] = bgr
    return img


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "version": __version__}
    r = client.get("/ready")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ready",
        "checks": {"face_model": "ok", "detector": "ok", "prediction_store": "ok"},
    }


@pytest.mark.parametrize(
    ("bgr", "label"),
    [((0, 0, 255), "Parasitized"), ((255, 0, 0), "Uninfected")],  # red -> class 0, blue -> class 1
)
def test_classify_a_named_model(client: TestClient, bgr: tuple[int, int, int], label: str) -> None:
    r = client.post(
        "/v1/classify",
        params={"model": "malaria"},
        files={"file": ("cell.png", png_bytes(_solid(bgr)), "image/png")},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["name"] == "malaria" and body["model"]["task"] == "malaria"
    assert body["label"] == label
    assert body["probabilities"][label] == body["confidence"] > 0.5
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_classify_a_face_crop_with_the_face_model(client: TestClient) -> None:
    data = base64.b64encode(jpeg_bytes(_solid((0, 255, 0)))).decode()
    r = client.post("/v1/classify", params={"model": "facemask"}, json={"image_base64": data})
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "without_mask"  # green -> class 1 of the linear model


def test_classify_without_a_model_uses_the_face_mask_model(client: TestClient) -> None:
    r = client.post("/v1/classify", files={"file": ("face.png", png_bytes(_solid((0, 255, 0))), "image/png")})
    assert r.status_code == 200, r.text
    assert r.json()["model"]["name"] == "facemask"
    assert r.json()["label"] == "without_mask"


def test_classify_without_a_model_and_no_face_model(
    make_client: Callable[..., TestClient], models_dir: Path
) -> None:
    image = {"file": ("a.png", png_bytes(_solid((0, 0, 255))), "image/png")}
    (models_dir / "facemask.onnx").rename(models_dir / "other.onnx")
    (models_dir / "facemask.json").rename(models_dir / "other.json")
    many = make_client(face_model="absent")
    for p in ("other.onnx", "other.json"):
        (models_dir / p).unlink()
    one = make_client(face_model="absent")
    # two models, neither the face-mask model: which one is meant is not guessed
    err = assert_error(many.post("/v1/classify", files=image), 422, "model_required")
    assert err["details"] == {"loaded": ["malaria", "other"]}
    assert "?model=" in err["message"]
    # one model: it is the default
    assert one.post("/v1/classify", files=image).json()["model"]["name"] == "malaria"


def test_classify_documents_its_default_model(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/v1/classify"]["post"]
    param = next(p for p in op["parameters"] if p["name"] == "model")
    assert "face-mask model" in param["description"] and "model_required" in param["description"]
    assert "422" in op["responses"]


def test_classify_unknown_model_lists_the_loaded_ones(client: TestClient) -> None:
    r = client.post(
        "/v1/classify", params={"model": "nope"}, files={"file": ("a.png", png_bytes(_solid((1, 2, 3))))}
    )
    err = assert_error(r, 404, "unknown_model")
    assert err["details"] == {"loaded": ["facemask", "malaria"]}


def test_classify_rejects_non_images(client: TestClient) -> None:
    assert_error(
        client.post("/v1/classify", files={"file": ("a.txt", b"hello")}), 415, "unsupported_media_type"
    )


def test_models_lists_cards(client: TestClient) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["face_model"] == "facemask" and body["detector"] == "yunet_cal"
    by_name = {m["name"]: m for m in body["models"]}
    assert by_name["facemask"]["role"] == "face_classifier"
    assert by_name["malaria"]["role"] == "classifier"
    assert by_name["malaria"]["card"]["class_names"] == ["Parasitized", "Uninfected"]
    assert by_name["facemask"]["card"]["input_size"] == [16, 12]
    assert body["unavailable"] == {}


def test_model_info_compat(client: TestClient) -> None:
    r = client.get("/model-info")
    assert r.status_code == 200
    body = r.json()
    assert body["model_name"] == "facemask"
    assert body["classes"] == ["with_mask", "without_mask", "mask_weared_incorrect"]
    assert body["version"] == client.get("/v1/models").json()["models"][0]["version"]


def test_a_bad_card_makes_only_that_model_unavailable(
    make_client: Callable[..., TestClient], models_dir: Path
) -> None:
    (models_dir / "malaria.json").write_text("{broken")
    client = make_client()
    assert client.get("/ready").status_code == 200
    body = client.get("/v1/models").json()
    assert [m["name"] for m in body["models"]] == ["facemask"]
    assert "malaria" in body["unavailable"]
    r = client.post(
        "/v1/classify", params={"model": "malaria"}, files={"file": ("a.png", png_bytes(_solid((1, 2, 3))))}
    )
    assert_error(r, 503, "model_unavailable")


def test_detector_options_reach_the_detector(
    make_client: Callable[..., TestClient], face_photo: bytes
) -> None:
    strict = make_client(detector_options={"score_threshold": 0.99})
    assert strict.post("/v1/detect", files={"file": ("a.jpg", face_photo)}).json()["faces"] == []
    bad = make_client(detector_options={"no_such_option": 1})
    assert_error(bad.get("/ready"), 503, "not_ready")


def test_public_card_summarises_the_embedding_projection() -> None:
    from maskops.serve.routes.models import public_card

    card = {
        "task": "facemask",
        "extra": {
            "epochs": 3,
            "embedding": {"dims": 24, "mean": [0.0] * 1280, "components": [[0.0] * 1280] * 24, "n": 9},
        },
    }
    out = public_card(card)
    assert out["extra"]["embedding"] == {"dims": 24, "n": 9}
    assert out["extra"]["epochs"] == 3
    assert card["extra"]["embedding"]["mean"]  # the loaded card is left as it is
    assert public_card({"task": "malaria"}) == {"task": "malaria"}
