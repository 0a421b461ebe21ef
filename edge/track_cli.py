"""`python -m edge track VIDEO`: detect and track objects in a video file.

Writes the track life-cycle events as JSON Lines and the per-frame tracks in MOTChallenge format.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import numpy as np

from edge.config import DetectorConfig, TrackerConfig
from edge.detector import Detector
from edge.embedder import Embedder
from edge.engine import BACKENDS, open_engine
from edge.errors import EdgeError
from edge.track_io import EventWriter, MotWriter
from edge.tracker import Tracker
from edge.video_file import frame_rate, read_frames

log = logging.getLogger(__name__)

OUTPUTS = Path("artifacts/outputs")
# The same models and classes as `edge run`'s defaults (deploy/edge.toml).
DEFAULT_DETECTOR = Path(DetectorConfig().model)
DEFAULT_REID = Path(TrackerConfig().reid_model)
DEFAULT_CLASSES = DetectorConfig().classes


@dataclass(frozen=True)
class TrackSummary:
    """What a tracking run did."""

    frames: int
    tracks: int
    events: int
    seconds: float


def track_frames(
    frames: Iterable[np.ndarray],
    detector: Detector,
    embedder: Embedder,
    tracker: Tracker,
    events: EventWriter,
    mot: MotWriter,
) -> TrackSummary:
    """Detect, embed and track each frame; write events and MOTChallenge rows as they come."""
    start, count, event_count = time.perf_counter(), 0, 0
    ids: set[int] = set()
    for frame in frames:
        detections = detector(frame)
        detections = detections.with_data(embedding=embedder(frame, detections.xyxy))
        update = tracker.update(detections)
        mot.write(update.frame, update.tracks)
        events.write(update.events)
        event_count += len(update.events)
        ids.update(t.track_id for t in update.tracks)
        count += 1
    ended = tracker.finish()
    events.write(ended)
    return TrackSummary(count, len(ids), event_count + len(ended), time.perf_counter() - start)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `track` command."""
    parser = subparsers.add_parser("track", help="detect and track objects in a video file")
    parser.add_argument("video", type=Path, help="input video file")
    parser.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR, help="YOLOv8 model")
    parser.add_argument("--reid", type=Path, default=DEFAULT_REID, help="ReID embedder model")
    parser.add_argument(
        "--classes", nargs="+", default=DEFAULT_CLASSES, metavar="NAME",
        help="class names to track, or `all` (default: Normal, the offline model's people)",
    )  # fmt: skip
    parser.add_argument("--conf", type=float, default=0.25, help="minimum box confidence")
    parser.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold")
    parser.add_argument("--max-det", type=int, default=300, help="most boxes per frame")
    parser.add_argument("--max-age", type=int, default=30, help="frames a lost track survives")
    parser.add_argument("--n-init", type=int, default=3, help="frames to confirm a track")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--events", type=Path, help="JSONL events (default: artifacts/outputs/)")
    parser.add_argument("--mot", type=Path, help="MOTChallenge file (default: artifacts/outputs/)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="inference backend")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per model (0: all)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    classes = None if args.classes == ["all"] else args.classes
    events_path = args.events or OUTPUTS / f"{args.video.stem}.tracks.jsonl"
    mot_path = args.mot or OUTPUTS / f"{args.video.stem}.mot.txt"
    frames = read_frames(args.video)
    first = next(frames)  # fails now, with a clear message, on a video that cannot be read
    try:
        tracker = Tracker(max_age=args.max_age, n_init=args.n_init)
    except ValueError as exc:
        raise EdgeError(f"{exc} (check --max-age and --n-init)") from exc
    with (
        open_engine(args.detector, args.backend, args.threads) as detector_engine,
        open_engine(args.reid, args.backend, args.threads) as reid_engine,
    ):
        try:
            detector = Detector(detector_engine, args.conf, args.iou, classes, args.max_det)
        except ValueError as exc:
            raise EdgeError(f"{exc} (check --conf, --iou and --max-det)") from exc
        embedder = Embedder(reid_engine)
        stream = islice(chain([first], frames), args.max_frames)
        with (
            EventWriter(events_path, detector.names, frame_rate(args.video)) as events,
            MotWriter(mot_path) as mot,
        ):
            summary = track_frames(stream, detector, embedder, tracker, events, mot)
    log.info(
        "%d frames, %d tracks, %d events in %.1f s (%.1f FPS); wrote %s and %s",
        summary.frames, summary.tracks, summary.events, summary.seconds,
        summary.frames / max(summary.seconds, 1e-9), events_path, mot_path,
    )  # fmt: skip
