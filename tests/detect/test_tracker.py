import numpy as np
import pytest

from maskops.detect.tracker import FaceTracker, TrackerConfig
from maskops.types import Detections


def frame(boxes: list[list[float]], classes: list[int], conf: float = 0.9, score: float = 0.9) -> Detections:
    n = len(boxes)
    return Detections(
        xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        confidence=[conf] * n,
        class_id=classes,
        face_score=[score] * n,
    )


def walk(x0: float, y0: float, dx: float, t: int, size: float = 40) -> list[float]:
    x = x0 + dx * t
    return [x, y0, x + size, y0 + size]


def test_two_moving_faces_keep_their_ids_and_emit_one_event_each() -> None:
    tracker = FaceTracker(num_classes=3)
    all_events = []
    ids_a, ids_b = set(), set()
    for t in range(30):
        dets, events = tracker.update(frame([walk(10, 10, 3, t), walk(300, 200, -3, t)], [0, 1]))
        all_events += events
        if len(dets):
            by_x = dets.track_id[np.argsort(dets.xyxy[:, 0])]
            if t < 40:
                ids_a.add(int(by_x[0]))
                ids_b.add(int(by_x[-1]))
    assert len(ids_a) == 1 and len(ids_b) == 1 and ids_a != ids_b
    assert sorted(e.class_id for e in all_events) == [0, 1]
    assert all(e.previous == -1 for e in all_events)


def test_track_is_confirmed_only_after_min_hits() -> None:
    tracker = FaceTracker(num_classes=3, config=TrackerConfig(min_hits=3))
    seen = [len(tracker.update(frame([walk(0, 0, 1, t)], [1]))[0]) for t in range(4)]
    assert seen == [0, 0, 1, 1]


def test_flickering_label_does_not_flip_the_track() -> None:
    tracker = FaceTracker(num_classes=3)
    events = []
    rng = np.random.default_rng(0)
    x = 50.0
    for t in range(60):
        # mostly without_mask (1), with a wrong with_mask (0) label every third frame
        cls = 0 if t % 3 == 0 else 1
        x += 1 + 2 * rng.random()
        dets, ev = tracker.update(frame([[x, 50, x + 40, 90]], [cls]))
        events += ev
    assert [(e.class_id, e.previous) for e in events] == [(1, -1)]
    assert int(dets.class_id[0]) == 1


def test_a_lasting_change_of_class_is_reported_once() -> None:
    tracker = FaceTracker(num_classes=3)
    events = []
    for t in range(80):
        events += tracker.update(frame([walk(50, 50, 1, t)], [1 if t < 30 else 0]))[1]
    assert [(e.class_id, e.previous) for e in events] == [(1, -1), (0, 1)]


def test_low_score_detection_continues_a_track_but_does_not_start_one() -> None:
    tracker = FaceTracker(num_classes=3, config=TrackerConfig(min_hits=1))
    first, _ = tracker.update(frame([walk(0, 0, 2, 0)], [0]))
    blurred, _ = tracker.update(frame([walk(0, 0, 2, 1)], [0], score=0.3))
    assert blurred.track_id.tolist() == first.track_id.tolist()
    fresh = FaceTracker(num_classes=3, config=TrackerConfig(min_hits=1))
    assert len(fresh.update(frame([[0, 0, 40, 40]], [0], score=0.3))[0]) == 0


def test_track_survives_a_short_gap_and_dies_after_max_age() -> None:
    tracker = FaceTracker(num_classes=3, config=TrackerConfig(min_hits=1, max_age=2))
    tid = tracker.update(frame([[0, 0, 40, 40]], [0]))[0].track_id[0]
    tracker.update(Detections.empty(with_face_score=True))
    again = tracker.update(frame([[1, 0, 41, 40]], [0]))[0]
    assert again.track_id[0] == tid
    for _ in range(3):
        tracker.update(Detections.empty(with_face_score=True))
    assert tracker.update(frame([[1, 0, 41, 40]], [0]))[0].track_id[0] != tid


def test_uncertain_faces_vote_nothing() -> None:
    tracker = FaceTracker(num_classes=3, config=TrackerConfig(min_hits=1))
    dets, events = tracker.update(frame([[0, 0, 40, 40]], [-1]))
    assert len(dets) == 0 and events == []


@pytest.mark.parametrize(
    "kwargs",
    [{"low_score": 0.6, "high_score": 0.5}, {"ema": 0.0}, {"min_hits": 0}],
)
def test_bad_config_is_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TrackerConfig(**kwargs)


def test_probs_shape_is_checked() -> None:
    with pytest.raises(ValueError, match="probs must have shape"):
        FaceTracker(num_classes=3).update(frame([[0, 0, 4, 4]], [0]), probs=np.ones((1, 2)))


def test_wrong_first_label_with_soft_probabilities_does_not_settle_the_track() -> None:
    """The first frame must not outweigh the next ones: votes start as a plain mean."""
    tracker = FaceTracker(num_classes=3)
    events = []
    for t in range(30):
        wrong = t % 3 == 0  # the very first frame is one of the wrong ones
        probs = np.asarray([[0.9, 0.08, 0.02] if wrong else [0.1, 0.85, 0.05]], np.float32)
        _, ev = tracker.update(frame([[50 + 2 * t, 50, 90 + 2 * t, 90]], [-1]), probs)
        events += ev
    assert [(e.class_id, e.previous) for e in events] == [(1, -1)]
