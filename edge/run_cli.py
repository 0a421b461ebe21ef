"""`python -m edge run --config FILE [--source URI] [section.key=value ...]`: the headless runtime.

Runs until the source ends (a file) or SIGINT/SIGTERM (a camera): then capture stops, the queues
drain, the video and event files are finalized, a summary is logged and written, and the process
exits 0. Every config value is checked before any model is loaded.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from pathlib import Path
from types import FrameType

from edge.capture import FrameSource
from edge.colorizer import Colorizer
from edge.config import Config, load
from edge.detector import Detector
from edge.embedder import Embedder
from edge.engine import open_engine
from edge.health import Health, SystemdNotifier
from edge.metrics import Metrics
from edge.metrics_http import MetricsServer
from edge.outputs import RunOutputs
from edge.pipeline import Models, Pipeline, progress_line
from edge.sources import TEST_FPS, SourceSpec
from edge.tracker import Tracker
from edge.video_file import frame_rate

log = logging.getLogger(__name__)
DEFAULT_LIVE_FPS = 30.0


def colorize_mode(config: Config) -> str:
    """The effective colorization mode (`auto`: whole frames for a grayscale source)."""
    if config.colorizer.mode != "auto":
        return config.colorizer.mode
    return "frame" if config.source.format == "GRAY8" else "off"


def output_fps(config: Config, spec: SourceSpec) -> float:
    """Frame rate stamped on the output video and used for event times."""
    if config.source.fps:
        return float(config.source.fps)
    if spec.kind == "file":
        return frame_rate(Path(spec.location))
    return float(TEST_FPS) if spec.kind == "test" else DEFAULT_LIVE_FPS


def load_models(config: Config) -> Models:
    """Open the detector, embedder and (if used) colorizer engines and build the tracker."""
    backend, threads = config.detector.backend, config.pipeline.threads
    detector = Detector(
        open_engine(config.detector.model, backend, threads),
        conf=config.detector.confidence,
        iou=config.detector.iou,
        classes=config.detector.classes or None,
        max_det=config.detector.max_detections,
    )
    embedder = Embedder(open_engine(config.tracker.reid_model, backend, threads))
    mode = colorize_mode(config)
    colorizer = (
        Colorizer(open_engine(config.colorizer.model, backend, threads)) if mode != "off" else None
    )
    tracker = Tracker(max_age=config.tracker.max_age, n_init=config.tracker.n_init)
    return Models(detector, embedder, tracker, colorizer, mode)


def run(config: Config) -> dict[str, float | int]:
    """Run the pipeline to the end; return the summary numbers."""
    metrics = Metrics()
    source = FrameSource(config.source, metrics)
    models = load_models(config)
    outputs = RunOutputs(config, models.detector.names, output_fps(config, source.spec), metrics)
    health = Health(
        metrics, SystemdNotifier.from_env(), config.health.stall_s, config.health.watchdog
    )
    pipeline = Pipeline(
        source,
        models,
        outputs,
        metrics,
        config.pipeline.queue_size,
        listener=health,
        log_every_s=config.pipeline.log_every_s,
    )

    def on_signal(number: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping capture and draining", signal.Signals(number).name)
        health.stopping()
        pipeline.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    server = None
    started = time.monotonic()
    log.info("running %s, colorize=%s", source.spec.describe(), models.colorize_mode)
    try:
        if config.health.metrics_port:
            server = MetricsServer(
                metrics, health, config.health.metrics_host, config.health.metrics_port
            )
        health.start()
        pipeline.run()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if server is not None:
            server.close()
        health.close()
    seconds = time.monotonic() - started
    summary: dict[str, float | int] = {
        "seconds": round(seconds, 3),
        "fps": round(pipeline.frames_done / max(seconds, 1e-9), 2),
    }
    path = outputs.write_summary(summary)
    log.info("done: %s (%.1f s); summary %s", progress_line(metrics), seconds, path)
    return summary


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `run` command."""
    parser = subparsers.add_parser("run", help="run the pipeline (see deploy/edge.toml)")
    parser.add_argument("--config", type=Path, help="TOML config file (default: built-in)")
    parser.add_argument("--source", help="source URI, overrides source.uri")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="config overrides, e.g. source.max_frames=100",
    )

    def main(args: argparse.Namespace) -> None:
        overrides = list(args.overrides)
        if args.source:
            overrides.append(f"source.uri={args.source}")
        run(load(args.config, overrides))

    parser.set_defaults(func=main)
