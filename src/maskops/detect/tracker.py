"""Face tracking across frames with class voting and hysteresis.

ByteTrack-style association on IoU: confident detections are matched to live tracks first, the
remaining low-score detections may then extend unmatched tracks (a face that blurs for a frame keeps
its id). Each track averages its class probabilities over time (exponential moving average) and only
changes its reported class when another class leads by a margin for several frames in a row, so a
flickering per-frame label does not flip the track. A track emits one event when its class is first
settled and one more each time the settled class really changes: one person without a mask yields
one event, not one per frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from maskops.boxes import box_iou
from maskops.types import Detections


@dataclass(frozen=True)
class TrackerConfig:
    """Association and voting parameters.

    Attributes:
        high_score: detections with face score >= this start and match tracks in the first pass.
        low_score: detections below this are ignored entirely.
        match_iou: minimum IoU for a detection to continue a track.
        max_age: frames a track survives without a match.
        min_hits: matched frames before a track is confirmed (reported and allowed to emit events).
        ema: weight of the newest frame in the class-probability average.
        switch_margin: the challenger class must lead the settled one by this much ...
        switch_frames: ... for this many consecutive frames before the settled class changes.
    """

    high_score: float = 0.5
    low_score: float = 0.1
    match_iou: float = 0.3
    max_age: int = 15
    min_hits: int = 3
    ema: float = 0.3
    switch_margin: float = 0.15
    switch_frames: int = 5

    def __post_init__(self) -> None:
        if not 0 <= self.low_score <= self.high_score <= 1:
            raise ValueError(
                f"need 0 <= low_score <= high_score <= 1, got {self.low_score}, {self.high_score}"
            )
        if not 0 < self.ema <= 1:
            raise ValueError(f"ema must be in (0, 1], got {self.ema}")
        if self.min_hits < 1 or self.max_age < 0 or self.switch_frames < 1:
            raise ValueError("min_hits and switch_frames must be >= 1 and max_age >= 0")


@dataclass
class Track:
    track_id: int
    box: np.ndarray
    probs: np.ndarray
    face_score: float
    hits: int = 1
    votes: int = 1  # matched frames that carried class evidence (uncertain faces carry none)
    age: int = 0  # frames since the last match
    settled: int = -1  # the reported class; -1 until confirmed
    pending: int = -1
    pending_count: int = 0
    events: int = 0

    @property
    def confirmed(self) -> bool:
        return self.settled >= 0


@dataclass(frozen=True)
class TrackEvent:
    """A track's class was settled (``previous == -1``) or changed."""

    frame_index: int
    track_id: int
    class_id: int
    previous: int
    confidence: float
    box: tuple[float, float, float, float]


@dataclass
class FaceTracker:
    """Stateful tracker; call :meth:`update` once per frame."""

    num_classes: int
    config: TrackerConfig = field(default_factory=TrackerConfig)
    tracks: list[Track] = field(default_factory=list)
    frame_index: int = 0
    _next_id: int = 1

    def update(
        self, detections: Detections, probs: np.ndarray | None = None
    ) -> tuple[Detections, list[TrackEvent]]:
        """Associate this frame's faces with tracks.

        Args:
            detections: this frame's faces; ``face_score`` (or ``confidence``) drives association.
            probs: (n, num_classes) class probabilities per face; when omitted, a one-hot of
                ``class_id`` weighted by ``confidence`` is used (uncertain faces, class -1, vote nothing).

        Returns:
            The confirmed tracks seen this frame as ``Detections`` (voted class, averaged confidence,
            ``track_id``), and the events this frame produced.
        """
        cfg = self.config
        probs = self._probs(detections, probs)
        scores = detections.face_score if detections.face_score is not None else detections.confidence
        keep = scores >= cfg.low_score
        dets, probs, scores = detections[keep], probs[keep], scores[keep]
        high = scores >= cfg.high_score

        unmatched_tracks = list(range(len(self.tracks)))
        matched_det = np.zeros(len(dets), bool)
        for pass_mask in (high, ~high):
            det_idx = np.flatnonzero(pass_mask & ~matched_det)
            pairs = self._match([self.tracks[i] for i in unmatched_tracks], dets.xyxy[det_idx])
            for ti, di in pairs:
                track = self.tracks[unmatched_tracks[ti]]
                d = det_idx[di]
                self._absorb(track, dets.xyxy[d], probs[d], float(scores[d]))
                matched_det[d] = True
            done = {unmatched_tracks[ti] for ti, _ in pairs}
            unmatched_tracks = [i for i in unmatched_tracks if i not in done]

        for i in unmatched_tracks:
            self.tracks[i].age += 1
        for d in np.flatnonzero(~matched_det & high):
            votes = int(probs[d].sum() > 0)
            self.tracks.append(
                Track(self._next_id, dets.xyxy[d].copy(), probs[d].copy(), float(scores[d]), votes=votes)
            )
            self._next_id += 1
        self.tracks = [t for t in self.tracks if t.age <= cfg.max_age]

        events = [e for t in self.tracks if t.age == 0 for e in self._vote(t)]
        visible = [t for t in self.tracks if t.age == 0 and t.confirmed]
        self.frame_index += 1
        return self._as_detections(visible), events

    def _probs(self, detections: Detections, probs: np.ndarray | None) -> np.ndarray:
        n = len(detections)
        if probs is not None:
            probs = np.asarray(probs, np.float32)
            if probs.shape != (n, self.num_classes):
                raise ValueError(f"probs must have shape ({n}, {self.num_classes}), got {probs.shape}")
            return probs
        out = np.zeros((n, self.num_classes), np.float32)
        valid = (detections.class_id >= 0) & (detections.class_id < self.num_classes)
        out[np.flatnonzero(valid), detections.class_id[valid]] = detections.confidence[valid]
        return out

    def _match(self, tracks: list[Track], boxes: np.ndarray) -> list[tuple[int, int]]:
        """Greedy IoU matching (faces per frame are few; greedy equals Hungarian in practice)."""
        if not tracks or len(boxes) == 0:
            return []
        iou = box_iou(np.stack([t.box for t in tracks]), boxes)
        pairs: list[tuple[int, int]] = []
        while True:
            ti, di = np.unravel_index(int(np.argmax(iou)), iou.shape)
            if iou[ti, di] < self.config.match_iou:
                return pairs
            pairs.append((int(ti), int(di)))
            iou[ti, :] = -1
            iou[:, di] = -1

    def _absorb(self, track: Track, box: np.ndarray, probs: np.ndarray, score: float) -> None:
        track.box = box.copy()
        if probs.sum() > 0:  # an uncertain face carries no class evidence
            # a plain mean over the first 1/ema votes, the moving average after: otherwise the first
            # frame outweighs the next ones and a wrong first label settles the track
            track.votes += 1
            a = max(self.config.ema, 1.0 / track.votes)
            track.probs = (1 - a) * track.probs + a * probs
        track.face_score = score
        track.hits += 1
        track.age = 0

    def _vote(self, track: Track) -> list[TrackEvent]:
        cfg = self.config
        if track.hits < cfg.min_hits or track.probs.sum() <= 0:
            return []
        leader = int(np.argmax(track.probs))
        if track.settled < 0:
            return [self._settle(track, leader)]
        if leader == track.settled:
            track.pending, track.pending_count = -1, 0
            return []
        if track.probs[leader] - track.probs[track.settled] < cfg.switch_margin:
            track.pending, track.pending_count = -1, 0
            return []
        track.pending_count = track.pending_count + 1 if track.pending == leader else 1
        track.pending = leader
        if track.pending_count < cfg.switch_frames:
            return []
        return [self._settle(track, leader)]

    def _settle(self, track: Track, class_id: int) -> TrackEvent:
        event = TrackEvent(
            frame_index=self.frame_index,
            track_id=track.track_id,
            class_id=class_id,
            previous=track.settled,
            confidence=float(track.probs[class_id] / max(track.probs.sum(), 1e-9)),
            box=tuple(float(v) for v in track.box),  # type: ignore[arg-type]
        )
        track.settled, track.pending, track.pending_count = class_id, -1, 0
        track.events += 1
        return event

    @staticmethod
    def _as_detections(tracks: list[Track]) -> Detections:
        if not tracks:
            return Detections(
                xyxy=np.zeros((0, 4), np.float32),
                confidence=np.zeros(0, np.float32),
                class_id=np.zeros(0, np.int64),
                face_score=np.zeros(0, np.float32),
                track_id=np.zeros(0, np.int64),
            )
        return Detections(
            xyxy=np.stack([t.box for t in tracks]),
            confidence=np.asarray(
                [float(t.probs[t.settled] / max(t.probs.sum(), 1e-9)) for t in tracks], np.float32
            ),
            class_id=np.asarray([t.settled for t in tracks], np.int64),
            face_score=np.asarray([t.face_score for t in tracks], np.float32),
            track_id=np.asarray([t.track_id for t in tracks], np.int64),
        )
