"""`python -m benchmarks tracking --gt GT --video VIDEO`: MOTA, IDF1, ID switches, fragmentations.

Runs our detector, embedder and tracker over the video (as `edge track` does), writes the tracks
in MOTChallenge format and scores them against the ground truth with motmetrics. With `--tracks`
instead of `--video` it scores an existing MOTChallenge tracker file (e.g. motmetrics' own
TUD-Campus sample, whose published scores check the metric code).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.mot_metrics import FrameBoxes, accumulate, load_mot, summarize
from benchmarks.report import (
    Report,
    add_output_arguments,
    arguments,
    machine_line,
    require_model,
    table,
)
from edge.config import DetectorConfig, TrackerConfig
from edge.errors import EdgeError
from edge.runtime import run, tracking_config

log = logging.getLogger(__name__)
MOT_FORMAT = "frame,id,left,top,width,height[,conf,...]: comma-separated numbers"


def load_truth(path: Path) -> dict[int, FrameBoxes]:
    """Ground truth in MOTChallenge format, checked; rows marked 0 in column 7 are ignored.

    Raises:
        EdgeError: the file is missing, empty or not MOTChallenge text.
    """
    if not path.is_file():
        raise EdgeError(f"ground-truth file not found: {path}")
    if not path.read_text().strip():
        raise EdgeError(f"{path} is empty: no ground-truth boxes")
    try:
        rows = np.loadtxt(path, delimiter=",", ndmin=2)
    except ValueError as exc:
        problem = str(exc).splitlines()[0]
        raise EdgeError(
            f"{path} is not MOTChallenge ground truth ({MOT_FORMAT}): {problem}"
        ) from exc
    if rows.shape[1] < 6:
        raise EdgeError(
            f"{path} has {rows.shape[1]} columns, MOTChallenge ground truth has at least 6 "
            f"({MOT_FORMAT})"
        )
    if (rows[:, 0] < 1).any() or (rows[:, 0] % 1).any() or (rows[:, 4:6] <= 0).any():
        raise EdgeError(
            f"{path}: frames must be whole numbers from 1 and box sizes positive ({MOT_FORMAT})"
        )
    return load_mot(path)


def track_video(args: argparse.Namespace, mot_path: Path) -> int:
    """Track the video with the runtime (as `edge track`) into a MOTChallenge file; return the
    frames done."""
    require_model("detector", args.detector)
    require_model("embedder", args.reid)
    settings = {
        "source.max_frames": args.frames or 0,
        "detector.model": str(args.detector),
        "detector.backend": args.backend,
        "detector.classes": args.classes,
        "detector.confidence": args.conf,
        "tracker.reid_model": str(args.reid),
    }
    config = tracking_config(args.video, mot_path.with_suffix(".jsonl"), mot_path, settings)
    return int(run(config)["frames"])


def markdown(data: Mapping[str, Any]) -> str:
    """The tracking scores as Markdown."""
    metrics = data["metrics"]
    return "\n".join([
        f"# Tracking quality: {'/'.join(Path(data['config']['gt']).parts[-2:])}",
        "",
        machine_line(data),
        "",
        f"Tracks: {data['tracks_source']}.",
        "",
        table(
            ["MOTA", "IDF1", "ID switches", "fragmentations", "recall", "precision", "MOTP",
             "objects"],
            [[metrics["mota"], metrics["idf1"], int(metrics["num_switches"]),
              int(metrics["num_fragmentations"]), metrics["recall"], metrics["precision"],
              metrics["motp"], int(metrics["num_unique_objects"])]],
        ),
    ])  # fmt: skip


def run_tracking(args: argparse.Namespace) -> dict[str, float]:
    """The `tracking` command."""
    if (args.video is None) == (args.tracks is None):
        raise EdgeError("give exactly one of --video (track it now) and --tracks (score a file)")
    truth = load_truth(args.gt)
    config = arguments(args)
    report = Report(args.name, args.output, config)
    if args.video is not None:
        tracks = report.output / f"{args.name}.mot.txt"
        frames = track_video(args, tracks)
        report.add("tracks_source", f"our runtime on {args.video.name}, {frames} frames")
        # Ground truth beyond the frames tracked would count as misses.
        truth = {f: boxes for f, boxes in truth.items() if f <= frames}
    else:
        tracks = args.tracks
        report.add("tracks_source", f"the tracker file {args.tracks}")
    metrics = summarize({"run": accumulate(truth, load_truth(tracks) if args.tracks else
                                           load_mot(tracks))})["run"]  # fmt: skip
    report.add("metrics", metrics)
    report.finish(markdown(report.data))
    return metrics


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `tracking` command."""
    parser = subparsers.add_parser("tracking", help="MOT metrics against ground truth")
    parser.add_argument("--gt", type=Path, required=True, help="MOTChallenge ground truth")
    parser.add_argument("--video", type=Path, help="the video the ground truth belongs to")
    parser.add_argument("--tracks", type=Path, help="score this MOTChallenge file instead")
    parser.add_argument("--frames", type=int, default=None, help="track only the first N frames")
    parser.add_argument("--detector", type=Path, default=DetectorConfig().model)
    parser.add_argument("--reid", type=Path, default=TrackerConfig().reid_model)
    parser.add_argument("--classes", nargs="+", default=DetectorConfig().classes, metavar="NAME")
    parser.add_argument(
        "--conf", type=float, default=DetectorConfig().confidence, help="detector confidence"
    )
    parser.add_argument("--backend", default="auto", help="inference backend")
    add_output_arguments(parser, "tracking")
    parser.set_defaults(func=run_tracking)
