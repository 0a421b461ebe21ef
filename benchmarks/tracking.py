"""`python -m benchmarks tracking`: MOTA, IDF1, HOTA, ID switches, FP, FN, fragmentations on real
footage.

By default it scores frames 1-400 of the sample video (PETS09-S2L1) against their ground truth:
the runtime (as `edge track` runs it) on the color video and as a GRAY8 camera (`make demo`'s
input), each with its frame rate; `section.key=value` arguments change the config of both runs.
`--methods` adds the association methods tried for the default (`docs/tracking.md`), replayed on
detections cached per frame (`benchmarks.replay`), at detector.interval 0 and 1: every method
sees the same boxes, and a rerun takes minutes (`--methods-only`: without the runs). It also
replays four library trackers (`benchmarks.library_trackers`) and two diagnostics of what limits
the scores (`appearance_auc`, `box_convention`). With
`--tracks` it scores an existing MOTChallenge file instead (e.g. motmetrics' TUD-Campus sample,
whose published scores check the metric code). Ground-truth rows marked 0 in column 7 are
ignore regions: tracks on them are neither hits nor false positives
(`benchmarks.mot_metrics.drop_ignored`).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import motmetrics as mm
import numpy as np
from scipy.stats import mannwhitneyu
from trackers.core.base import BaseTracker

from benchmarks.library_trackers import LIBRARY, replay_library
from benchmarks.mot_metrics import FrameBoxes, accumulate, hota, load_mot, summarize
from benchmarks.replay import CachedFrames, cached_detections, every_nth, gray_frames, replay
from benchmarks.report import (
    Report,
    add_output_arguments,
    arguments,
    machine_line,
    require_model,
    table,
)
from edge import paths
from edge.config import Config, DetectorConfig, TrackerConfig, load, parse_override
from edge.detections import Detections
from edge.errors import EdgeError
from edge.models.tracker import Tracker
from edge.runtime import run, tracking_config

log = logging.getLogger(__name__)
MOT_FORMAT = "frame,id,left,top,width,height[,conf,...]: comma-separated numbers"
VIDEO = paths.DATA / "opencv" / "vtest.avi"  # PETS09-S2L1
GT = paths.ROOT.parent.parent / "shared" / "data" / "pets09-s2l1" / "gt-frames-1-400.txt"


def load_truth(path: Path) -> dict[int, FrameBoxes]:
    """Ground truth in MOTChallenge format, checked; rows marked 0 in column 7 are ignored.

    Raises:
        EdgeError: the file is missing, empty or not MOTChallenge text.
    """
    if not path.is_file():
        where = " (the sample video's is in shared/data/pets09-s2l1/ beside the repository)"
        raise EdgeError(f"ground-truth file not found: {path}{where if path == GT else ''}")
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


def scores(
    gt: Path, tracks: Mapping[int, FrameBoxes], frames: int | None = None
) -> dict[str, float]:
    """MOT metrics (motmetrics') and HOTA, DetA, AssA (TrackEval's) of tracks against the ground
    truth (its ignore rows not scored), on frames up to `frames` (None: all); tracks beyond them
    are not scored either."""
    truth, ignored, tracked = _scored(gt, tracks, frames)
    motmetrics = summarize({"run": accumulate(truth, tracked, ignored=ignored)})["run"]
    return {**motmetrics, **hota(truth, tracked, ignored)}


def _accumulate(
    gt: Path, tracks: Mapping[int, FrameBoxes], frames: int | None
) -> mm.MOTAccumulator:
    """`scores`' matching, frame by frame."""
    truth, ignored, tracked = _scored(gt, tracks, frames)
    return accumulate(truth, tracked, ignored=ignored)


def _scored(
    gt: Path, tracks: Mapping[int, FrameBoxes], frames: int | None
) -> tuple[dict[int, FrameBoxes], ...]:
    """The scored ground truth, its ignore regions and the tracks, on frames up to `frames`."""
    return tuple(
        {f: b for f, b in boxes.items() if frames is None or f <= frames}
        for boxes in (load_mot(gt, ignored=False), load_mot(gt, ignored=True), tracks)
    )


MATCHED = ["MATCH", "SWITCH"]  # motmetrics' events of a pair (a switch also adds others)


def box_agreement(gt: Path, frames: Sequence[Detections]) -> dict[str, float]:
    """The detector's boxes scored as if each were its own track (their F1, 2 TP / (2 TP + FP +
    FN), bounds the IDF1 of a tracker that reports them as they are), the median width and
    height of a box over the ground-truth box it is paired with, and how well the boxes'
    embeddings tell people apart (`appearance_auc`)."""
    boxes = {
        n: (
            n * 10000 + np.arange(len(d)),
            np.hstack([d.xyxy[:, :2], d.xyxy[:, 2:] - d.xyxy[:, :2]]),
        )
        for n, d in enumerate(frames, start=1)
        if len(d)
    }
    events = _accumulate(gt, boxes, len(frames)).mot_events
    pairs = events[events.Type.isin(MATCHED)]
    truth = load_mot(gt, ignored=False)
    ratios = np.array([
        boxes[f][1][boxes[f][0] == h][0, 2:] / truth[f][1][truth[f][0] == o][0, 2:]
        for (f, _), o, h in zip(pairs.index, pairs.OId, pairs.HId, strict=True)
    ])  # fmt: skip
    tp, fp, fn = len(pairs), int((events.Type == "FP").sum()), int((events.Type == "MISS").sum())
    embeddings = np.array([
        frames[f - 1].data["embedding"][int(h) % 10000]
        for (f, _), h in zip(pairs.index, pairs.HId, strict=True)
    ])  # fmt: skip
    frame_numbers = pairs.index.get_level_values(0).to_numpy()
    auc = appearance_auc(embeddings, pairs.OId.to_numpy(), frame_numbers)
    return {"tp": tp, "fp": fp, "fn": fn, "f1": 2 * tp / (2 * tp + fp + fn),
            "width_ratio": float(np.median(ratios[:, 0])),
            "height_ratio": float(np.median(ratios[:, 1])), "appearance_auc": auc}  # fmt: skip


SAME_GAP = (10, 60)  # frames apart of two boxes of one person compared (1-6 s at 10 fps)
OTHER_GAP = 30  # most frames apart of two boxes of different people compared


def appearance_auc(embeddings: np.ndarray, people: np.ndarray, frames: np.ndarray) -> float:
    """The chance that two embeddings of one person, `SAME_GAP` frames apart (what re-finding a
    lost track needs), are nearer in cosine distance than two of different people seen within
    `OTHER_GAP` frames of each other: 1.0 tells everyone apart, 0.5 is chance; NaN without
    pairs of either kind."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    distance = 1 - unit @ unit.T
    same = people[:, None] == people[None]
    gap = np.abs(frames[:, None] - frames[None])
    ones = distance[same & (gap >= SAME_GAP[0]) & (gap <= SAME_GAP[1])]
    others = distance[~same & (gap <= OTHER_GAP)]
    if not len(ones) or not len(others):
        return float("nan")
    return float(mannwhitneyu(others, ones).statistic / (len(ones) * len(others)))


def narrowed(tracks: Mapping[int, FrameBoxes], scale: float) -> dict[int, FrameBoxes]:
    """The tracks with each box's width times `scale` about its centre (ltwh boxes)."""
    result = {}
    for frame, (ids, ltwh) in tracks.items():
        boxes = ltwh.astype(np.float64)
        boxes[:, 0] += boxes[:, 2] * (1 - scale) / 2
        boxes[:, 2] *= scale
        result[frame] = (ids, boxes)
    return result


def box_convention(
    gt: Path, frames: Sequence[Detections], images: Sequence[np.ndarray], width_ratio: float
) -> list[dict[str, Any]]:
    """The defaults' tracks at interval 0 and 1 scored as reported and with every box narrowed
    to the ground truth's width (1 / `width_ratio`): a diagnostic of what the boxes' shape
    costs at IoU 0.5, apart from tracking; never a result."""
    rows = []
    for interval in (0, 1):
        tracks = replay(every_nth(frames, interval), Tracker(), images)
        narrow = narrowed(tracks, 1 / width_ratio)
        rows.append({"interval": interval, "as_reported": scores(gt, tracks, len(frames)),
                     "narrowed": scores(gt, narrow, len(frames))})  # fmt: skip
    return rows


def track_video(args: argparse.Namespace, color_format: str, mot_path: Path) -> dict[str, Any]:
    """Track the video with the runtime (as `edge track`) into a MOTChallenge file; return the
    run's summary numbers (frames, FPS)."""
    require_model("detector", args.detector)
    require_model("embedder", args.reid)
    settings = {
        "source.max_frames": args.frames or 0,
        "source.format": color_format,
        "detector.model": str(args.detector),
        "detector.backend": args.backend,
        "tracker.reid_model": str(args.reid),
    }
    settings |= {f"{section}.{key}": v for section, key, v in map(parse_override, args.overrides)}
    return run(tracking_config(args.video, mot_path.with_suffix(".jsonl"), mot_path, settings))


@dataclass(frozen=True)
class Method:
    """One way of tracking tried on frames 1-400: config overrides on top of the defaults;
    `merge_classes` makes both detector classes one class, with NMS across them."""

    name: str
    settings: Mapping[str, Any]
    merge_classes: bool = False


def _tried(base: str, settings: Mapping[str, Any], **changes: Any) -> list[Method]:
    """One method per change of one key from `settings` (named `base`): `key=[values]`."""
    return [
        Method(f"{base}, {key.replace('__', '.')} {value}",
               {**settings, key.replace("__", "."): value})
        for key, values in changes.items()
        for value in values
    ]  # fmt: skip


# The defaults before the measurement (part 1): DeepSORT alone.
BEFORE = {"detector.confidence": 0.25, "detector.classes": ["Normal"], "tracker.max_age": 30,
          "tracker.n_init": 3, "tracker.max_cosine_distance": 0.2, "tracker.max_iou_distance": 0.7,
          "tracker.nn_budget": 100, "tracker.high_confidence": 0.0,
          "tracker.birth_confidence": 0.0, "tracker.ema_alpha": 0.0,
          "tracker.flow": False}  # fmt: skip
BYTE = "ByteTrack second association"
# Every method tried, the losers too: one key changed at a time from the old defaults, then the
# second association's thresholds, then one key at a time from the new defaults.
METHODS = [
    Method("before: DeepSORT, Normal, confidence 0.25", BEFORE),
    Method("before, both classes (Normal, Fall)", {**BEFORE, "detector.classes": []}),
    *_tried("before", BEFORE, detector__confidence=[0.2, 0.35, 0.45],
            tracker__n_init=[1, 5], tracker__max_age=[10, 60],
            tracker__max_cosine_distance=[0.1, 0.3, 0.4], tracker__ema_alpha=[0.9]),
    Method("before, birth 0.5 (no second association)",
           {**BEFORE, "detector.confidence": 0.2, "tracker.birth_confidence": 0.5}),
    *[Method(f"{BYTE}: confidence {c}, high {h}, birth {b}, n_init 3",
             {**BEFORE, "detector.confidence": c, "tracker.high_confidence": h,
              "tracker.birth_confidence": b})
      for c, h, b in [(0.1, 0.3, 0.5), (0.1, 0.4, 0.5), (0.1, 0.5, 0.6), (0.2, 0.3, 0.5),
                      (0.2, 0.4, 0.4), (0.2, 0.4, 0.5), (0.2, 0.4, 0.6), (0.2, 0.5, 0.5)]],
    Method("defaults (after)", {}),
    *_tried("defaults", {}, tracker__n_init=[3, 4, 5], tracker__max_age=[10, 20, 50],
            tracker__ema_alpha=[0.8, 0.9, 0.95], tracker__max_cosine_distance=[0.15, 0.3],
            tracker__max_iou_distance=[0.5, 0.8], tracker__nn_budget=[20],
            detector__iou=[0.5, 0.6], detector__classes=[[]], tracker__flow=[False]),
    Method("defaults, both classes merged as one (NMS across them)", {"detector.classes": []},
           merge_classes=True),
]  # fmt: skip


def _config(settings: Mapping[str, Any]) -> Config:
    """The runtime's config with these `section.key` settings over the defaults."""
    return load(None, [f"{k}={json.dumps(v)}" for k, v in settings.items()])


def _found(
    cache: CachedFrames, detector: DetectorConfig, merge_classes: bool = False
) -> list[Detections]:
    """Each cached frame's boxes a detector with these settings finds."""
    classes = [cache.names.index(c) for c in detector.classes] or None
    return cache.select(detector.confidence, classes, detector.iou, merge_classes)


def replay_method(
    cache: CachedFrames,
    method: Method,
    gt: Path,
    interval: int,
    images: Sequence[np.ndarray] | None = None,
) -> dict[str, float]:
    """Score one method on cached detections at a detector interval (`images`: the frames in
    gray, for the optical flow on skipped frames); adds the tracker's milliseconds per frame."""
    config = _config(method.settings)
    frames = _found(cache, config.detector, method.merge_classes)
    tracker = Tracker.from_config(config.tracker)
    return _timed_scores(
        gt, len(frames), lambda: replay(every_nth(frames, interval), tracker, images)
    )


def _timed_scores(
    gt: Path, frames: int, track: Callable[[], Mapping[int, FrameBoxes]]
) -> dict[str, float]:
    """The scores of the tracks `track` makes over `frames` frames, and its milliseconds per
    frame."""
    started = time.perf_counter()
    tracks = track()
    seconds = time.perf_counter() - started
    return {**scores(gt, tracks, frames), "tracker_ms": 1000 * seconds / frames}


def run_methods(args: argparse.Namespace, report: Report) -> None:
    """Replay every method on both color formats' cached detections, at interval 0 and 1."""
    rows = []
    for color_format in args.formats:
        cache = cached_detections(args.video, args.frames, color_format, args.detector, args.reid)
        images = gray_frames(args.video, args.frames, color_format)
        selected = {}
        for name, settings in (("before", BEFORE), ("defaults", {})):
            selected[name] = _found(cache, _config(settings).detector)
            report.add(f"boxes-{color_format}-{name}", box_agreement(args.gt, selected[name]))
        ratio = report.data[f"boxes-{color_format}-defaults"]["width_ratio"]
        convention = box_convention(args.gt, selected["defaults"], images, ratio)
        report.add(f"convention-{color_format}", convention)
        for method in METHODS:
            for interval in (0, 1):
                metrics = replay_method(cache, method, args.gt, interval, images)
                rows.append({"method": method.name, "format": color_format,
                             "interval": interval, "metrics": metrics})  # fmt: skip
                report.add("methods", rows)
        for name, factory, confidence in LIBRARY:
            found = _found(cache, replace(DetectorConfig(), confidence=confidence))
            for interval in (0, 1):
                metrics = replay_library_method(found, factory(), args.gt, interval)
                rows.append({"method": name, "format": color_format, "interval": interval,
                             "metrics": metrics})  # fmt: skip
                report.add("methods", rows)


def replay_library_method(
    frames: Sequence[Detections], tracker: BaseTracker, gt: Path, interval: int
) -> dict[str, float]:
    """Score a library tracker (`benchmarks.library_trackers`) on cached detections at a
    detector interval; adds its milliseconds per frame."""
    return _timed_scores(
        gt, len(frames), lambda: replay_library(every_nth(frames, interval), tracker)
    )


def markdown(data: Mapping[str, Any]) -> str:
    """The tracking scores as Markdown."""
    header = ["MOTA", "IDF1", "HOTA", "DetA", "AssA", "ID switches", "FP", "FN",
              "fragmentations", "recall", "precision"]  # fmt: skip

    def cells(m: Mapping[str, float]) -> list[object]:
        return [m["mota"], m["idf1"], *(m.get(k, "-") for k in ("hota", "deta", "assa")),
                int(m["num_switches"]), int(m["num_false_positives"]), int(m["num_misses"]),
                int(m["num_fragmentations"]), m["recall"], m["precision"]]  # fmt: skip

    lines = [
        f"# Tracking quality: {'/'.join(Path(data['config']['gt']).parts[-2:])}", "",
        machine_line(data), "",
        table(["run", "frames", "FPS", *header],
              [[r["run"], r["frames"], r.get("fps", "-"), *cells(r["metrics"])]
               for r in data.get("runs", [])]),
    ]  # fmt: skip
    agreement = [(key.split("-", 2)[1:], b) for key, b in data.items() if key.startswith("boxes-")]
    if agreement:
        lines += [
            "The detector's boxes, each scored as its own track (IoU >= 0.5): their F1 bounds the "
            "IDF1 of a tracker that reports them as they are; width and height: median of box / "
            "ground-truth box; ReID AUC: `appearance_auc`.", "",
            table(["format", "config", "TP", "FP", "FN", "F1", "width ratio", "height ratio",
                   "ReID AUC"],
                  [[fmt, name, b["tp"], b["fp"], b["fn"], b["f1"], b["width_ratio"],
                    b["height_ratio"], b["appearance_auc"]] for (fmt, name), b in agreement]),
        ]  # fmt: skip
    convention = [(key.split("-", 1)[1], r) for key, rows in data.items()
                  if key.startswith("convention-") for r in rows]  # fmt: skip
    if convention:
        lines += [
            "A diagnostic, not a result: the defaults' tracks scored as reported and with each box "
            "narrowed to the ground truth's median width.", "",
            table(["format", "interval", "boxes", *header],
                  [[fmt, r["interval"], kind.replace("_", " "), *cells(r[kind])]
                   for fmt, r in convention for kind in ("as_reported", "narrowed")]),
        ]  # fmt: skip
    if data.get("methods"):
        lines += [
            "Methods, replayed on the same cached detections (tracker ms per frame only):", "",
            table(["method", "format", "interval", *header, "tracker ms"],
                  [[r["method"], r["format"], r["interval"], *cells(r["metrics"]),
                    r["metrics"]["tracker_ms"]] for r in data["methods"]]),
        ]  # fmt: skip
    return "\n".join(lines)


def run_tracking(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The `tracking` command."""
    load_truth(args.gt)  # checked before anything runs
    report = Report(args.name, args.output, arguments(args))
    runs: list[dict[str, Any]] = []
    if args.tracks is not None:
        tracks = load_truth(args.tracks)
        runs.append({"run": f"the tracker file {args.tracks}", "frames": len(tracks),
                     "metrics": scores(args.gt, tracks)})  # fmt: skip
    elif not args.methods_only:
        for color_format in args.formats:
            suffix = "" if color_format == args.formats[0] else f"-{color_format.lower()}"
            mot = report.output / f"{args.name}{suffix}.mot.txt"
            done = track_video(args, color_format, mot)
            # Ground truth beyond the frames tracked would count as misses.
            metrics = scores(args.gt, load_mot(mot) if mot.stat().st_size else {}, done["frames"])
            runs.append({"run": f"edge track, {color_format}", "frames": done["frames"],
                         "fps": done["fps"], "metrics": metrics})  # fmt: skip
            report.add("runs", runs)
    report.add("runs", runs)
    if runs:
        report.add("metrics", runs[0]["metrics"])
    if args.methods or args.methods_only:
        run_methods(args, report)
    report.finish(markdown(report.data))
    return runs


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `tracking` command."""
    parser = subparsers.add_parser("tracking", help="MOT metrics against ground truth")
    parser.add_argument("--gt", type=Path, default=GT, help="MOTChallenge ground truth")
    parser.add_argument("--video", type=Path, default=VIDEO, help="the video it belongs to")
    parser.add_argument("--tracks", type=Path, help="score this MOTChallenge file instead")
    parser.add_argument("--frames", type=int, default=400, help="track the first N frames (0: all)")
    parser.add_argument(
        "--formats", nargs="+", choices=["BGR", "GRAY8"], default=["BGR", "GRAY8"],
        help="source.format of each run: the color video, and as a monochrome camera",
    )  # fmt: skip
    parser.add_argument("--methods", action="store_true", help="replay the methods table too")
    parser.add_argument(
        "--methods-only", action="store_true", help="replay the methods table without the runs"
    )
    parser.add_argument("--detector", type=Path, default=DetectorConfig().model)
    parser.add_argument("--reid", type=Path, default=TrackerConfig().reid_model)
    parser.add_argument("--backend", default="auto", help="inference backend")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    add_output_arguments(parser, "tracking")
    parser.set_defaults(func=run_tracking)
