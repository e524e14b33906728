"""maskops.boxes: IoU, NMS, expand and clip on hand-computed boxes, and empty inputs."""

from __future__ import annotations

import numpy as np
import pytest

from maskops.boxes import as_boxes, box_iou, clip_boxes, expand_box, nms, nms_indices
from maskops.types import Detections


def test_box_iou_hand_computed() -> None:
    # [0,0,10,10] vs [5,0,15,10]: intersection 5*10=50, union 100+100-50=150
    # vs [2,2,4,4]: inside, 4/100; vs [20,20,30,30]: disjoint
    iou = box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [2, 2, 4, 4], [20, 20, 30, 30]])
    assert iou.shape == (1, 3)
    assert iou.dtype == np.float64
    np.testing.assert_allclose(iou[0], [50 / 150, 4 / 100, 0.0])


def test_box_iou_is_symmetric_and_one_on_itself() -> None:
    a = np.array([[0, 0, 4, 2], [1, 1, 3, 5]], np.float32)
    iou = box_iou(a, a)
    # overlap [1,1,3,2]: area 2; union 8 + 8 - 2 = 14
    np.testing.assert_allclose(iou, [[1.0, 2 / 14], [2 / 14, 1.0]])


@pytest.mark.parametrize(
    ("a", "b", "shape"),
    [
        (np.zeros((0, 4)), [[0, 0, 1, 1]], (0, 1)),
        ([[0, 0, 1, 1], [0, 0, 2, 2]], [], (2, 0)),
        ([], [], (0, 0)),
    ],
)
def test_box_iou_empty_inputs(a: object, b: object, shape: tuple[int, int]) -> None:
    assert box_iou(a, b).shape == shape


def test_box_iou_zero_area_union_is_zero_and_detections_accepted() -> None:
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0
    assert (
        box_iou(Detections.from_lists([[0, 0, 2, 2]], [0]), Detections.from_lists([[0, 0, 2, 1]], [0]))[0, 0]
        == 0.5
    )


def test_as_boxes_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        as_boxes([[0, 0, 1]], "a")


def test_nms_indices_keeps_best_of_overlaps_in_score_order() -> None:
    # box 1 (0.9) and box 0 (0.8) overlap with IoU 81/119 = 0.68; box 2 is disjoint
    boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]]
    assert nms_indices(boxes, [0.8, 0.9, 0.5], 0.5).tolist() == [1, 2]
    # a threshold above their IoU keeps both
    assert nms_indices(boxes, [0.8, 0.9, 0.5], 0.7).tolist() == [1, 0, 2]


def test_nms_indices_ties_keep_input_order_and_empty_input() -> None:
    assert nms_indices([[0, 0, 10, 10], [0, 0, 10, 10]], [0.5, 0.5], 0.5).tolist() == [0]
    out = nms_indices(np.zeros((0, 4)), [], 0.5)
    assert out.dtype == np.int64 and out.shape == (0,)
    with pytest.raises(ValueError, match="one value per box"):
        nms_indices([[0, 0, 1, 1]], [0.5, 0.6], 0.5)


def test_nms_on_detections() -> None:
    faces = Detections.from_lists(
        [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], [0, 0, 0], [0.8, 0.9, 0.5]
    )
    kept = nms(faces, 0.5)
    np.testing.assert_allclose(kept.confidence, [0.9, 0.5])
    assert len(nms(Detections.empty(), 0.5)) == 0


def test_clip_boxes() -> None:
    out = clip_boxes([[-5, 2, 30, 50], [1, -1, 2, 3]], 20, 40)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 2, 20, 40], [1, 0, 2, 3]])
    assert clip_boxes(np.zeros((0, 4)), 10, 10).shape == (0, 4)


def test_clip_boxes_copies() -> None:
    src = np.array([[-1, -1, 5, 5]], np.float32)
    clip_boxes(src, 4, 4)
    assert src[0, 0] == -1


def test_expand_box_adds_margin_per_side_rounds_outwards_and_clips() -> None:
    assert expand_box((10, 20, 30, 60), 0.1, 100, 100) == (8, 16, 32, 64)
    assert expand_box((10, 20, 30, 60), 0.0, 100, 100) == (10, 20, 30, 60)
    assert expand_box((10.5, 20.5, 29.5, 59.5), 0.0, 100, 100) == (10, 20, 30, 60)
    assert expand_box((0, 0, 50, 40), 0.5, 60, 45) == (0, 0, 60, 45)


def test_nested_mask() -> None:
    from maskops.boxes import nested_mask

    boxes = [
        [0, 0, 100, 100],  # a whole face
        [10, 10, 40, 40],  # inside it: nested
        [90, 0, 140, 50],  # overlaps the face's edge by 20% of its area: kept
        [200, 200, 260, 260],  # alone
        [205, 205, 255, 255],  # inside the last one, but not half its size: kept
    ]
    assert nested_mask(boxes).tolist() == [False, True, False, False, False]
    assert nested_mask(boxes, overlap=0.15).tolist() == [False, True, True, False, False]
    # a small face inside a large but less sure box is kept; the part-face less sure than the face goes
    scores = [0.2, 0.9, 0.8, 0.9, 0.9]
    assert nested_mask(boxes, scores).tolist() == [False, False, False, False, False]
    assert nested_mask(boxes, [0.95, 0.9, 0.8, 0.9, 0.9]).tolist() == [False, True, False, False, False]
    with pytest.raises(ValueError, match="one value per box"):
        nested_mask(boxes, [0.5])
    assert nested_mask(np.zeros((0, 4))).shape == (0,)
    assert nested_mask([[0, 0, 1, 1]]).tolist() == [False]
