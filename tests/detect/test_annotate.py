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


def test_tags_stay_inside_the_image_and_do_not_cover_each_other() -> None:
    from maskops.detect.annotate import place_tag

    w, h = 332, 250
    boxes = [
        [300, 2, 330, 30],
        [290, 20, 325, 55],
        [0, 100, 40, 140],
        [10, 104, 50, 144],
        [120, 200, 160, 249],
    ]
    placed: list[tuple[int, int, int, int]] = []
    for box in boxes:
        placed.append(place_tag(box, 150, 16, w, h, placed))
    for x, y, tw, th in placed:
        assert x >= 0 and x + tw <= w and y >= 0 and y + th <= h
    for i, a in enumerate(placed):
        for b in placed[i + 1 :]:
            assert a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]


def test_a_tag_at_the_right_edge_is_moved_into_the_image() -> None:
    scene = np.zeros((120, 200, 3), np.uint8)
    dets = Detections.from_lists([[170, 40, 199, 80]], [2], [0.93])  # long class name, right edge
    out = BoxAnnotator(MaskClass.names()).annotate(scene, dets)
    colour = DEFAULT_COLORS["mask_weared_incorrect"]
    filled = (out == colour).all(axis=2)
    cols = np.where(filled.sum(axis=0) > 5)[0]
    assert cols.min() < 170  # shifted left to fit instead of cut at x = 199


def test_uncertain_faces_show_the_reason_not_the_confidence() -> None:
    annotator = BoxAnnotator(MaskClass.names())
    assert annotator.text(-1, 0.98, "too dark (brightness 20 < 35)") == "uncertain: too dark"
    assert annotator.text(-1, 0.98) == "uncertain"
    assert annotator.text(0, 0.98) == "with_mask 0.98"


def test_unclassified_faces_are_drawn_as_faces() -> None:
    annotator = BoxAnnotator(MaskClass.names())
    assert annotator.label(-2) == "face" and annotator.label(-1) == "uncertain"
    assert annotator.text(-2, 0.93) == "face 0.93"
