"""`python -m benchmarks compare`: the same video and weights, the naive way and by our runtime.

Naive: a plain `cv2.VideoCapture` loop, ultralytics `predict` on the `.pt`, deep-sort-realtime
with its torch embedder, Keras `predict` for colorization, one frame after another. Ours: the
runtime pipeline (`benchmarks latency` with the video, events and MOT outputs off). Both see the
video as a grayscale camera delivers it and colorize every frame. Frames per second and p95
latency of each and their ratio (goal: ours ≥ 3× naive), each pipeline in its own process, best
of `--rounds`. Ours' latency is capture to output, so it includes the time a frame waits in the
stage queues. The report names the INT8 instruction set the CPU offers (`vnni`, or `avx2` for x86
without VNNI, e.g. under `python -m benchmarks.emulate_avx2`), which INT8 models' speed and
accuracy depend on.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2

from benchmarks.latency import DEFAULT_CONFIG
from benchmarks.naive import KerasColorizer, Naive, Stopwatch, Summary, best_of_rounds
from benchmarks.naive import child_summary as run_child
from benchmarks.report import (
    Report,
    add_output_arguments,
    arguments,
    machine_line,
    require_model,
    table,
)
from edge import paths
from edge.engines.onnxruntime import cpu_flags, cpu_isa
from edge.errors import EdgeError

log = logging.getLogger(__name__)
GOAL = 3.0
# Ours writes nothing the naive loop does not write either.
QUIET_OUTPUTS = ["output.video=''", "output.events=''", "output.mot=''", "output.snapshots=false",
                 "output.summary=''", "colorizer.mode='frame'"]  # fmt: skip


def run_naive(video: Path, weights: Path, keras_model: Path, frames: int, warmup: int) -> Summary:
    """The naive loop over `warmup + frames` frames; per-stage timings after the warm-up."""
    require_model("detector (.pt)", weights)
    require_model("colorizer (.keras)", keras_model)
    tracker, colorizer = Naive(weights), KerasColorizer(keras_model)
    watch = Stopwatch(warmup)
    capture = cv2.VideoCapture(str(video))
    done = 0
    try:
        while done < warmup + frames:
            with watch.time("total"):
                with watch.time("capture"):
                    ok, frame = capture.read()
                if not ok:
                    break
                gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)  # as a gray camera delivers it
                tracker.step(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), watch)
                with watch.time("keras colorize"):
                    colorizer.colorize(gray)
            done += 1
    finally:
        capture.release()
    if done <= warmup + 1:
        raise EdgeError(f"{video} gave {done} frames, too few for {warmup} warm-up frames")
    watch.times["total"] = watch.times["total"][:done]  # the failed read at the end
    return watch.summary()


def child(key: str, args: argparse.Namespace) -> Summary:
    """Run one pipeline in a process of its own; its per-stage summary."""
    runs = args.output / f"{args.name}-runs"
    common = ["--frames", str(args.frames), "--warmup", str(args.warmup)]
    if key == "naive":
        command = [sys.executable, "-m", "benchmarks", "compare", "--child", *common,
                   "--video", str(args.video), "--weights", str(args.weights),
                   "--keras", str(args.keras), "--output", str(runs)]  # fmt: skip
        summary: Summary = run_child(command, runs / "naive.json")
        return summary
    command = [sys.executable, "-m", "benchmarks", "latency", *common, "--config",
               str(args.config), "--source", str(args.video), "--output", str(runs),
               "--name", "ours", *QUIET_OUTPUTS, *args.overrides]  # fmt: skip
    result = run_child(command, runs / "ours.json")["result"]
    # The pipeline overlaps stages: its rate is frames over wall time, not 1 / mean latency.
    stages: Summary = {**result["stages_ms"], "total": {**result["stages_ms"]["total"],
                                                        "mean": 1000 / result["fps"]}}  # fmt: skip
    return stages


def markdown(data: Mapping[str, Any]) -> str:
    """The side-by-side table."""
    rows = [[name, r["fps"], r["p95_ms"], r["speedup"]] for name, r in data["pipelines"].items()]
    video = Path(data["config"]["video"]).name
    return "\n".join([
        f"# Naive vs ours: {data['config']['frames']} frames of {video} (as gray), "
        "detect + track + colorize",
        "",
        machine_line(data),
        "",
        f"Ours with config overrides: {' '.join(data['config']['overrides']) or 'none'}.",
        f"INT8 instruction set of the CPU as both sides see it: {data['int8_isa']}.",
        "",
        table(["pipeline", "FPS", "p95 latency ms", f"× naive (goal ≥ {GOAL:g})"], rows),
    ])  # fmt: skip


def run_compare(args: argparse.Namespace) -> dict[str, Any]:
    """The `compare` command (or, with --child, the naive loop alone)."""
    if args.child:
        summary = run_naive(args.video, args.weights, args.keras, args.frames, args.warmup)
        report = Report("naive", args.output, arguments(args))
        report.data = summary  # the parent reads the bare summary
        report.save()
        return summary
    require_model("colorizer (.keras)", args.keras)  # fail before the first round, not inside it
    report = Report(args.name, args.output, arguments(args))
    report.add("int8_isa", cpu_isa(cpu_flags()))  # the children inherit an emulated CPU
    best = best_of_rounds(["naive", "ours"], args.rounds, lambda key: child(key, args))
    report.add("stages_ms", best)
    naive_fps = 1000 / best["naive"]["total"]["mean"]
    pipelines = {
        name: {
            "fps": 1000 / s["total"]["mean"],
            "p95_ms": s["total"]["p95"],
            "speedup": 1000 / s["total"]["mean"] / naive_fps,
        }
        for name, s in best.items()
    }
    report.add("pipelines", pipelines)
    report.add("goal_speedup", GOAL)
    report.finish(markdown(report.data))
    return pipelines


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `compare` command."""
    parser = subparsers.add_parser("compare", help="the naive way and ours, side by side")
    parser.add_argument("--video", type=Path, default=paths.DATA / "opencv" / "vtest.avi")
    parser.add_argument("--frames", type=int, default=100, help="frames measured")
    parser.add_argument("--warmup", type=int, default=5, help="frames before measuring")
    parser.add_argument("--rounds", type=int, default=1, help="runs per pipeline; best kept")
    parser.add_argument("--weights", type=Path, default=paths.DATA / "weights" / "best.pt")
    parser.add_argument(
        "--keras", type=Path, default=paths.MODELS / "colorizer_chroma.keras", help="colorizer"
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="runtime TOML")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    add_output_arguments(parser, "compare")
    parser.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="runtime config overrides"
    )
    parser.set_defaults(func=run_compare)
