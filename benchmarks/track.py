"""Detect + track latency per stage, ours next to the naive way, on the same sample-video frames.

Ours: the exported YOLOv8 through ONNX Runtime with numpy pre/post-processing, the ReID model on
all crops of a frame in one call, deep-sort-realtime fed those embeddings. Run at the 640×640
square export and at a 480×640 export that matches the video's 4:3 aspect.
Naive: ultralytics `predict` on the `.pt` plus deep-sort-realtime with its built-in torch
MobileNetV2 embedder. Both keep class `Normal` only, confidence 0.25.

`python -m benchmarks.track [--frames N]` writes `artifacts/bench/track.json` and `track.md`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.naive import CLASSES, CONF, Naive, Stopwatch, best_of_rounds, child_summary
from edge import paths
from edge.engines import open_engine
from edge.models.detector import Detector
from edge.models.embedder import Embedder
from edge.models.tracker import Tracker
from edge.video.files import read_frames
from export import reid, yolo
from export.data import data_file
from export.freshness import reuse_or_export

log = logging.getLogger(__name__)

OUTPUT = paths.ROOT / "bench"
WARMUP = 3


class Ours:
    """Our pipeline: ONNX Runtime detector and embedder, deep-sort fed our embeddings."""

    def __init__(self, detector_model: Path, reid_model: Path) -> None:
        self.engines = [open_engine(detector_model), open_engine(reid_model)]
        self.detector = Detector(self.engines[0], conf=CONF, classes=CLASSES)
        self.embedder, self.tracker = Embedder(self.engines[1]), Tracker()

    def step(self, frame: np.ndarray, watch: Stopwatch) -> None:
        """Detect, embed and track one frame, timing each stage."""
        with watch.time("detector pre"):
            tensor, box = self.detector.preprocess(frame)
        with watch.time("detector infer"):
            raw = self.detector.infer(tensor)
        with watch.time("detector post"):
            found = self.detector.postprocess(raw, box, (frame.shape[0], frame.shape[1]))
        with watch.time("embedder"):
            found = found.with_data(embedding=self.embedder(frame, found.xyxy))
        with watch.time("tracker update"):
            self.tracker.update(found)


def _markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Detect + track, per frame ({results['frames']} frames of vtest.avi, 768×576)",
        "",
        f"Machine: {results['machine']}. Milliseconds; first {WARMUP} frames are warm-up; "
        "each pipeline runs alone in its own process; best of "
        f"{results['rounds']} rounds.",
        "",
        "| pipeline | stage | mean | p50 | p95 | p99 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, run in results["runs"].items():
        for stage, s in run["stages"].items():
            row = f"| {s['mean']:.1f} | {s['p50']:.1f} | {s['p95']:.1f} | {s['p99']:.1f} |"
            lines.append(f"| {name} | {stage} " + row)
    lines += ["", "| pipeline | FPS | × naive |", "|---|---:|---:|"]
    for name, run in results["runs"].items():
        lines.append(f"| {name} | {run['fps']:.2f} | {run['speedup_vs_naive']:.2f} |")
    return "\n".join(lines) + "\n"


LABELS = {
    "ours-640x640": "ours, ONNX Runtime 640×640",
    "ours-480x640": "ours, ONNX Runtime 480×640",
    "naive": "naive: ultralytics .pt + deep-sort torch embedder",
}


def _models() -> dict[str, Path]:
    """The models the pipelines use, exported when missing or stale."""
    weights, reid_weights = yolo.default_weights(), reid.default_weights()
    camera = paths.MODELS / "yolov8_detector_480x640.onnx"
    return {
        "weights": weights,
        "ours-640x640": reuse_or_export(
            yolo.DEFAULT_OUTPUT, weights, lambda: yolo.export_yolo(weights)
        ),
        "ours-480x640": reuse_or_export(
            camera, weights, lambda: yolo.export_yolo(weights, camera, (480, 640))
        ),
        "reid": reuse_or_export(
            reid.DEFAULT_OUTPUT, reid_weights, lambda: reid.export_reid(reid_weights)
        ),
    }


def run_pipeline(key: str, frames: int) -> dict[str, dict[str, float]]:
    """Time one pipeline on the first `frames` frames of the sample video."""
    models = _models()
    pipeline = Naive(models["weights"]) if key == "naive" else Ours(models[key], models["reid"])
    watch = Stopwatch(WARMUP)
    for frame in islice(read_frames(data_file("vtest.avi")), frames):
        with watch.time("total"):
            pipeline.step(frame, watch)
    return watch.summary()


def main(argv: list[str] | None = None) -> None:
    """Run each pipeline in a process of its own and write JSON and Markdown results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.track", description=__doc__)
    parser.add_argument("--frames", type=int, default=100, help="frames of the sample video")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="folder for the results")
    parser.add_argument("--rounds", type=int, default=2, help="runs per pipeline; best kept")
    parser.add_argument("--pipeline", choices=list(LABELS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.output.mkdir(parents=True, exist_ok=True)
    if args.pipeline:  # a child run: one pipeline, its summary to a file
        summary = run_pipeline(args.pipeline, args.frames)
        (args.output / f"{args.pipeline}.json").write_text(json.dumps(summary))
        return

    _models()  # export once, before the timed children

    def child(key: str) -> dict[str, dict[str, float]]:
        command = [sys.executable, "-m", "benchmarks.track", "--pipeline", key,
                   "--frames", str(args.frames), "--output", str(args.output)]  # fmt: skip
        summary: dict[str, dict[str, float]] = child_summary(command, args.output / f"{key}.json")
        return summary

    stages = {LABELS[k]: v for k, v in best_of_rounds(list(LABELS), args.rounds, child).items()}
    naive_fps = 1000 / stages[LABELS["naive"]]["total"]["mean"]
    runs = {}
    for name, by_stage in stages.items():
        fps = 1000 / by_stage["total"]["mean"]
        runs[name] = {"stages": by_stage, "fps": fps, "speedup_vs_naive": fps / naive_fps}
        log.info("%s: %.2f FPS (%.2f× naive)", name, fps, fps / naive_fps)
    results = {
        "frames": args.frames,
        "rounds": args.rounds,
        "machine": f"{platform.machine()} CPU, {len(os.sched_getaffinity(0))} cores",
        "runs": runs,
    }
    (args.output / "track.json").write_text(json.dumps(results, indent=2))
    (args.output / "track.md").write_text(_markdown(results))
    log.info("wrote %s and %s", args.output / "track.json", args.output / "track.md")


if __name__ == "__main__":
    main()
