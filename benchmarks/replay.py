"""Detections cached per frame, replayed through the tracker: association experiments in seconds.

The detector and embedder are the expensive part of tracking (about 0.2 s a frame here); the
tracker's choices do not change them. `cached_detections` runs both once over a video as the
runtime reads it (GStreamer, BGR or GRAY8), keeping every class and every box above a low
confidence floor, and stores them under `artifacts/cache/detections/`. The detector's NMS is
per class and greedy, so filtering the cached boxes by class and by a confidence at or above
the floor gives exactly the boxes a detector with those settings finds. `replay` feeds them to a
tracker frame by frame, as the pipeline does (`coast` on frames the detector skips). A lower
NMS IoU, or NMS across classes, is replayed by running that NMS again over the cached boxes: near,
not equal, to the detector's own (a box the cache's NMS dropped can no longer drop another). The
optical flow on skipped frames needs the frames themselves: `gray_frames` decodes them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from benchmarks.mot_metrics import FrameBoxes
from edge import paths
from edge.config import DetectorConfig, SourceConfig, TrackerConfig
from edge.detections import Detections
from edge.engines import open_engine
from edge.metrics import Metrics
from edge.models.detector import CLASS_OFFSET, Detector, nms
from edge.models.embedder import Embedder
from edge.models.flow import gray
from edge.models.tracker import Tracker
from edge.types import Frame, Packet
from edge.video.capture import FrameSource

log = logging.getLogger(__name__)
CACHE = paths.ROOT / "cache" / "detections"
FLOOR = 0.05  # lowest confidence cached; settings below it cannot be replayed


def _key(*parts: Path | str | int | float) -> str:
    """A short hash of the inputs (files by path, size and modification time)."""
    text = "|".join(
        f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
        if isinstance(p, Path)
        else str(p)
        for p in parts
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CachedFrames:
    """Every frame's detections (all classes, confidence >= FLOOR) with their embeddings, and
    the detector's class names."""

    frames: list[Detections]
    names: tuple[str, ...]

    def select(
        self,
        confidence: float,
        classes: Sequence[int] | None,
        iou: float = DetectorConfig().iou,
        merge_classes: bool = False,
    ) -> list[Detections]:
        """Each frame's boxes a detector with this confidence, these classes and this NMS IoU
        finds; `merge_classes` makes every box one class, NMS across classes included.

        Raises:
            ValueError: confidence below the cache's floor, or IoU above the cache's.
        """
        if confidence < FLOOR:
            raise ValueError(f"confidence {confidence} is below the cache's floor {FLOOR}")
        if iou > DetectorConfig().iou:
            raise ValueError(f"NMS IoU {iou} is above the cache's {DetectorConfig().iou}")
        found = [
            d[(d.confidence > confidence) & (np.isin(d.class_id, classes) if classes else True)]
            for d in self.frames
        ]
        if iou == DetectorConfig().iou and not merge_classes:
            return found
        return [_suppressed(d, iou, merge_classes) for d in found]


def _suppressed(found: Detections, iou: float, merge_classes: bool) -> Detections:
    """The boxes NMS at `iou` keeps (per class; every box one class when merged), in order."""
    if merge_classes:
        found = replace(found, class_id=np.zeros(len(found), np.int64))
    shifted = found.xyxy + (found.class_id * CLASS_OFFSET)[:, None]
    return found[np.sort(nms(shifted, found.confidence, iou, len(found)))]


def cached_detections(
    video: Path,
    frames: int,
    color_format: str = "BGR",
    detector_model: Path | None = None,
    reid_model: Path | None = None,
) -> CachedFrames:
    """The first `frames` frames' detections and embeddings, from the cache or computed now."""
    detector_model = detector_model or Path(DetectorConfig().model)
    reid_model = reid_model or Path(TrackerConfig().reid_model)
    key = _key(video, frames, color_format, detector_model, reid_model, FLOOR)
    path = CACHE / f"{video.stem}-{color_format}-{frames}-{key}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        log.info("detecting %d frames of %s (%s) into %s", frames, video, color_format, path)
        detector = Detector(open_engine(detector_model), conf=FLOOR)
        found = list(_detect(video, frames, color_format, detector, reid_model))
        np.savez_compressed(
            path,
            index=np.concatenate([np.full(len(d), i) for i, d in enumerate(found)]),
            xyxy=np.concatenate([d.xyxy for d in found]),
            confidence=np.concatenate([d.confidence for d in found]),
            class_id=np.concatenate([d.class_id for d in found]),
            embedding=np.concatenate([d.data["embedding"] for d in found]),
            count=len(found),
            names=np.array(detector.names),
        )
    with np.load(path) as stored:
        data = {name: stored[name] for name in stored.files}  # each read decompresses
    rows = [data["index"] == i for i in range(int(data["count"]))]
    return CachedFrames([
        Detections(data["xyxy"][r], data["confidence"][r], data["class_id"][r],
                   {"embedding": data["embedding"][r]})
        for r in rows
    ], tuple(str(n) for n in data["names"]))  # fmt: skip


def _detect(
    video: Path, frames: int, color_format: str, detector: Detector, reid_model: Path
) -> Iterator[Detections]:
    """Detect and embed frame by frame as the runtime does."""
    embedder = Embedder(open_engine(reid_model))
    for frame in _frames(video, frames, color_format):
        bgr = Packet(frame).bgr  # as the pipeline expands a gray frame
        found = detector(bgr)
        yield found.with_data(embedding=embedder(bgr, found.xyxy))


def gray_frames(video: Path, frames: int, color_format: str = "BGR") -> list[np.ndarray]:
    """The first `frames` frames of the video as the runtime reads them, in gray (as the
    tracker's optical flow takes them)."""
    return [gray(frame.image) for frame in _frames(video, frames, color_format)]


def _frames(video: Path, frames: int, color_format: str) -> Iterator[Frame]:
    """The first `frames` frames of the video, read as the runtime reads a file."""
    config = replace(
        SourceConfig(), uri=str(video.resolve()), format=color_format, max_frames=frames
    )
    return FrameSource(config, Metrics()).frames()


def replay(
    frames: Sequence[Detections | None],
    tracker: Tracker,
    images: Sequence[np.ndarray] | None = None,
) -> dict[int, FrameBoxes]:
    """Track cached detections (None: a frame the detector skipped) into MOT boxes per frame
    (numbered from 1, left-top-width-height), as the runtime's MOT sink writes them; `images`
    are the frames (`gray_frames`), for the optical flow on skipped frames."""
    boxes: dict[int, FrameBoxes] = {}
    for number, found in enumerate(frames, start=1):
        image = images[number - 1] if images is not None else None
        update = tracker.update(found, image) if found is not None else tracker.coast(image)
        if update.tracks:
            xyxy = np.array([t.xyxy for t in update.tracks])
            boxes[number] = (
                np.array([t.track_id for t in update.tracks]),
                np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1),
            )
    return boxes


def every_nth(frames: Sequence[Detections], interval: int) -> list[Detections | None]:
    """The frames `detector.interval` detects (one in interval + 1), None for the others."""
    return [d if i % (interval + 1) == 0 else None for i, d in enumerate(frames)]
