from __future__ import annotations

import numpy as np
import pytest

from maskops.evaluate.detection import (
    average_precision,
    box_iou,
    evaluate_detections,
    match_detections,
)
from maskops.types import Detections


def make_detections(xyxy, class_id, confidence=None):  # type: ignore[no-untyped-def]
    return Detections.from_lists(xyxy, class_id, confidence)


def test_box_iou_values_and_empty_shapes() -> None:
    iou = box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    assert iou == pytest.approx(np.array([[1 / 3, 1.0, 0.0]]))
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)
    assert box_iou([[0, 0, 1, 1], [0, 0, 2, 2]], []).shape == (2, 0)
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0  # zero-area union
    assert box_iou(make_detections([[0, 0, 2, 2]], [0]), make_detections([[0, 0, 2, 1]], [0]))[0, 0] == 0.5


def test_match_duplicates_are_false_positives() -> None:
    gt = make_detections([[0, 0, 10, 10]], [0])
    pred = make_detections([[0, 0, 10, 10], [0, 0, 10, 10]], [0, 0], [0.8, 0.9])
    m = match_detections(pred, gt, 0.5)
    # the higher-confidence one wins the match
    assert m.tp.tolist() == [False, True]
    assert m.matched_gt.tolist() == [-1, 0]
    assert m.gt_matched.tolist() == [True]


def test_match_is_class_aware_and_handles_empty() -> None:
    gt = make_detections([[0, 0, 10, 10]], [1])
    pred = make_detections([[0, 0, 10, 10]], [0], [0.9])
    assert match_detections(pred, gt, 0.5).tp.tolist() == [False]
    assert match_detections(pred, gt, 0.5, class_aware=False).tp.tolist() == [True]
    assert match_detections(Detections.empty(), gt).gt_matched.tolist() == [False]
    assert match_detections(pred, Detections.empty()).tp.tolist() == [False]


def test_average_precision_voc_all_point() -> None:
    # envelope: precision 1 up to recall 0.5, then 2/3 up to recall 1
    assert average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(0.5 + 1 / 3)
    assert average_precision([1.0], [1.0]) == pytest.approx(1.0)
    assert average_precision([], []) == 0.0


def _case() -> tuple[list[Detections], list[Detections]]:
    preds = [
        # false positive ranked first, a true positive, a duplicate
        make_detections([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], [0, 0, 0], [0.9, 0.8, 0.95]),
        make_detections([[0, 0, 10, 10]], [0], [0.7]),  # an image without faces: a false positive
        make_detections([[1, 0, 11, 10]], [0], [0.6]),  # IoU 90/110 = 0.818 with its ground truth
        Detections.empty(),  # empty image, no predictions
    ]
    gts = [
        make_detections([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0]),  # the second box is missed
        Detections.empty(),
        make_detections([[0, 0, 10, 10], [0, 0, 10, 10]], [0, 1]),  # class 1 is never predicted
        Detections.empty(),
    ]
    return preds, gts


def test_evaluate_detections_hand_computed() -> None:
    preds, gts = _case()
    res = evaluate_detections(preds, gts, 3, class_names=["a", "b", "c"])
    # class 0 ranking: FP, TP, FP, FP, TP with 3 gt -> recall (0, 1/3, 1/3, 1/3, 2/3),
    # precision (0, 1/2, 1/3, 1/4, 2/5); envelope 1/2 up to 1/3 and 2/5 up to 2/3 -> AP 0.3
    assert res.ap50[0] == pytest.approx(0.3)
    assert res.ap50[1] == 0.0  # ground truth but no predictions
    assert np.isnan(res.ap50[2])  # no ground truth: excluded
    assert res.map50 == pytest.approx(0.15)
    # at IoU >= 0.85 the 0.818 box is a FP: class-0 AP 1/6 on 3 of the 10 COCO thresholds
    assert res.map50_95 == pytest.approx((7 * 0.3 + 3 / 6) / 10 / 2)
    assert res.gt_counts.tolist() == [3, 1, 0]
    assert res.pred_counts.tolist() == [5, 0, 0]
    curve = res.pr_curves["a"]
    assert curve.recall == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3, 2 / 3])
    assert curve.precision == pytest.approx([0, 1 / 2, 1 / 3, 1 / 4, 2 / 5])
    d = res.to_dict()
    assert d["per_class"]["a"]["max_recall"] == pytest.approx(2 / 3)
    assert d["per_class"]["b"]["predictions"] == 0


def test_evaluate_detections_perfect_and_uncertain_ignored() -> None:
    gts = [make_detections([[0, 0, 10, 10], [20, 0, 30, 10]], [0, 1])]
    preds = [
        make_detections([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], [0, 1, -1], [0.9, 0.8, 0.99])
    ]
    res = evaluate_detections(preds, gts, 2)
    assert res.map50 == pytest.approx(1.0)
    assert res.map50_95 == pytest.approx(1.0)


def test_evaluate_detections_errors_and_no_gt() -> None:
    with pytest.raises(ValueError, match="one entry per image"):
        evaluate_detections([Detections.empty()], [], 2)
    with pytest.raises(ValueError, match="outside"):
        evaluate_detections([Detections.empty()], [make_detections([[0, 0, 1, 1]], [5])], 2)
    res = evaluate_detections([make_detections([[0, 0, 1, 1]], [0], [0.5])], [Detections.empty()], 2)
    assert np.isnan(res.map50)
