"""`python -m edge track VIDEO`: detect and track objects in a video file.

Writes the track life-cycle events as JSON Lines and the per-frame tracks in MOTChallenge format.
It is `edge run` on the file with colorization, video, snapshots and summary off, so both give
the same tracks for the same settings; every default is the runtime config's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge import paths, runtime
from edge.config import DetectorConfig, TrackerConfig
from edge.engines import BACKENDS

DETECTOR, TRACKER = DetectorConfig(), TrackerConfig()


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `track` command."""
    parser = subparsers.add_parser("track", help="detect and track objects in a video file")
    parser.add_argument("video", type=Path, help="input video file")
    parser.add_argument("--detector", type=Path, default=DETECTOR.model, help="YOLOv8 model")
    parser.add_argument("--reid", type=Path, default=TRACKER.reid_model, help="ReID model")
    parser.add_argument(
        "--classes", nargs="+", default=DETECTOR.classes, metavar="NAME",
        help="class names to track, or `all` (default: Normal, the offline model's people)",
    )  # fmt: skip
    parser.add_argument("--conf", type=float, default=DETECTOR.confidence, help="box confidence")
    parser.add_argument("--iou", type=float, default=DETECTOR.iou, help="NMS IoU threshold")
    parser.add_argument("--max-det", type=int, default=DETECTOR.max_detections, help="boxes/frame")
    parser.add_argument(
        "--max-age", type=int, default=TRACKER.max_age, help="frames a lost track lives"
    )
    parser.add_argument("--n-init", type=int, default=TRACKER.n_init, help="frames to confirm")
    parser.add_argument(
        "--high-confidence", type=float, default=TRACKER.high_confidence,
        help="boxes below it only continue tracks (ByteTrack's second association)",
    )  # fmt: skip
    parser.add_argument(
        "--birth-confidence", type=float, default=TRACKER.birth_confidence,
        help="least box confidence that starts a track",
    )  # fmt: skip
    parser.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: all)")
    parser.add_argument("--events", type=Path, help="JSONL events (default: artifacts/outputs/)")
    parser.add_argument("--mot", type=Path, help="MOTChallenge file (default: artifacts/outputs/)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="inference backend")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per model (0: all)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    settings = {
        "source.max_frames": args.max_frames,
        "detector.model": str(args.detector),
        "detector.backend": args.backend,
        "detector.classes": [] if args.classes == ["all"] else args.classes,
        "detector.confidence": args.conf,
        "detector.iou": args.iou,
        "detector.max_detections": args.max_det,
        "tracker.reid_model": str(args.reid),
        "tracker.max_age": args.max_age,
        "tracker.n_init": args.n_init,
        "tracker.high_confidence": args.high_confidence,
        "tracker.birth_confidence": args.birth_confidence,
        "pipeline.threads": args.threads,
    }
    events = args.events or paths.OUTPUTS / f"{args.video.stem}.tracks.jsonl"
    mot = args.mot or paths.OUTPUTS / f"{args.video.stem}.mot.txt"
    runtime.run(runtime.tracking_config(args.video, events, mot, settings))
