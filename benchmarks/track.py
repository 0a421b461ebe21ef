"""Detect + track latency per stage, ours next to the naive way, on the same sample-video frames.

Ours: the exported YOLOv8 through ONNX Runtime with numpy pre/post-processing, the ReID model on
all crops of a frame in one call, deep-sort-realtime fed those embeddings. Run at the 640×640
square export and at a 480×640 export that matches the video's 4:3 aspect.
Naive: ultralytics `predict` on the `.pt` plus deep-sort-realtime with its built-in torch
MobileNetV2 embedder. Both keep class `Normal` only, confidence 0.25.

`python -m benchmarks.track [--frames N]` writes `artifacts/bench/track.json` and `track.md`.
"""

from __future__ import annotations

import os

# numpy's OpenBLAS threads busy-wait and steal the inference engines' cores (as `python -m edge`
# does, one BLAS thread for both pipelines). Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import logging
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from edge.detector import Detector
from edge.embedder import Embedder
from edge.engine import open_engine
from edge.tracker import Tracker
from edge.video_file import read_frames
from export import paths, reid, yolo
from export.data import data_file

log = logging.getLogger(__name__)

OUTPUT = paths.ROOT / "bench"
WARMUP = 3
CLASSES = ["Normal"]
CONF = 0.25


class Stopwatch:
    """Collects per-frame durations (ms) by stage name."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.times.setdefault(stage, []).append((time.perf_counter() - start) * 1000)

    def summary(self) -> dict[str, dict[str, float]]:
        """Mean and p50/p95/p99 per stage, without the warm-up frames."""
        return {
            stage: {
                "mean": float(np.mean(values[WARMUP:])),
                **{f"p{q}": float(np.percentile(values[WARMUP:], q)) for q in (50, 95, 99)},
            }
            for stage, values in self.times.items()
        }


def _fresh_model(model: Path, weights: Path, export: Callable[[], Path]) -> Path:
    """The exported model, exported again when missing or older than its weights."""
    if model.is_file() and model.stat().st_mtime > weights.stat().st_mtime:
        return model
    return export()


class Ours:
    """Our pipeline: ONNX Runtime detector and embedder, deep-sort fed our embeddings."""

    def __init__(self, detector_model: Path, reid_model: Path) -> None:
        self.engines = [open_engine(detector_model), open_engine(reid_model)]
        self.detector = Detector(self.engines[0], conf=CONF, classes=CLASSES)
        self.embedder, self.tracker = Embedder(self.engines[1]), Tracker()

    def step(self, frame: np.ndarray, watch: Stopwatch) -> None:
        """Detect, embed and track one frame, timing each stage."""
        with watch.time("total"):
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


class Naive:
    """ultralytics predict on the .pt + deep-sort-realtime's own torch embedder."""

    def __init__(self, weights: Path) -> None:
        from deep_sort_realtime.deepsort_tracker import DeepSort

        self.model = yolo.load_yolo(weights)
        self.class_ids = [i for i, name in self.model.names.items() if name in CLASSES]
        self.tracker = DeepSort(embedder="mobilenet", embedder_gpu=False, half=False)

    def step(self, frame: np.ndarray, watch: Stopwatch) -> None:
        """Predict and track one frame, timing each stage."""
        with watch.time("total"):
            with watch.time("ultralytics predict"):
                result = self.model.predict(
                    frame, conf=CONF, classes=self.class_ids, verbose=False, device="cpu"
                )[0]
            raw = [
                ([x1, y1, x2 - x1, y2 - y1], float(c), int(k))
                for (x1, y1, x2, y2), c, k in zip(
                    result.boxes.xyxy.numpy(),
                    result.boxes.conf.numpy(),
                    result.boxes.cls.numpy(),
                    strict=True,
                )
            ]
            with watch.time("deep-sort update (torch embedder)"):
                self.tracker.update_tracks(raw, frame=frame)


def _markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Detect + track, per frame ({results['frames']} frames of vtest.avi, 768×576)",
        "",
        f"Machine: {results['machine']}. Milliseconds; first {WARMUP} frames are warm-up; "
        "pipelines take turns frame by frame.",
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


def main(argv: list[str] | None = None) -> None:
    """Run all pipelines on the same frames and write JSON and Markdown results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.track", description=__doc__)
    parser.add_argument("--frames", type=int, default=100, help="frames of the sample video")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="folder for the results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    weights, reid_weights = yolo.default_weights(), reid.default_weights()
    square = _fresh_model(
        paths.MODELS / "yolov8_detector.onnx", weights, lambda: yolo.export_yolo(weights)
    )
    camera_path = paths.MODELS / "yolov8_detector_480x640.onnx"
    camera = _fresh_model(
        camera_path, weights, lambda: yolo.export_yolo(weights, camera_path, (480, 640))
    )
    reid_model = _fresh_model(
        reid.DEFAULT_OUTPUT, reid_weights, lambda: reid.export_reid(reid_weights)
    )
    frames = list(islice(read_frames(data_file("vtest.avi")), args.frames))

    pipelines: dict[str, Ours | Naive] = {
        "ours, ONNX Runtime 640×640": Ours(square, reid_model),
        "ours, ONNX Runtime 480×640": Ours(camera, reid_model),
        "naive: ultralytics .pt + deep-sort torch embedder": Naive(weights),
    }
    watches = {name: Stopwatch() for name in pipelines}
    # Frame by frame in turn, so a busy machine slows every pipeline alike.
    for frame in frames:
        for name, pipeline in pipelines.items():
            pipeline.step(frame, watches[name])
    naive_fps = 1000 / watches[list(watches)[-1]].summary()["total"]["mean"]
    runs = {}
    for name, watch in watches.items():
        stages = watch.summary()
        fps = 1000 / stages["total"]["mean"]
        runs[name] = {"stages": stages, "fps": fps, "speedup_vs_naive": fps / naive_fps}
        log.info("%s: %.2f FPS (%.2f× naive)", name, fps, fps / naive_fps)
    results = {
        "frames": len(frames),
        "machine": f"{platform.machine()} CPU, {len(os.sched_getaffinity(0))} cores",
        "runs": runs,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "track.json").write_text(json.dumps(results, indent=2))
    (args.output / "track.md").write_text(_markdown(results))
    log.info("wrote %s and %s", args.output / "track.json", args.output / "track.md")


if __name__ == "__main__":
    main()
