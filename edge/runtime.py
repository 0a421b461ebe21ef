"""Building a running pipeline from a validated config — source, models, sinks, health — and the
offline colorize job. `edge run`, `edge track`, `edge colorize` and the benchmarks all call here;
nothing here parses command lines.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import cv2
import numpy as np

from edge.config import Config, OutputConfig, load
from edge.engines import open_engine
from edge.files import writable_dir
from edge.metrics import Metrics
from edge.models.colorizer import Colorizer
from edge.models.detector import Detector
from edge.models.embedder import Embedder
from edge.models.tracker import Tracker
from edge.outputs.base import Sink
from edge.outputs.disk import OutputDisk
from edge.outputs.events import EventSink
from edge.outputs.footage import FootageSink
from edge.outputs.mot import MotSink
from edge.outputs.mqtt import MqttSink
from edge.outputs.records import EventRecords
from edge.outputs.run import Run, TrackIdLedger, start_run
from edge.outputs.segments import Recording
from edge.outputs.snapshots import SnapshotSink
from edge.outputs.video import VideoSink
from edge.pipeline import Models, Pipeline, progress_line
from edge.recordings import Retention
from edge.service.health import Health, SystemdNotifier
from edge.service.metrics_http import MetricsServer
from edge.service.mqtt import MqttPublisher
from edge.video.capture import FrameSource
from edge.video.encoders import Mp4Recorder
from edge.video.files import frame_rate, read_frames

log = logging.getLogger(__name__)


def colorize_mode(config: Config) -> str:
    """The effective colorization mode (`auto`: whole frames for a grayscale source)."""
    if config.colorizer.mode != "auto":
        return config.colorizer.mode
    return "frame" if config.source.format == "GRAY8" else "off"


def load_models(config: Config, first_track_id: int = 1) -> Models:
    """Open the detector, embedder and (if used) colorizer engines and build the tracker
    (whose ids start at `first_track_id`, the run's: see `edge.outputs.run`)."""
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
    model = config.source.colorizer_model or config.colorizer.model
    colorizer = Colorizer(open_engine(model, backend, threads)) if mode != "off" else None
    tracker = Tracker(
        max_age=config.tracker.max_age, n_init=config.tracker.n_init, first_id=first_track_id
    )
    return Models(detector, embedder, tracker, colorizer, mode, config.detector.interval)


def open_sinks(
    config: Config, class_names: tuple[str, ...], metrics: Metrics, run: Run | None = None
) -> list[Sink]:
    """The outputs the config turns on, opened now: a bad folder fails before any frame.

    A full or read-only disk does not stop the run: file outputs wait for it (`OutputDisk`).
    `run` (default: a new one) names the run's files and records; the track-id ledger comes
    first, so a new id is saved before any other output shows it.
    """
    output, colorizer = config.output, config.colorizer
    folder = Path(output.dir)
    run = run or start_run(folder, config.source.name)
    # Resuming needs room for 10 s of video, so a disk at the edge does not flap.
    disk = OutputDisk(folder, metrics, min_free_bytes=max(output.bitrate_kbps * 1250, 1 << 20))
    sinks: list[Sink] = [TrackIdLedger(run, disk)]
    records = EventRecords(run, class_names)  # one numbering for the file and MQTT
    if output.video or output.rtsp_port:
        sinks.append(VideoSink(output, class_names, metrics, recording(output, run, disk, metrics)))
    if output.events:
        sinks.append(EventSink(run.path(output.events), records, disk))
    if output.mot:
        sinks.append(MotSink(run.path(output.mot), disk=disk))
    if output.snapshots:
        sinks.append(SnapshotSink(folder / "snapshots" / run.camera, run, disk))
    if config.mqtt.enabled:
        publisher = MqttPublisher(config.mqtt, metrics)
        publisher.start()
        sinks.append(
            MqttSink(
                publisher,
                records,
                metrics,
                config.mqtt.update_interval_s,
                config.mqtt.stats_interval_s,
                snapshots=output.snapshots,
            )
        )
    if colorizer.collect_dir:
        footage = writable_dir(Path(colorizer.collect_dir))
        every_s, count, mb = (
            colorizer.collect_every_s,
            colorizer.collect_max_frames,
            colorizer.collect_max_mb,
        )
        sinks.append(FootageSink(footage, every_s, count, mb))
    return sinks


def recording(
    output: OutputConfig, run: Run, disk: OutputDisk, metrics: Metrics
) -> Recording | None:
    """The camera's segment recording with its retention, or None when `output.video` is off."""
    if not output.video:
        return None
    folder = Path(output.dir) / output.video / run.camera
    snapshots = Path(output.dir) / "snapshots" / run.camera if output.snapshots else None
    keep_bytes, keep_s = int(output.keep_gb * 1e9), output.keep_days * 86400
    margin = output.bitrate_kbps * 125 * 2  # 2 s of video, the open segment's next steps
    retention = Retention(folder, run.camera, snapshots, keep_bytes, keep_s, metrics, margin)
    return Recording(folder, run, output, disk, retention, metrics)


def write_summary(
    config: OutputConfig, metrics: Metrics, extra: dict[str, Any], run: Run | None = None
) -> Path | None:
    """Write the run's summary (frames, tracks, counters, per-stage latency); return its path.

    A disk that cannot take it is logged, not raised: the run's work is done by then.
    """
    if not config.summary:
        return None
    snap = metrics.snapshot()
    summary = {
        "run": run.id if run else None,
        "camera": run.camera if run else None,
        "frames": snap.counters.get("frames", 0),
        "tracks": snap.counters.get("tracks_started", 0),
        **extra,
        "counters": snap.counters,
        "stages_ms": {
            name: {"p50": s.p50_ms, "p95": s.p95_ms, "p99": s.p99_ms, "mean": s.mean_ms,
                   "count": s.count}
            for name, s in snap.stages.items()
        },
    }  # fmt: skip
    path = run.path(config.summary) if run else Path(config.dir) / config.summary
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=1))
    except OSError as exc:
        log.error("cannot write the summary %s: %s", path, exc.strerror)
        return None
    return path


def tracking_config(
    video: Path, events: Path, mot: Path, settings: Mapping[str, Any] | None = None
) -> Config:
    """The config with which `run` only detects and tracks a video file (`edge track`):
    events and MOT rows out; colorization, video, snapshots and summary off.

    Args:
        video: the file to track.
        events: JSONL events file to write.
        mot: MOTChallenge file to write.
        settings: further `section.key` values, e.g. `{"detector.confidence": 0.3}`.
    """
    values = {
        "source.uri": str(video),
        "colorizer.mode": "off",
        "output.dir": str(events.parent),
        "output.events": str(events.resolve()),
        "output.mot": str(mot.resolve()),
        "output.video": "",
        "output.snapshots": False,
        "output.summary": "",
        **(settings or {}),
    }
    return load(None, [f"{key}={json.dumps(value)}" for key, value in values.items()])


def run(config: Config) -> dict[str, float | int]:
    """Run the pipeline until the source ends or SIGINT/SIGTERM; return the summary numbers.

    The source is checked first (a wrong URI or an unreadable file fails in well under a
    second), then the models load, then the outputs open.
    """
    metrics = Metrics()
    source = FrameSource(config.source, metrics)
    source.check()
    run_info = start_run(Path(config.output.dir), config.source.name)
    models = load_models(config, run_info.first_track_id)
    sinks = open_sinks(config, models.detector.names, metrics, run_info)
    health = Health(
        metrics, SystemdNotifier.from_env(), config.health.stall_s, config.health.watchdog
    )
    pipeline = Pipeline(
        source,
        models,
        sinks,
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
        "frames": pipeline.frames_done,
        "seconds": round(seconds, 3),
        "fps": round(pipeline.frames_done / max(seconds, 1e-9), 2),
    }
    path = write_summary(config.output, metrics, summary, run_info)
    log.info("done: %s (%.1f s); summary %s", progress_line(metrics), seconds, path)
    return summary


def colorize_video(
    source: Path,
    output: Path,
    model: Path,
    backend: str = "auto",
    max_frames: int = 0,
    bitrate_kbps: int = OutputConfig().bitrate_kbps,
) -> int:
    """Convert each frame of a video file to grayscale, colorize it, write the result as mp4.

    Also writes `<output>.preview.png`: the first frame as gray input | colorized | original.

    Returns:
        The number of frames written.
    """
    colorizer = Colorizer(open_engine(model, backend))
    writable_dir(output.parent)  # fail now, not after decoding the whole video
    fps, recorder = frame_rate(source), None
    started = time.perf_counter()
    try:
        for index, frame in enumerate(read_frames(source)):
            if max_frames and index >= max_frames:
                break
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            colorized = colorizer.colorize(gray)
            if recorder is None:
                height, width = colorized.shape[:2]
                recorder = Mp4Recorder(output, width, height, fps, bitrate_kbps)
            recorder.write(colorized)
            if index == 0:
                preview = np.hstack([cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), colorized, frame])
                cv2.imwrite(str(output.with_suffix(".preview.png")), preview)
            if (index + 1) % 100 == 0:
                log.info("%d frames colorized", index + 1)
    finally:
        if recorder is not None:
            recorder.close()
    frames = recorder.frames if recorder is not None else 0
    log.info("%d frames colorized at %.1f FPS", frames, frames / (time.perf_counter() - started))
    return frames
