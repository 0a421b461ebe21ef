"""Records that pass between the stages, with no heavy imports: a captured frame, tracks and their
events, and the packet a frame travels in. Drawing and the writers use these without importing
deep-sort-realtime, GStreamer or the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import cv2
import numpy as np

from edge.detections import Detections
from edge.utc import wall_time


@dataclass(frozen=True)
class Frame:
    """One captured frame: BGR (H, W, 3) or GRAY8 (H, W) uint8, its index and capture time."""

    index: int
    image: np.ndarray
    captured: float  # time.monotonic() when it arrived
    pts_s: float | None  # stream timestamp in seconds, when the source gives one
    fps: float  # the stream's frame rate (the config's, the caps', or a default for live ones)

    @cached_property
    def utc(self) -> float:
        """Its capture time as UTC epoch seconds, computed once so every output names it alike."""
        return wall_time(self.captured)

    @property
    def stream_s(self) -> float:
        """Its time in the stream: the source's timestamp, else its index at the frame rate."""
        return self.pts_s if self.pts_s is not None else self.index / self.fps


EventKind = Literal["started", "lost", "ended"]


@dataclass(frozen=True)
class Track:
    """One tracked object as of a frame.

    Attributes:
        track_id: stable id, unique within a run.
        class_id: class of the detection it last matched.
        confidence: confidence of the detection it last matched.
        xyxy: box in frame pixels (the Kalman filter's estimate).
        age: frames since the track was created.
        hits: frames in which it matched a detection.
        time_since_update: frames since it last matched (0: matched in this frame).
    """

    track_id: int
    class_id: int
    confidence: float
    xyxy: tuple[float, float, float, float]
    age: int
    hits: int
    time_since_update: int


@dataclass(frozen=True)
class TrackEvent:
    """A life-cycle change of a track, in the frame where it happened."""

    frame: int
    kind: EventKind
    track: Track


@dataclass(frozen=True)
class TrackUpdate:
    """What one frame produced: the confirmed tracks matched in it, and the events."""

    frame: int
    tracks: list[Track]
    events: list[TrackEvent]


@dataclass
class Packet:
    """One frame on its way through the stages."""

    frame: Frame
    detections: Detections | None = None  # None: not detected (detector.interval, motion)
    still: bool = False  # nothing moved (detector.motion): not detected, the tracks are held
    update: TrackUpdate | None = None
    image: np.ndarray | None = None  # BGR output frame (colorized where asked)
    timings: dict[str, float] = field(default_factory=dict)
    records: list[dict[str, Any]] | None = None  # its events as records, made by the first sink

    @cached_property
    def bgr(self) -> np.ndarray:
        """The captured frame as BGR (gray frames are expanded once, for every stage)."""
        image = self.frame.image
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
