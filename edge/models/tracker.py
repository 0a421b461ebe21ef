"""Multi-object tracking: deep-sort-realtime fed with our ReID embeddings, so torch never loads.

A pure stateful object: `update(detections)` per frame returns the tracks seen in that frame and
the life-cycle events that happened in it; no I/O, no drawing. `finish()` ends what is left.

Events: `started` when a track is confirmed (seen in `n_init` frames running), `lost` when a
confirmed track is not matched in a frame after being matched in the one before, `ended` when
deep-sort drops it (unmatched for more than `max_age` frames) or the stream ends.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from deep_sort_realtime.deepsort_tracker import DeepSort

from edge.config import TrackerConfig
from edge.detections import Detections
from edge.types import Track, TrackEvent, TrackUpdate

log = logging.getLogger(__name__)
DEFAULTS = TrackerConfig()  # as `edge run` uses them


class Tracker:
    """DeepSORT with appearance embeddings passed in.

    Args:
        max_age: frames a confirmed track survives without a match before it ends.
        n_init: consecutive matched frames before a track is confirmed (and `started`).
        max_cosine_distance: appearance gate; larger accepts less similar matches.
        max_iou_distance: IoU gate (1 - IoU) for the fallback IoU matching.
        nn_budget: embeddings kept per track for appearance matching.
        first_id: the id of the first track (ids that earlier runs used are skipped).

    Raises:
        ValueError: a parameter is out of range.
    """

    def __init__(
        self,
        max_age: int = DEFAULTS.max_age,
        n_init: int = DEFAULTS.n_init,
        max_cosine_distance: float = 0.2,
        max_iou_distance: float = 0.7,
        nn_budget: int = 100,
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
        self._deepsort = DeepSort(
            max_age=max_age,
            n_init=n_init,
            max_cosine_distance=max_cosine_distance,
            max_iou_distance=max_iou_distance,
            nn_budget=nn_budget,
            embedder=None,
        )
        # Ids continue across runs (`edge.outputs.run`); deep-sort numbers new tracks from here.
        self._deepsort.tracker._next_id = first_id
        self.frame = -1
        self._confidence: dict[int, float] = {}
        self._live: dict[int, Track] = {}  # confirmed tracks not yet ended
        self._matched_before: set[int] = set()

    def update(self, detections: Detections) -> TrackUpdate:
        """Advance one frame with its detections, which carry `data["embedding"]`.

        Raises:
            ValueError: the detections have no embeddings.
        """
        if "embedding" not in detections.data:
            raise ValueError("detections need data['embedding'] from the ReID embedder")
        self.frame += 1
        wh = detections.xyxy[:, 2:] - detections.xyxy[:, :2]
        detections = detections[np.all(wh > 0, axis=1)]
        raw = [
            ([float(x1), float(y1), float(x2 - x1), float(y2 - y1)], float(conf), int(cls))
            for (x1, y1, x2, y2), conf, cls in zip(
                detections.xyxy, detections.confidence, detections.class_id, strict=True
            )
        ]
        embeds = list(detections.data["embedding"])
        confirmed = [
            self._snapshot(t)
            for t in self._deepsort.update_tracks(raw, embeds=embeds)
            if t.is_confirmed()
        ]
        events = self._events(confirmed)
        tracks = [t for t in confirmed if t.time_since_update == 0]
        return TrackUpdate(self.frame, tracks, events)

    def coast(self) -> TrackUpdate:
        """Advance one frame the detector skipped: Kalman prediction only, no events.

        The tracks matched at the last detected frame are reported at their predicted boxes, so
        they are drawn and written on every frame; a missed match is only judged at the next
        detected frame. A skipped frame is not a miss: `time_since_update` (and so `max_age`)
        counts detected frames, which also keeps deep-sort's IoU matching, which it allows only
        one update after the last match, working for new tracks.
        """
        self.frame += 1
        self._deepsort.tracker.predict()
        for raw in self._deepsort.tracker.tracks:
            raw.time_since_update -= 1
        tracks = [
            self._snapshot(raw)
            for raw in self._deepsort.tracker.tracks
            if raw.is_confirmed() and int(raw.track_id) in self._matched_before
        ]
        return TrackUpdate(self.frame, tracks, [])

    def finish(self) -> list[TrackEvent]:
        """End every live track (the stream is over) and return their `ended` events."""
        events = [TrackEvent(self.frame, "ended", t) for t in self._live.values()]
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
