"""Multi-object tracking: deep-sort-realtime fed with our ReID embeddings, so torch never loads.

A pure stateful object: `update(detections)` per frame returns the tracks seen in that frame and
the life-cycle events that happened in it; no I/O, no drawing. `finish()` ends what is left.

Events: `started` when a track is confirmed (seen in `n_init` frames running), `lost` when a
confirmed track is not matched in a frame after being matched in the one before, `ended` when
deep-sort drops it (unmatched for more than `max_age` frames) or the stream ends.

Association is deep-sort's (appearance cascade gated by the Kalman filter, then IoU for new and
just-missed tracks) with two additions from later trackers, each measured on PETS09-S2L1
(`docs/tracking.md`): ByteTrack's second association, in which detections below
`high_confidence` only continue confirmed tracks that the first pass left unmatched (by IoU; they
never start a track), and StrongSORT's running average (EMA) of a track's embeddings in place of
a gallery of its last `nn_budget` ones.

On frames the detector skips (`coast`), optical flow (`edge.models.flow`) moves each track that
was matched at the last detected frame by how its pixels moved, and the Kalman filter takes that
as a measurement of where the track is: DeepStream's trackers do the same between inference
intervals. It keeps the box on the person instead of on a constant-velocity guess, so the next
detected frame matches by IoU and appearance from the right place.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
from deep_sort_realtime.deep_sort import iou_matching, linear_assignment
from deep_sort_realtime.deep_sort.detection import Detection
from deep_sort_realtime.deep_sort.nn_matching import NearestNeighborDistanceMetric
from deep_sort_realtime.deep_sort.track import Track as DeepSortTrack
from deep_sort_realtime.deep_sort.tracker import Tracker as DeepSortTracker

from edge.config import TrackerConfig
from edge.detections import Detections
from edge.models.flow import box_motions, gray
from edge.types import Track, TrackEvent, TrackUpdate

log = logging.getLogger(__name__)
DEFAULTS = TrackerConfig()  # as `edge run` uses them


class EmaTrack(DeepSortTrack):  # type: ignore[misc]
    """A deep-sort track whose appearance is one running average of its detections' unit
    embeddings (StrongSORT's EMA): `alpha` of the old average, 1 - alpha of the new one."""

    features: list[npt.NDArray[np.float32]]

    def __init__(self, *args: Any, alpha: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.alpha = alpha

    def update(self, kf: Any, detection: Detection) -> None:
        """Deep-sort's update, then the new embedding folded into the average."""
        super().update(kf, detection)
        if len(self.features) > 1:
            mixed = self.alpha * self.features[-2] + (1 - self.alpha) * self.features[-1]
            unit = mixed / max(float(np.linalg.norm(mixed)), 1e-12)
            self.features = [unit.astype(np.float32)]


class TwoStageTracker(DeepSortTracker):  # type: ignore[misc]
    """Deep-sort's tracker with ByteTrack's second association of low-confidence detections.

    Detections at or above `high_confidence` go through deep-sort's own matching; confirmed
    tracks it leaves unmatched then take the others by IoU (at most `max_iou_distance` apart).
    Only a confident detection (at least `birth_confidence`) left unmatched starts a track.
    """

    def __init__(
        self, metric: Any, high_confidence: float, birth_confidence: float, **kwargs: Any
    ) -> None:
        super().__init__(metric, **kwargs)
        self.high_confidence, self.birth_confidence = high_confidence, birth_confidence

    def _match(self, detections: list[Detection]) -> tuple[list[Any], list[int], list[int]]:
        high = [i for i, d in enumerate(detections) if d.confidence >= self.high_confidence]
        low = [i for i, d in enumerate(detections) if d.confidence < self.high_confidence]
        matches, unmatched_tracks, unmatched = super()._match([detections[i] for i in high])
        matches = [(track, high[d]) for track, d in matches]
        confirmed = [k for k in unmatched_tracks if self.tracks[k].is_confirmed()]
        second, still_unmatched, _ = linear_assignment.min_cost_matching(
            iou_matching.iou_cost, self.max_iou_distance, self.tracks, detections, confirmed, low
        )
        unmatched_tracks = [k for k in unmatched_tracks if k not in confirmed] + still_unmatched
        born = [
            high[d] for d in unmatched if detections[high[d]].confidence >= self.birth_confidence
        ]
        return matches + second, unmatched_tracks, born


class Tracker:
    """DeepSORT with appearance embeddings passed in.

    Args:
        max_age: frames a confirmed track survives without a match before it ends.
        n_init: consecutive matched frames before a track is confirmed (and `started`).
        max_cosine_distance: appearance gate; larger accepts less similar matches.
        max_iou_distance: IoU gate (1 - IoU) for the IoU matching passes.
        nn_budget: embeddings kept per track for appearance matching (with `ema_alpha` 0).
        high_confidence: detections below it only continue confirmed tracks (ByteTrack's
            second association); at most the detector's confidence turns this off.
        birth_confidence: the least confidence of a detection that starts a track.
        ema_alpha: weight of a track's old appearance in its running average; 0 keeps a
            gallery of `nn_budget` embeddings instead.
        flow: follow tracks with optical flow on the frames the detector skips (`coast` with
            the frame); False leaves them to the Kalman filter's prediction.
        first_id: the id of the first track (ids that earlier runs used are skipped).

    Raises:
        ValueError: a parameter is out of range.
    """

    def __init__(
        self,
        max_age: int = DEFAULTS.max_age,
        n_init: int = DEFAULTS.n_init,
        max_cosine_distance: float = DEFAULTS.max_cosine_distance,
        max_iou_distance: float = DEFAULTS.max_iou_distance,
        nn_budget: int = DEFAULTS.nn_budget,
        high_confidence: float = DEFAULTS.high_confidence,
        birth_confidence: float = DEFAULTS.birth_confidence,
        ema_alpha: float = DEFAULTS.ema_alpha,
        flow: bool = DEFAULTS.flow,
        first_id: int = 1,
    ) -> None:
        counts = (("max_age", max_age), ("n_init", n_init), ("nn_budget", nn_budget))
        for name, count in (*counts, ("first_id", first_id)):
            if count < 1:
                raise ValueError(f"{name} must be at least 1, got {count}")
        for name, distance in (
            ("max_cosine_distance", max_cosine_distance),
            ("max_iou_distance", max_iou_distance),
        ):
            if not 0.0 < distance <= 2.0:
                raise ValueError(f"{name} must be within (0, 2], got {distance}")
        for name, share in (
            ("high_confidence", high_confidence),
            ("birth_confidence", birth_confidence),
        ):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {share}")
        if not 0.0 <= ema_alpha < 1.0:
            raise ValueError(f"ema_alpha must be within [0, 1), got {ema_alpha}")
        metric = NearestNeighborDistanceMetric(
            "cosine", max_cosine_distance, 1 if ema_alpha else nn_budget
        )
        self._tracker = TwoStageTracker(
            metric,
            high_confidence,
            birth_confidence,
            max_iou_distance=max_iou_distance,
            max_age=max_age,
            n_init=n_init,
            override_track_class=partial(EmaTrack, alpha=ema_alpha) if ema_alpha else None,
        )
        # Ids continue across runs (`edge.outputs.run`); deep-sort numbers new tracks from here.
        self._tracker._next_id = first_id
        self.frame = -1
        self._confidence: dict[int, float] = {}
        self._live: dict[int, Track] = {}  # confirmed tracks not yet ended
        self._matched_before: set[int] = set()
        self._reported: list[Track] = []  # the tracks of the last frame, which `hold` repeats
        self.flow = flow
        self._previous: npt.NDArray[np.uint8] | None = None  # the last frame update/coast saw

    @classmethod
    def from_config(cls, config: TrackerConfig, first_id: int = 1) -> Tracker:
        """A tracker with the `[tracker]` section's settings."""
        return cls(
            max_age=config.max_age,
            n_init=config.n_init,
            max_cosine_distance=config.max_cosine_distance,
            max_iou_distance=config.max_iou_distance,
            nn_budget=config.nn_budget,
            high_confidence=config.high_confidence,
            birth_confidence=config.birth_confidence,
            ema_alpha=config.ema_alpha,
            flow=config.flow,
            first_id=first_id,
        )

    def update(
        self, detections: Detections, image: npt.NDArray[np.uint8] | None = None
    ) -> TrackUpdate:
        """Advance one frame with its detections, which carry `data["embedding"]`; `image`
        (BGR or GRAY8) is the frame, which the flow of the next skipped frame starts from.

        Raises:
            ValueError: the detections have no embeddings.
        """
        if "embedding" not in detections.data:
            raise ValueError("detections need data['embedding'] from the ReID embedder")
        self.frame += 1
        self._previous = image if self.flow else None
        wh = detections.xyxy[:, 2:] - detections.xyxy[:, :2]
        detections = detections[np.all(wh > 0, axis=1)]
        xyxy = detections.xyxy
        ltwh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        self._tracker.predict()
        self._tracker.update([
            Detection(box, float(conf), embedding, class_name=int(cls))
            for box, conf, cls, embedding in zip(
                ltwh, detections.confidence, detections.class_id, detections.data["embedding"],
                strict=True,
            )
        ])  # fmt: skip
        confirmed = [self._snapshot(t) for t in self._tracker.tracks if t.is_confirmed()]
        events = self._events(confirmed)
        self._reported = [t for t in confirmed if t.time_since_update == 0]
        return TrackUpdate(self.frame, self._reported, events)

    def coast(self, image: npt.NDArray[np.uint8] | None = None) -> TrackUpdate:
        """Advance one frame the detector skipped (`image`: that frame, BGR or GRAY8): the
        Kalman prediction, corrected by optical flow where `flow` is on; no events.

        The tracks matched at the last detected frame are reported, so they are drawn and
        written on every frame; a missed match is only judged at the next detected frame. A
        skipped frame is not a miss: `time_since_update` (and so `max_age`) counts detected
        frames, which also keeps deep-sort's IoU matching, which it allows only one update after
        the last match, working for new tracks.
        """
        self.frame += 1
        followed = [
            raw
            for raw in self._tracker.tracks
            if raw.is_confirmed() and int(raw.track_id) in self._matched_before
        ]
        before = [(raw.mean[:4].copy(), raw.to_ltrb()) for raw in followed]
        self._tracker.predict()
        for raw in self._tracker.tracks:
            raw.time_since_update -= 1
        previous = self._previous
        self._previous = current = gray(image) if self.flow and image is not None else None
        if (
            followed
            and previous is not None
            and current is not None
            and previous.shape[:2] == current.shape  # not across a change of resolution
        ):
            self._follow(followed, before, gray(previous), current)
        self._reported = [self._snapshot(raw) for raw in followed]
        return TrackUpdate(self.frame, self._reported, [])

    def _follow(
        self,
        tracks: list[Any],
        before: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]],
        previous: npt.NDArray[np.uint8],
        image: npt.NDArray[np.uint8],
    ) -> None:
        """Measure each track's box where its pixels moved to (its box in the frame before,
        shifted and scaled as the flow says) and correct its Kalman filter with that."""
        motions = box_motions(previous, image, np.array([box for _, box in before]))
        kf = self._tracker.kf
        for raw, (xyah, _), (dx, dy, scale) in zip(tracks, before, motions, strict=True):
            if not np.isnan(scale):
                measured = xyah + np.array([dx, dy, 0.0, 0.0])
                measured[3] *= scale
                raw.mean, raw.covariance = kf.update(raw.mean, raw.covariance, measured)

    def hold(self) -> TrackUpdate:
        """Advance one frame in which nothing moved (motion gating): the tracks reported last
        stay where they were; no prediction, no events, and no frame counts toward `max_age`."""
        self.frame += 1
        return TrackUpdate(self.frame, self._reported, [])

    def finish(self) -> list[TrackEvent]:
        """End every live track (the stream is over) and return their `ended` events."""
        events = [TrackEvent(self.frame, "ended", t) for t in self._live.values()]
        self._previous = None  # a stream that goes on after this starts its flow afresh
        self._live.clear()
        self._matched_before.clear()
        return events

    def _snapshot(self, raw: Any) -> Track:
        """Our immutable view of a deep-sort track."""
        track_id = int(raw.track_id)
        if raw.det_conf is not None:  # matched in this frame
            self._confidence[track_id] = float(raw.det_conf)
        x1, y1, x2, y2 = (float(v) for v in raw.to_ltrb())
        return Track(
            track_id=track_id,
            class_id=int(raw.det_class),
            confidence=self._confidence.get(track_id, 0.0),
            xyxy=(x1, y1, x2, y2),
            age=int(raw.age),
            hits=int(raw.hits),
            time_since_update=int(raw.time_since_update),
        )

    def _events(self, confirmed: list[Track]) -> list[TrackEvent]:
        """Compare this frame's confirmed tracks with the last frame's to find what changed."""
        now = {t.track_id: t for t in confirmed}
        events = [TrackEvent(self.frame, "ended", t) for i, t in self._live.items() if i not in now]
        matched = {i for i, t in now.items() if t.time_since_update == 0}
        for track_id, track in now.items():
            if track_id not in self._live:
                events.append(TrackEvent(self.frame, "started", track))
            elif track_id in self._matched_before and track_id not in matched:
                events.append(TrackEvent(self.frame, "lost", track))
        for ended in self._live.keys() - now.keys():
            self._confidence.pop(ended, None)
        self._live, self._matched_before = now, matched
        return events
