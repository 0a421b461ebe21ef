"""`python -m benchmarks latency`: the real runtime pipeline (`edge.pipeline`) timed per stage.

Runs the pipeline on a source for warm-up + N frames, with the config `edge run` would use, and
reports per stage (capture, detect pre/infer/post, embed, track, colorize, draw, encode, total)
p50/p95/p99/mean, the frame rate, dropped frames, CPU use and resident memory, GPU load from
tegrastats on a Jetson, and the backend of each model. Time per frame is set against the sum of
the three models' own inference times (`infer:*` rows): the goal is within 15% of it.
Only frames after the warm-up count: each stage's first `--warmup` observations are dropped, and
rate and CPU use are measured from the moment the warm-up frames have left the pipeline.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import resource
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from benchmarks.machine import Tegrastats
from benchmarks.report import (
    OUTPUT,
    Report,
    add_output_arguments,
    machine_line,
    plot_distributions,
    require_model,
    stats,
    table,
)
from edge.config import Config, load
from edge.engines import InferenceEngine
from edge.engines.precision import precision_path
from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.pipeline import Camera, Models, Pipeline
from edge.runtime import DeviceOutputs, colorize_mode, load_models, open_sinks
from edge.video.capture import FrameSource

log = logging.getLogger(__name__)
DEFAULT_CONFIG = Path("deploy/edge.toml")
DEFAULT_SOURCE = "artifacts/data/opencv/vtest.avi"
# Defaults a benchmark run starts from; the command's own overrides come after them. GRAY8 makes
# the colorizer run on every frame, as it does for a monochrome or IR camera.
BENCH_DEFAULTS = ["source.format=GRAY8", "pipeline.log_every_s=0", "health.watchdog=false"]
STAGE_ORDER = ["capture", "detect_pre", "detect_infer", "infer:detector", "detect_post", "detect",
               "embed", "infer:embedder", "track", "colorize", "infer:colorizer", "draw", "encode",
               "total"]  # fmt: skip
TARGET_RATIO = 1.15  # time per frame / sum of model inference times (issue 4's goal)


class RecordingMetrics(Metrics):
    """Metrics that also keep every observation (ms), for percentiles past the warm-up and plots."""

    def __init__(self) -> None:
        super().__init__()
        self.samples: dict[str, list[float]] = {}
        self._samples_lock = threading.Lock()

    def observe(self, stage: str, seconds: float) -> None:
        """Record as usual and keep the raw value."""
        super().observe(stage, seconds)
        with self._samples_lock:
            self.samples.setdefault(stage, []).append(seconds * 1000)

    def after_warmup(self, warmup: int) -> dict[str, list[float]]:
        """Each stage's observations without its first `warmup` (one per frame, in order)."""
        with self._samples_lock:
            return {stage: values[warmup:] for stage, values in self.samples.items()}


class Window:
    """Frame listener that opens the measured window after `warmup` frames and times it."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.done = 0
        self.started: float | None = None
        self.ended: float | None = None
        self.cpu_start = 0.0
        self._lock = threading.Lock()

    def frame_done(self) -> None:
        """Count a completed frame; start measuring when the warm-up is over."""
        with self._lock:
            self.done += 1
            now = time.perf_counter()
            if self.done == self.warmup:
                self.started, self.cpu_start = now, cpu_seconds()
            elif self.done > self.warmup:
                self.ended = now

    @property
    def frames(self) -> int:
        """Frames completed inside the window."""
        return max(self.done - self.warmup, 0)


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    """Resident memory of this process now, in MB."""
    with open("/proc/self/statm") as stream:
        pages = int(stream.read().split()[1])
    return pages * resource.getpagesize() / 1e6


def time_engine(engine: InferenceEngine, stage: str, metrics: Metrics) -> None:
    """Make every `engine.run` call also observe its duration as `stage`."""
    run: Callable[..., dict[str, Any]] = engine.run

    def timed(feeds: Mapping[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        result = run(feeds)
        metrics.observe(stage, time.perf_counter() - started)
        return result

    engine.run = timed  # type: ignore[method-assign]


def stage_models(config: Config) -> dict[str, str]:
    """Model file per stage that the config uses (the colorizer only when it runs)."""
    models = {
        "detector": str(precision_path(config.detector.model, config.detector.precision)),
        "embedder": str(precision_path(config.tracker.reid_model, config.tracker.reid_precision)),
    }
    if colorize_mode(config) != "off":
        models["colorizer"] = config.colorizer.model
    return models


def ordered_stages(samples: Mapping[str, list[float]]) -> dict[str, list[float]]:
    """Stages in pipeline order; any stage not known here goes last."""
    rank = {stage: index for index, stage in enumerate(STAGE_ORDER)}
    return {s: list(samples[s]) for s in sorted(samples, key=lambda s: rank.get(s, len(rank)))}


def check_models(config: Config) -> None:
    """Refuse a config whose model for some stage is missing, naming the stage."""
    for stage, model in stage_models(config).items():
        require_model(stage, model)


def backends(models: Models) -> dict[str, dict[str, str]]:
    """Which backend runs each model, at which precision, and the file it came from."""
    engines = {"detector": models.detector.engine, "embedder": models.embedder.engine}
    if models.colorizer is not None:
        engines["colorizer"] = models.colorizer.engine
    return {
        name: {
            "backend": type(engine).__name__,
            "precision": engine.precision,
            "model": str(engine.path),
        }
        for name, engine in engines.items()
    }


def bench_config(
    config_path: Path | None, source: str, overrides: list[str], frames: int, warmup: int
) -> Config:
    """The runtime config for a benchmark run: file, bench defaults, source, then overrides."""
    output = f"output.dir='{OUTPUT / 'latency-run'}'"
    config = load(config_path, [*BENCH_DEFAULTS, output, f"source.uri='{source}'", *overrides])
    limit = warmup + frames
    return dataclasses.replace(config, source=dataclasses.replace(config.source, max_frames=limit))


def measure(config: Config, warmup: int, report: Report) -> dict[str, Any]:
    """Run the pipeline once; return (and record in `report`) what it measured.

    Raises:
        EdgeError: a stage's model is missing, or the source ended within the warm-up.
    """
    check_models(config)
    metrics = RecordingMetrics()
    source = FrameSource(config.source, metrics)
    models = load_models(config)
    report.add("backends", backends(models))
    time_engine(models.detector.engine, "infer:detector", metrics)
    time_engine(models.embedder.engine, "infer:embedder", metrics)
    if models.colorizer is not None:
        time_engine(models.colorizer.engine, "infer:colorizer", metrics)
    device = DeviceOutputs(config)
    sinks = open_sinks(config, models.detector.names, metrics, device)
    window = Window(warmup)
    camera = Camera(config.source.name, source, models, sinks, metrics, window)
    pipeline = Pipeline([camera], config.pipeline.queue_size, log_every_s=0)
    try:
        with Tegrastats() as tegrastats:
            pipeline.run()
    finally:
        device.close()
    cpu_used = cpu_seconds() - window.cpu_start
    samples = ordered_stages(metrics.after_warmup(warmup))
    counters = metrics.snapshot().counters
    report.add("counters", counters)
    if window.frames < 2 or window.started is None or window.ended is None:
        raise EdgeError(
            f"{config.source.uri} gave {window.done} frames, too few for {warmup} warm-up frames "
            "and a measurement: use a longer source or a smaller --warmup"
        )
    seconds = window.ended - window.started
    per_frame_ms = seconds * 1000 / window.frames
    model_ms = (
        sum(sum(values) for stage, values in metrics.samples.items() if stage.startswith("infer:"))
        / window.frames
    )
    result = {
        "frames": window.frames,
        "warmup": warmup,
        "fps": window.frames / seconds,
        "ms_per_frame": per_frame_ms,
        "model_infer_ms_per_frame": model_ms,
        "per_frame_over_model_ratio": per_frame_ms / model_ms if model_ms else float("nan"),
        "target_ratio": TARGET_RATIO,
        "dropped_frames": counters.get("dropped_frames", 0),
        "cpu_percent": 100 * cpu_used / seconds,
        "rss_mb": rss_mb(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000,
        "gpu": tegrastats.summary(),
        "stages_ms": {stage: stats(samples[stage]) for stage in samples},
    }
    report.add("result", result)
    plot_distributions(
        samples,
        f"Per-stage latency, {window.frames} frames after {warmup} warm-up",
        report.output / f"{report.name}.png",
    )
    return result


def markdown(data: Mapping[str, Any]) -> str:
    """The latency report as Markdown."""
    result = data["result"]
    lines = [
        f"# Pipeline latency: {data['config']['source']['uri']}",
        "",
        machine_line(data),
        "",
        table(
            ["stage", "p50 ms", "p95 ms", "p99 ms", "mean ms"],
            [[s, v["p50"], v["p95"], v["p99"], v["mean"]] for s, v in result["stages_ms"].items()],
        ),
        table(
            [
                "frames",
                "FPS",
                "ms/frame",
                "model infer ms/frame",
                "ratio (goal ≤ 1.15)",
                "dropped",
                "CPU % of a core",
                "RSS MB",
            ],
            [
                [
                    result["frames"],
                    result["fps"],
                    result["ms_per_frame"],
                    result["model_infer_ms_per_frame"],
                    result["per_frame_over_model_ratio"],
                    result["dropped_frames"],
                    result["cpu_percent"],
                    result["rss_mb"],
                ]
            ],
        ),
        table(
            ["model", "backend", "precision", "file"],
            [
                [name, b["backend"], b.get("precision", "fp32"), b["model"]]
                for name, b in data["backends"].items()
            ],
        ),
    ]
    if result.get("gpu"):
        lines.append(table(list(result["gpu"]), [list(result["gpu"].values())]))
    return "\n".join(lines)


def run_latency(args: argparse.Namespace) -> dict[str, Any]:
    """The `latency` command: measure, then write JSON, Markdown and the plot."""
    if args.frames < 2 or args.warmup < 1:
        raise EdgeError("--frames must be at least 2 and --warmup at least 1")
    config = bench_config(args.config, args.source, args.overrides, args.frames, args.warmup)
    report = Report(args.name, args.output, dataclasses.asdict(config))
    result = measure(config, args.warmup, report)
    report.finish(markdown(report.data))
    return result


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `latency` command."""
    parser = subparsers.add_parser("latency", help="per-stage latency of the runtime pipeline")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="runtime TOML")
    parser.add_argument("--source", default=DEFAULT_SOURCE, help="source URI (%(default)s)")
    parser.add_argument("--frames", type=int, default=300, help="frames measured")
    parser.add_argument("--warmup", type=int, default=10, help="frames run before measuring")
    add_output_arguments(parser, "latency")
    parser.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="runtime config overrides"
    )
    parser.set_defaults(func=run_latency)
