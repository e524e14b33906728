"""OnnxClassifier: batching, empty input, temperature, thread safety and load errors."""

from __future__ import annotations

import dataclasses
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from maskops.inference.classifier import ModelLoadError, OnnxClassifier
from maskops.types import ModelSpec


def test_logits_match_the_closed_form(linear_model, facemask_spec, colour_images, expected_logits) -> None:
    clf = OnnxClassifier(linear_model, num_threads=1)
    logits = clf.predict_logits(colour_images)
    assert logits.dtype == np.float32
    assert logits.shape == (7, 3)
    np.testing.assert_allclose(logits, expected_logits(colour_images, facemask_spec), atol=1e-5)


def test_solid_colours_are_classified_by_channel(linear_model, colour_images) -> None:
    ids, conf = OnnxClassifier(linear_model).predict(colour_images[:3])
    # red, green, blue pixels -> classes 0, 1, 2 (the input is BGR; the model sees RGB).
    assert ids.tolist() == [0, 1, 2]
    assert ids.dtype == np.int64
    assert conf.dtype == np.float32
    assert np.all(conf > 0.5)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 64])
def test_batching_does_not_change_results(linear_model, colour_images, batch_size) -> None:
    clf = OnnxClassifier(linear_model)
    np.testing.assert_allclose(
        clf.predict_proba(colour_images, batch_size=batch_size), clf.predict_proba(colour_images), atol=1e-6
    )


def test_fixed_batch_one_model_works_with_batch_size_one(
    tmp_path, facemask_spec, colour_images, write_linear_onnx
) -> None:
    path = write_linear_onnx(tmp_path / "b1.onnx", facemask_spec, fixed_batch=1)
    assert OnnxClassifier(path).predict_proba(colour_images, batch_size=1).shape == (7, 3)


def test_empty_input_gives_empty_arrays(linear_model) -> None:
    clf = OnnxClassifier(linear_model)
    assert clf.predict_logits([]).shape == (0, 3)
    assert clf.predict_proba([]).shape == (0, 3)
    ids, conf = clf.predict([])
    assert ids.shape == (0,) and ids.dtype == np.int64
    assert conf.shape == (0,) and conf.dtype == np.float32


def test_probabilities_follow_the_card_temperature(
    tmp_path, facemask_spec, colour_images, write_linear_onnx, expected_logits
) -> None:
    hot = dataclasses.replace(facemask_spec, temperature=2.0)
    path = write_linear_onnx(tmp_path / "hot.onnx", hot)
    clf = OnnxClassifier(path)
    z = expected_logits(colour_images, hot) / 2.0
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    proba = clf.predict_proba(colour_images)
    np.testing.assert_allclose(proba, expected, atol=1e-5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    # A higher temperature flattens confidences but keeps the ranking.
    cold = OnnxClassifier(write_linear_onnx(tmp_path / "cold.onnx", facemask_spec))
    assert np.all(clf.predict(colour_images)[1] < cold.predict(colour_images)[1])
    assert clf.predict(colour_images)[0].tolist() == cold.predict(colour_images)[0].tolist()


def test_gray_and_bgra_inputs_are_accepted(linear_model) -> None:
    gray = np.full((9, 9), 200, np.uint8)
    bgra = np.zeros((9, 9, 4), np.uint8)
    assert OnnxClassifier(linear_model).predict_proba([gray, bgra]).shape == (2, 3)


def test_a_single_image_array_is_rejected(linear_model, colour_images) -> None:
    with pytest.raises(ValueError, match="wrap a single image in a list"):
        OnnxClassifier(linear_model).predict(colour_images[0])


def test_concurrent_predictions_agree(linear_model, colour_images) -> None:
    clf = OnnxClassifier(linear_model, num_threads=1)
    reference = clf.predict_proba(colour_images)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: clf.predict_proba(colour_images, batch_size=2), range(16)))
    for r in results:
        np.testing.assert_allclose(r, reference, atol=1e-6)


def test_spec_and_class_names_come_from_the_card(linear_model, facemask_spec) -> None:
    clf = OnnxClassifier(linear_model)
    assert clf.spec.task == "facemask"
    assert clf.class_names == facemask_spec.class_names
    assert "linear.onnx" in repr(clf)


def test_missing_file(tmp_path) -> None:
    path = tmp_path / "nope.onnx"
    with pytest.raises(ModelLoadError, match=re.escape(f"model file not found: {path}")):
        OnnxClassifier(path)


def test_text_file_renamed_onnx(tmp_path, facemask_spec) -> None:
    path = tmp_path / "fake.onnx"
    path.write_text("this is not a model\n")
    facemask_spec.save(ModelSpec.card_path(path))
    with pytest.raises(ModelLoadError, match="not a loadable ONNX model") as info:
        OnnxClassifier(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_card(tmp_path, facemask_spec, write_linear_onnx) -> None:
    path = write_linear_onnx(tmp_path / "nocard.onnx", facemask_spec, card=False)
    with pytest.raises(ModelLoadError, match=r"model card not found at .*nocard\.json"):
        OnnxClassifier(path)


def test_invalid_card(tmp_path, facemask_spec, write_linear_onnx) -> None:
    path = write_linear_onnx(tmp_path / "bad.onnx", facemask_spec)
    ModelSpec.card_path(path).write_text('{"task": "facemask"}')
    with pytest.raises(ModelLoadError, match=r"invalid model card .*missing required fields"):
        OnnxClassifier(path)


@pytest.mark.parametrize(
    ("card_change", "match"),
    [
        ({"class_names": ["a", "b"]}, "model has 3 outputs but the card names 2 classes"),
        ({"input_size": (32, 32)}, "input axis 2 is 16 but the card expects 32"),
    ],
)
def test_card_that_does_not_fit_the_model(
    tmp_path, facemask_spec, write_linear_onnx, card_change, match
) -> None:
    path = write_linear_onnx(tmp_path / "m.onnx", facemask_spec)
    dataclasses.replace(facemask_spec, **card_change).save(ModelSpec.card_path(path))
    with pytest.raises(ModelLoadError, match=match):
        OnnxClassifier(path)


def test_bad_arguments(linear_model, colour_images) -> None:
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        OnnxClassifier(linear_model, num_threads=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        OnnxClassifier(linear_model).predict(colour_images, batch_size=0)
