"""`python -m benchmarks motion`: what motion gating (`detector.motion`) saves and what it misses.

Makes an idle clip from the sample video and its ground truth: `--moving` frames, then the last
of them held still for `--hold` frames, and so on over the first `--frames` frames (a held frame
repeats its ground truth). Tracks the clip with `edge track`'s runtime twice, motion gating off
and on, and reports for each: detector calls, CPU seconds, MOTA, IDF1, ID switches, and the
ground-truth people present for `--present-s` seconds or more that no track ever covered.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any

import cv2

from benchmarks.mot_metrics import FrameBoxes, accumulate, load_mot, summarize
from benchmarks.report import Report, add_output_arguments, arguments, machine_line, table
from benchmarks.tracking import GT, load_truth
from edge import paths
from edge.errors import EdgeError
from edge.runtime import run, tracking_config
from edge.video.files import frame_rate, read_frames

CLIPS = paths.ROOT / "cache" / "idle"


def held_frames(frames: int, moving: int, hold: int) -> list[int]:
    """The source frame (from 0) of each clip frame: `moving` frames, the last of them `hold`
    more times, and so on; the clip ends with moving frames."""
    order: list[int] = []
    for start in range(0, frames, moving):
        part = list(range(start, min(start + moving, frames)))
        order += part
        if part[-1] < frames - 1:
            order += [part[-1]] * hold
    return order


def along(truth: Mapping[int, FrameBoxes], order: list[int]) -> dict[int, FrameBoxes]:
    """Ground truth of the source frames renumbered along the clip (frames from 1)."""
    return {n: truth[source + 1] for n, source in enumerate(order, start=1) if source + 1 in truth}


def idle_clip(video: Path, order: list[int], folder: Path) -> Path:
    """Write the clip: MJPEG AVI at the video's rate, so a held frame decodes to the same
    pixels each time."""
    folder.mkdir(parents=True, exist_ok=True)
    clip = folder / f"{video.stem}-idle-{len(order)}.avi"
    frames = [f for _, f in zip(range(max(order) + 1), read_frames(video), strict=False)]
    if len(frames) <= max(order):
        raise EdgeError(f"{video} has {len(frames)} frames, fewer than the clip needs")
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(
        str(clip), cv2.VideoWriter_fourcc(*"MJPG"), frame_rate(video), (width, height)
    )
    for source in order:
        writer.write(frames[source])
    writer.release()
    return clip


def missed_people(
    truth: Mapping[int, FrameBoxes], tracks: Mapping[int, FrameBoxes], least_frames: int
) -> list[int]:
    """Ground-truth ids present in at least `least_frames` frames that no track ever matched."""
    events = accumulate(truth, tracks).mot_events
    present = events[events.Type != "RAW"].groupby("OId").size()
    matched = set(events[events.Type.isin(["MATCH", "SWITCH", "TRANSFER", "ASCEND"])].OId)
    return sorted(int(i) for i, n in present.items() if n >= least_frames and i not in matched)


def track_clip(args: argparse.Namespace, clip: Path, folder: Path, motion: bool) -> dict[str, Any]:
    """Track the clip with motion gating on or off; its summary numbers and its tracks."""
    folder.mkdir(parents=True, exist_ok=True)
    mot = folder / "tracks.mot.txt"
    settings = {"detector.motion": motion, "output.summary": "summary.json"}
    config = tracking_config(clip, folder / "events.jsonl", mot, settings)
    cpu = os.times()
    run(config)
    after = os.times()
    summary = json.loads((folder / "summary.json").read_text())
    return {
        "detector_calls": summary["stages_ms"]["detect"]["count"],
        "cpu_s": (after.user + after.system) - (cpu.user + cpu.system),
        "tracks": load_mot(mot) if mot.stat().st_size else {},
    }


def run_motion(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The `motion` command."""
    load_truth(args.gt)  # checked before anything runs
    report = Report(args.name, args.output, arguments(args))
    order = held_frames(args.frames, args.moving, args.hold)
    idle = sum(b == a for a, b in pairwise(order)) / len(order)
    clip = idle_clip(args.video, order, CLIPS)
    clip_truth = along(load_mot(args.gt, ignored=False), order)
    clip_ignored = along(load_mot(args.gt, ignored=True), order)
    least = round(args.present_s * frame_rate(args.video))
    runs = []
    for motion in (False, True):
        done = track_clip(args, clip, report.output / f"{args.name}-runs" / str(motion), motion)
        scores = summarize({"run": accumulate(clip_truth, done["tracks"], ignored=clip_ignored)})
        runs.append({
            "motion": motion,
            "detector_calls": done["detector_calls"],
            "cpu_s": done["cpu_s"],
            "missed": missed_people(clip_truth, done["tracks"], least),
            "mot": scores["run"],
        })  # fmt: skip
        report.add("runs", runs)
    report.add("clip", {"frames": len(order), "idle_fraction": idle, "present_frames": least})
    report.finish(markdown(report.data))
    return runs


def markdown(data: Mapping[str, Any]) -> str:
    """The two runs as Markdown."""
    clip, runs = data["clip"], data["runs"]
    base = runs[0]["detector_calls"]
    rows = [
        ["on" if r["motion"] else "off", r["detector_calls"],
         f"{1 - r['detector_calls'] / base:.1%}", r["cpu_s"], r["mot"]["mota"], r["mot"]["idf1"],
         int(r["mot"]["num_switches"]), len(r["missed"])]
        for r in runs
    ]  # fmt: skip
    return "\n".join([
        f"# Motion gating: {Path(data['config']['video']).name} with idle stretches", "",
        machine_line(data), "",
        f"{clip['frames']} frames, {clip['idle_fraction']:.1%} of them a held (idle) frame; "
        f"missed: ground-truth people present {clip['present_frames']} frames or more that no "
        "track ever covered.", "",
        table(["detector.motion", "detector calls", "calls saved", "CPU s", "MOTA", "IDF1",
               "ID switches", "people missed"], rows),
    ])  # fmt: skip


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `motion` command."""
    parser = subparsers.add_parser("motion", help="detector calls and misses with motion gating")
    parser.add_argument("--video", type=Path, default=paths.DATA / "opencv" / "vtest.avi")
    parser.add_argument("--gt", type=Path, default=GT, help="the video's MOTChallenge truth")
    parser.add_argument("--frames", type=int, default=400, help="source frames the clip uses")
    parser.add_argument("--moving", type=int, default=100, help="frames of each moving part")
    parser.add_argument("--hold", type=int, default=100, help="frames each pause holds still")
    parser.add_argument("--present-s", type=float, default=2.0, help="who must not be missed")
    add_output_arguments(parser, "motion")
    parser.set_defaults(func=run_motion)
