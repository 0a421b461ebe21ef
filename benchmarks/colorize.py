"""Time to colorize one sample-video frame (768×576, gray) with the runtime colorizer.

`python -m benchmarks.colorize [--model M] [--frames N]` prints a Markdown table and writes
`artifacts/bench/colorize.json`: per-stage (pre: Lab + resize, infer, post: upsample chroma +
Lab→BGR) and total p50/p95/p99/mean in milliseconds, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.report import Report, add_output_arguments, arguments, machine_line, stats, table
from edge import paths
from edge.engines import open_engine
from edge.models.colorizer import Colorizer, lightness, model_input, rebuild_bgr
from edge.video.files import read_frames
from export.data import data_file

WARMUP = 10


def run(model: Path, frame_count: int, threads: int) -> dict[str, dict[str, float]]:
    """Colorize `frame_count` gray frames of vtest.avi after a warm-up; stats per stage in ms."""
    colorizer = Colorizer(open_engine(model, threads=threads))
    frames = []
    for frame in read_frames(data_file("vtest.avi")):
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        if len(frames) == WARMUP + frame_count:
            break
    timings: dict[str, list[float]] = {"pre": [], "infer": [], "post": [], "total": []}
    name_in, name_out = colorizer.engine.inputs[0].name, colorizer.engine.outputs[0].name
    for index, gray in enumerate(frames):
        t0 = time.perf_counter()
        full_lightness = lightness(gray)
        batch = model_input(full_lightness, colorizer.size)[np.newaxis]
        t1 = time.perf_counter()
        chroma = colorizer.engine.run({name_in: batch})[name_out][0]
        t2 = time.perf_counter()
        rebuild_bgr(full_lightness, chroma)
        t3 = time.perf_counter()
        if index >= WARMUP:
            for key, seconds in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                timings[key].append(seconds * 1000)
    return {stage: stats(samples) for stage, samples in timings.items()}


def main() -> None:
    """Run the benchmark; write JSON (with the machine) and Markdown; print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=paths.MODELS / paths.COLORIZER_FILE)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: default)")
    add_output_arguments(parser, "colorize")
    args = parser.parse_args()
    report = Report(args.name, args.output, arguments(args))
    ms = run(args.model, args.frames, args.threads)
    report.add("ms", ms)
    header = ["stage", "p50 ms", "p95 ms", "p99 ms", "mean ms"]
    rows = [[stage, *(s[k] for k in ("p50", "p95", "p99", "mean"))] for stage, s in ms.items()]
    report.finish(machine_line(report.data) + "\n\n" + table(header, rows))


if __name__ == "__main__":
    main()
