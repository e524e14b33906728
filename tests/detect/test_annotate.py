import numpy as np

from maskops.detect.annotate import DEFAULT_COLORS, BoxAnnotator
from maskops.types import Detections, MaskClass


def test_annotate_draws_class_colours_and_leaves_input_untouched() -> None:
    scene = np.zeros((200, 300, 3), np.uint8)
    dets = Detections.from_lists([[20, 40, 80, 120], [150, 40, 220, 120]], [0, 1], [0.9, 0.8])
    out = BoxAnnotator(MaskClass.names()).annotate(scene, dets)
    assert scene.sum() == 0
    assert out.shape == scene.shape
    # left edge of each box carries its class colour
    assert tuple(out[80, 20]) == DEFAULT_COLORS["with_mask"]
    assert tuple(out[80, 150]) == DEFAULT_COLORS["without_mask"]


def test_uncertain_and_gray_input() -> None:
    gray = np.zeros((100, 100), np.uint8)
    dets = Detections.from_lists([[10, 30, 60, 90]], [-1], [0.4])
    out = BoxAnnotator(MaskClass.names()).annotate(gray, dets)
    assert out.shape == (100, 100, 3)
    assert tuple(out[60, 10]) == DEFAULT_COLORS["uncertain"]


def test_no_detections_returns_equal_copy() -> None:
    scene = np.full((50, 60, 3), 7, np.uint8)
    out = BoxAnnotator(["a", "b"]).annotate(scene, Detections.empty())
    assert out is not scene and np.array_equal(out, scene)


def test_overlay_text_is_written_on_a_dark_band_in_place() -> None:
    scene = np.full((200, 400, 3), 120, np.uint8)
    out = BoxAnnotator(["with_mask"]).overlay_text(scene, ["30.0 FPS  frame 12", "ms: detect 8.1"])
    assert out is scene
    band = scene[:48]
    assert scene[2, 2].tolist() == [48, 48, 48]  # darkened behind the text
    assert (band > 200).any()  # white text on it
    assert (scene[48:] == 120).all()  # nothing below the band
