"""Roboflow's `trackers` (ByteTrack, OC-SORT, BoT-SORT, SORT; supervision's ByteTrack moved
there) replayed on the cached detections, for the methods table: well-kept library trackers
beside ours, on the same boxes.

They associate by IoU and motion only (no appearance), and report the detections' own boxes
for the tracks they match (ours reports the Kalman filter's). They have no step for a frame
without detections: on frames `detector.interval` skips, each one's last output is held (what
the runtime would draw with such a tracker), and the next detected frame's timestamp tells its
Kalman filter how far to predict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import supervision as sv
from trackers import BoTSORTTracker, ByteTrackTracker, OCSORTTracker, SORTTracker
from trackers.core.base import BaseTracker

from benchmarks.mot_metrics import NONE, FrameBoxes
from edge.detections import Detections

FRAME_RATE = 10.0  # PETS09-S2L1
BUFFER = 30  # lost_track_buffer, the library's default: in 30 fps frames, so 1 s (10 frames here)
ACTIVATION = 0.5  # track_activation_threshold: our tracker.birth_confidence
HIGH = 0.4  # high_conf_det_threshold: our tracker.high_confidence
LIBRARY: list[tuple[str, Callable[[], BaseTracker], float]] = [
    ("library: trackers ByteTrack (IoU only; reports detection boxes)",
     lambda: ByteTrackTracker(lost_track_buffer=BUFFER, frame_rate=FRAME_RATE,
                              track_activation_threshold=ACTIVATION,
                              high_conf_det_threshold=HIGH), 0.1),
    ("library: trackers OC-SORT (IoU and direction; reports detection boxes)",
     lambda: OCSORTTracker(lost_track_buffer=BUFFER, frame_rate=FRAME_RATE,
                           high_conf_det_threshold=HIGH), 0.1),
    ("library: trackers BoT-SORT, no camera motion compensation (IoU only; reports detection "
     "boxes)",
     lambda: BoTSORTTracker(lost_track_buffer=BUFFER, frame_rate=FRAME_RATE,
                            track_activation_threshold=ACTIVATION,
                            high_conf_det_threshold=HIGH, enable_cmc=False), 0.1),
    ("library: trackers SORT, detector confidence 0.2 (IoU only; reports detection boxes)",
     lambda: SORTTracker(lost_track_buffer=BUFFER, frame_rate=FRAME_RATE,
                         track_activation_threshold=ACTIVATION), 0.2),
]  # fmt: skip
"""Each library tracker: its row's name, a factory, and the detector confidence it is fed: 0.1
(ByteTrack's low boxes) for those that set boxes below high_conf_det_threshold apart, our
default 0.2 for SORT, which associates every box it is given alike."""


def replay_library(
    frames: Sequence[Detections | None], tracker: BaseTracker, frame_rate: float = FRAME_RATE
) -> dict[int, FrameBoxes]:
    """Track cached detections (None: a frame the detector skipped, where the tracker's last
    output is held) into MOT boxes per frame, as `benchmarks.replay.replay` returns them; only
    tracks with an id (tracker_id >= 0) are reported."""
    boxes: dict[int, FrameBoxes] = {}
    held = NONE
    for number, found in enumerate(frames, start=1):
        if found is not None:
            held = _tracked(tracker.update(_detections(found), timestamp=(number - 1) / frame_rate))
        if len(held[0]):
            boxes[number] = held
    return boxes


def _detections(found: Detections) -> sv.Detections:
    """Our detections as supervision's."""
    if not len(found):
        return sv.Detections.empty()
    return sv.Detections(
        xyxy=found.xyxy.astype(np.float32),
        confidence=found.confidence.astype(np.float32),
        class_id=found.class_id.astype(int),
    )


def _tracked(result: sv.Detections) -> FrameBoxes:
    """The tracked boxes (tracker_id >= 0) as ids and left-top-width-height boxes."""
    if result.tracker_id is None or not len(result):
        return NONE
    kept = result.tracker_id >= 0
    xyxy = result.xyxy[kept].astype(np.float64)
    return result.tracker_id[kept], np.hstack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]])
