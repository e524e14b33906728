from __future__ import annotations

import numpy as np
import pytest

from maskops.evaluate.metrics import (
    accuracy,
    average_precision_score,
    balanced_accuracy,
    classification_metrics,
    confusion_matrix,
    json_safe,
    macro_f1,
    precision_recall_f1,
    roc_auc_binary,
    roc_auc_ovr,
)

Y_TRUE = [0, 0, 1, 1, 2, 2]
Y_PRED = [0, 1, 1, 1, 0, 2]


def test_confusion_matrix_rows_true_cols_pred() -> None:
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert cm.dtype == np.int64


def test_confusion_matrix_empty_and_errors() -> None:
    assert confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0, 1], [0], 3)


def test_precision_recall_f1_hand_computed() -> None:
    p, r, f1, support = precision_recall_f1(confusion_matrix(Y_TRUE, Y_PRED, 3))
    assert p == pytest.approx([0.5, 2 / 3, 1.0])
    assert r == pytest.approx([0.5, 1.0, 0.5])
    assert f1 == pytest.approx([0.5, 0.8, 2 / 3])
    assert support.tolist() == [2, 2, 2]


def test_undefined_ratios_are_zero() -> None:
    # class 2 is never predicted and never true: all its ratios are 0
    p, r, f1, support = precision_recall_f1(confusion_matrix([0, 1], [0, 0], 3))
    assert p.tolist() == [0.5, 0.0, 0.0]
    assert r.tolist() == [1.0, 0.0, 0.0]
    assert f1[1:].tolist() == [0.0, 0.0]
    assert support.tolist() == [1, 1, 0]


def test_scalar_metrics_hand_computed() -> None:
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    assert macro_f1(Y_TRUE, Y_PRED, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert balanced_accuracy(Y_TRUE, Y_PRED, 3) == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert accuracy([], []) == 0.0
    assert macro_f1([], [], 3) == 0.0
    assert balanced_accuracy([], [], 3) == 0.0


def test_roc_auc_hand_computed_and_ties() -> None:
    assert roc_auc_binary([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc_binary([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert np.isnan(roc_auc_binary([1, 1], [0.2, 0.3]))


def test_roc_auc_ovr_nan_for_absent_class() -> None:
    prob = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    per_class, macro = roc_auc_ovr([0, 1, 0, 1], prob)
    assert per_class[0] == pytest.approx(1.0)
    assert per_class[1] == pytest.approx(1.0)
    assert np.isnan(per_class[2])
    assert macro == pytest.approx(1.0)


def test_average_precision_hand_computed() -> None:
    # ranks: P@1 = 1 (R 0.5), P@3 = 2/3 (R 1) -> 0.5 * 1 + 0.5 * 2/3
    assert average_precision_score([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(0.5 + 1 / 3)
    assert np.isnan(average_precision_score([0, 0], [0.1, 0.2]))


def test_cross_check_with_sklearn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + 1.5 * np.eye(3)[y]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    prob = np.round(prob, 2)  # force ties
    pred = prob.argmax(1)
    assert np.array_equal(confusion_matrix(y, pred, 3), sk.confusion_matrix(y, pred, labels=[0, 1, 2]))
    assert macro_f1(y, pred, 3) == pytest.approx(sk.f1_score(y, pred, average="macro"))
    assert balanced_accuracy(y, pred, 3) == pytest.approx(sk.balanced_accuracy_score(y, pred))
    per_class, _ = roc_auc_ovr(y, prob)
    for c in range(3):
        assert per_class[c] == pytest.approx(sk.roc_auc_score(y == c, prob[:, c]))
        assert average_precision_score(y == c, prob[:, c]) == pytest.approx(
            sk.average_precision_score(y == c, prob[:, c])
        )


def test_classification_metrics_dict() -> None:
    prob = np.eye(3)[Y_PRED] * 0.7 + 0.1
    m = classification_metrics(Y_TRUE, prob, ["a", "b", "c"])
    assert set(m) == {
        "accuracy",
        "macro_f1",
        "balanced_accuracy",
        "roc_auc_macro",
        "ece",
        "n",
        "per_class",
        "confusion",
    }
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["b"] == pytest.approx(
        {
            "precision": 2 / 3,
            "recall": 1.0,
            "f1": 0.8,
            "support": 2,
            "roc_auc": m["per_class"]["b"]["roc_auc"],
        }
    )
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # every prediction has confidence 0.8 and 4/6 are right
    assert m["ece"] == pytest.approx(abs(0.8 - 4 / 6))


def test_classification_metrics_empty_and_bad_columns() -> None:
    m = classification_metrics(np.zeros(0, int), np.zeros((0, 2)), ["a", "b"])
    assert m["n"] == 0 and m["accuracy"] == 0.0
    assert json_safe(m)["roc_auc_macro"] is None
    with pytest.raises(ValueError, match="columns"):
        classification_metrics([0], [[0.5, 0.5]], ["a", "b", "c"])
