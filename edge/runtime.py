"""Building a running pipeline from a validated config — source, models, sinks, health — and the
offline colorize job. `edge run`, `edge track`, `edge colorize` and the benchmarks all call here;
nothing here parses command lines.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import cv2
import numpy as np

from edge.config import Config, MqttConfig, OutputConfig, PipelineConfig, camera_configs, load
from edge.engines import InferenceEngine, open_engine
from edge.engines.precision import precision_path
from edge.errors import EdgeError
from edge.faults import Backoff
from edge.files import outside_unit_directories, unwritable, writable_dir
from edge.metrics import Metrics
from edge.models.colorizer import Colorizer
from edge.models.detector import Detector
from edge.models.embedder import Embedder
from edge.models.tracker import Tracker
from edge.motion import MotionGate
from edge.outputs.base import Sink
from edge.outputs.disk import OutputDisk
from edge.outputs.events import EventSink
from edge.outputs.footage import FootageSink
from edge.outputs.guarded import Guard, GuardedSink
from edge.outputs.mot import MotSink
from edge.outputs.mqtt import MqttSink
from edge.outputs.records import EventRecords
from edge.outputs.run import Run, TrackIdLedger, start_run
from edge.outputs.segments import Recording
from edge.outputs.snapshots import SnapshotSink
from edge.outputs.video import VideoSink
from edge.pipeline import Camera, Models, Pipeline, progress_line
from edge.recordings import discard_unplayable_last
from edge.retention import DiskBudget, Retention, RetentionTick, line_file_patterns
from edge.service.health import Health, SystemdNotifier
from edge.service.metrics_http import MetricsServer
from edge.service.mqtt import MqttPublisher
from edge.service.side_outputs import SideOutputs
from edge.video.capture import FrameSource
from edge.video.encoders import Mp4Recorder
from edge.video.files import frame_rate, read_frames
from edge.video.rtsp import RtspServer, rtsp_server
from edge.web.app import Device, serve
from edge.web.live import LiveFeed, LiveSink
from edge.web.recordings import CameraFiles

log = logging.getLogger(__name__)


def colorize_mode(config: Config) -> str:
    """The effective colorization mode (`auto`: whole frames for a grayscale source)."""
    if config.colorizer.mode != "auto":
        return config.colorizer.mode
    return "frame" if config.source.format == "GRAY8" else "off"


def model_threads(pipeline: PipelineConfig, cameras: int) -> int:
    """CPU threads per model call: the config's; else ONNX Runtime's default (0) for one detect
    worker, or the cores shared out among several (they run their calls side by side)."""
    workers = min(pipeline.detect_workers, cameras)
    if pipeline.threads or workers == 1:
        return pipeline.threads
    return max(1, (os.cpu_count() or 1) // workers)


class SharedEngines:
    """Each model file opened once, for every camera that uses it; `close()` frees them."""

    def __init__(self, backend: str, threads: int, foreign_isa: str = "refuse") -> None:
        self.backend, self.threads, self.foreign_isa = backend, threads, foreign_isa
        self._engines: dict[str, InferenceEngine] = {}

    def engine(self, model: str) -> InferenceEngine:
        """The model's engine, opened at the first call."""
        if model not in self._engines:
            self._engines[model] = open_engine(
                model, self.backend, self.threads, foreign_isa=self.foreign_isa
            )
        return self._engines[model]

    def described(self) -> list[dict[str, str]]:
        """Each open model's file, backend (the name of its module: onnxruntime, tensorrt) and
        precision, for the web page's health panel."""
        return [
            {
                "model": Path(model).name,
                "backend": type(engine).__module__.rsplit(".", 1)[-1],
                "precision": engine.precision,
            }
            for model, engine in self._engines.items()
        ]

    def close(self) -> None:
        """Release every engine."""
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()


def load_models(
    config: Config, first_track_id: int = 1, engines: SharedEngines | None = None
) -> Models:
    """One camera's models: its detector thresholds and classes, the embedder and (if used)
    its colorizer over `engines` (default: opened for this camera alone), and its own tracker
    (whose ids start at `first_track_id`, the run's: see `edge.outputs.run`)."""
    engines = engines or SharedEngines(
        config.detector.backend, config.pipeline.threads, config.pipeline.int8_foreign_isa
    )
    detector = Detector(
        engines.engine(str(precision_path(config.detector.model, config.detector.precision))),
        conf=config.detector.confidence,
        iou=config.detector.iou,
        classes=config.detector.classes or None,
        max_det=config.detector.max_detections,
    )
    reid_model = precision_path(config.tracker.reid_model, config.tracker.reid_precision)
    embedder = Embedder(engines.engine(str(reid_model)))
    mode = colorize_mode(config)
    model = config.source.colorizer_model or config.colorizer.model
    colorizer = Colorizer(engines.engine(model)) if mode != "off" else None
    tracker = Tracker.from_config(config.tracker, first_track_id)
    return Models(
        detector, embedder, tracker, colorizer, mode, config.detector.interval, motion_gate(config)
    )


def motion_gate(config: Config) -> MotionGate | None:
    """The camera's motion gate (`detector.motion`), or None when it is off."""
    detector = config.detector
    if not detector.motion:
        return None
    return MotionGate(
        detector.motion_threshold,
        detector.motion_min_area,
        detector.motion_height,
        detector.motion_alpha,
    )


class DeviceOutputs:
    """The outputs all cameras share: the MQTT publisher (one connection, spool and `available`
    topic) and the RTSP server (one port, a mount per camera). `close()` after the cameras'
    sinks: the publisher then drains and says `offline`."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics | None = None,
        side_outputs: SideOutputs | None = None,
    ) -> None:
        """Start what the config turns on.

        Args:
            config: the device's config.
            metrics: the device's metrics (the publisher's connection and spool, the side
                outputs'); default: new ones.
            side_outputs: where a side output that fails says so (default: a new record over
                this object's metrics).
        """
        self.metrics = metrics if metrics is not None else Metrics()
        self.side_outputs = side_outputs or SideOutputs(self.metrics)
        # One budget for every camera's files: keep_gb is the device's, not each camera's.
        output = config.output
        self.budget = DiskBudget(int(output.keep_gb * 1e9), int(output.min_free_gb * 1e9))
        self.rtsp = self._rtsp(config.output)
        self.publisher = self._publisher(config.mqtt) if config.mqtt.enabled else None

    def _rtsp(self, output: OutputConfig) -> RtspServer | None:
        """The started RTSP server; None, with RTSP reported degraded, when its port is taken or
        its login cannot be read: the cameras record without it (a restart would not help)."""
        try:
            return rtsp_server(output)
        except EdgeError as exc:
            self.side_outputs.degrade("rtsp", f"{exc}; RTSP is off")
            return None

    def _publisher(self, mqtt: MqttConfig) -> MqttPublisher | None:
        """The started publisher; None, with MQTT reported degraded, when its spool folder
        cannot be written or the publisher cannot be made: the cameras run without MQTT."""
        problem = unwritable(Path(mqtt.spool_dir), "mqtt.spool_dir")
        if problem is not None:
            self.side_outputs.degrade("spool", f"{problem}; MQTT is off")
            return None
        try:
            publisher = MqttPublisher(mqtt, self.metrics, self.side_outputs)
        except EdgeError as exc:
            self.side_outputs.degrade("mqtt", f"{exc}; MQTT is off")
            return None
        publisher.start()
        return publisher

    def close(self) -> None:
        """Drain and stop the publisher; stop the RTSP server."""
        if self.publisher is not None:
            self.publisher.close()
        if self.rtsp is not None:
            self.rtsp.close()


# A camera's side outputs, by the name each has in /healthz and STATUS: a fault of one is
# counted and degrades it (`GuardedSink`), never stopping its camera.
SIDE_OUTPUTS: dict[type, str] = {
    TrackIdLedger: "track_ids",
    EventSink: "events",
    MotSink: "mot",
    SnapshotSink: "snapshots",
    MqttSink: "mqtt",
    FootageSink: "collector",
    RetentionTick: "retention",
    LiveSink: "live",
}


def open_sinks(
    config: Config,
    class_names: tuple[str, ...],
    metrics: Metrics,
    device: DeviceOutputs,
    run: Run | None = None,
    stats_of: Mapping[str, Metrics] | None = None,
    live: LiveFeed | None = None,
) -> list[Sink]:
    """One camera's outputs that the config turns on, opened now: a bad folder fails before
    any frame.

    A full or read-only disk does not stop the run: file outputs wait for it (`OutputDisk`).
    `run` (default: a new one) names the run's files and records; the track-id ledger comes
    first, so a new id is saved before any other output shows it. `stats_of` (each camera's
    metrics) makes this camera's MQTT sink the one that publishes the device's stats; `live`
    is the camera's feed to the web page (after the video, which draws the overlay). Every
    output but the video is a side output (`SIDE_OUTPUTS`), wrapped in a `GuardedSink`; so is
    the video's RTSP stream (`rtsp:CAMERA`, guarded inside the `VideoSink`).
    """
    output, colorizer = config.output, config.colorizer
    restart = config.pipeline.restart_initial_s, config.pipeline.restart_max_s
    folder = Path(output.dir)
    collect = check_write_paths(config, device.side_outputs)
    run = run or start_run(folder, config.source.name)
    # Resuming needs room for 10 s of video, so a disk at the edge does not flap.
    disk = OutputDisk(folder, metrics, min_free_bytes=max(output.bitrate_kbps * 1250, 1 << 20))
    sinks: list[Sink] = [TrackIdLedger(run, disk)]
    records = EventRecords(run, class_names)  # one numbering for the file and MQTT
    if output.video or device.rtsp:
        video = recording(output, run, disk, metrics, device.budget)
        stream = Guard(f"rtsp:{run.camera}", device.side_outputs, metrics, Backoff(*restart))
        sinks.append(VideoSink(output, class_names, metrics, video, device.rtsp, stream))
    if live is not None:
        sinks.append(LiveSink(live))
    # Retention takes finished event and MOT files (full pieces, earlier runs'), never open ones.
    lines = (output.events, output.mot)
    device.budget.writing.update(run.path(name) for name in lines if name)
    keep_s = output.keep_days * 86400
    device.budget.side_files(folder, line_file_patterns(lines), keep_s, metrics)
    if not output.video:  # no segments to apply the bounds as they grow
        sinks.append(RetentionTick(device.budget))
    if output.events:
        sinks.append(EventSink(run.path(output.events), records, disk))
    if output.mot:
        sinks.append(MotSink(run.path(output.mot), disk=disk))
    if output.snapshots:
        sinks.append(SnapshotSink(folder / "snapshots" / run.camera, run, disk))
    if device.publisher is not None:
        mqtt = config.mqtt
        sinks.append(
            MqttSink(
                device.publisher,
                records,
                stats_of if stats_of is not None else {run.camera: metrics},
                mqtt,
                config.detector.classes or class_names,
                snapshots=output.snapshots,
            )
        )
    if collect:
        every_s, count, mb = (
            colorizer.collect_every_s,
            colorizer.collect_max_frames,
            colorizer.collect_max_mb,
        )
        sinks.append(FootageSink(Path(colorizer.collect_dir), every_s, count, mb))
    return [
        GuardedSink(
            sink,
            Guard(
                f"{SIDE_OUTPUTS[type(sink)]}:{run.camera}",
                device.side_outputs,
                metrics,
                Backoff(*restart),
            ),
        )
        if type(sink) in SIDE_OUTPUTS
        else sink  # the video: its recording's faults restart the camera (`edge.pipeline`)
        for sink in sinks
    ]


def check_write_paths(config: Config, side_outputs: SideOutputs) -> bool:
    """Check one camera's write paths, before any model loads (minutes with TensorRT).

    The start stops when the systemd unit's sandbox forbids writing the camera's `output.dir`: no
    camera could record, and waiting would not change that. Anywhere else an unwritable output
    folder is the disk's state, which `OutputDisk` waits out (a full or read-only disk pauses the
    files, never the cameras). A `colorizer.collect_dir` that cannot be written degrades the
    camera's collector; the MQTT spool's folder is `DeviceOutputs`'.

    Returns:
        Whether the footage collector is on and may write.

    Raises:
        EdgeError: `output.dir` lies outside the unit's writable folders and cannot be written.
    """
    folder = Path(config.output.dir)
    if outside_unit_directories(folder):
        problem = unwritable(folder, "output.dir")
        if problem is not None:
            raise EdgeError(problem)
    if not config.colorizer.collect_dir:
        return False
    problem = unwritable(Path(config.colorizer.collect_dir), "colorizer.collect_dir")
    if problem is not None:
        side_outputs.degrade(f"collector:{config.source.name}", problem)
    return problem is None


def recording(
    output: OutputConfig, run: Run, disk: OutputDisk, metrics: Metrics, budget: DiskBudget
) -> Recording | None:
    """The camera's segment recording with its retention (within the device's `budget`), or
    None when `output.video` is off."""
    if not output.video:
        return None
    folder = Path(output.dir) / output.video / run.camera
    snapshots = Path(output.dir) / "snapshots" / run.camera if output.snapshots else None
    margin = output.bitrate_kbps * 125 * 2  # 2 s of video, the open segment's next steps
    keep_s = output.keep_days * 86400
    discard_unplayable_last(folder, run.camera)  # before retention counts it
    retention = Retention(folder, run.camera, snapshots, keep_s, metrics, budget, margin)
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
        "gauges": snap.gauges,
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


def run(config: Config) -> dict[str, Any]:
    """Run the pipeline over every camera until their sources end or SIGINT/SIGTERM; return
    the summary numbers (all cameras', and each camera's under `cameras`).

    The sources are checked first (a wrong URI or an unreadable file fails in well under a
    second), then every camera's write paths (`check_write_paths`), then the models load (each
    model file once, for all cameras), then the outputs open.
    """
    configs = camera_configs(config)
    metrics = {c.source.name: Metrics() for c in configs}
    sources = [FrameSource(c.source, metrics[c.source.name]) for c in configs]
    for source in sources:
        source.check()
    device_metrics = Metrics()
    side_outputs = SideOutputs(device_metrics)
    for camera_config in configs:
        check_write_paths(camera_config, side_outputs)
    threads = model_threads(config.pipeline, len(configs))
    engines = SharedEngines(config.detector.backend, threads, config.pipeline.int8_foreign_isa)
    health = Health(
        metrics,
        SystemdNotifier.from_env(),
        config.health.stall_s,
        config.health.watchdog,
        side_outputs=side_outputs,
    )
    device = DeviceOutputs(config, device_metrics, side_outputs)
    feeds = {c.source.name: LiveFeed(c.source.name) for c in configs if config.web.enabled}
    cameras: list[Camera] = []
    runs = [start_run(Path(c.output.dir), c.source.name) for c in configs]
    web = None
    try:
        # Every camera's models load before any output opens: a model that fails to load
        # leaves no run's files behind.
        loaded = [
            load_models(c, r.first_track_id, engines) for c, r in zip(configs, runs, strict=True)
        ]
        for camera_config, source, run_info, models in zip(
            configs, sources, runs, loaded, strict=True
        ):
            name = camera_config.source.name
            stats_of = metrics if not cameras else {}
            sinks = open_sinks(
                camera_config,
                models.detector.names,
                metrics[name],
                device,
                run_info,
                stats_of,
                feeds.get(name),
            )
            cameras.append(
                Camera(name, source, models, sinks, metrics[name], health.listener(name))
            )
        pipeline = Pipeline(
            cameras,
            config.pipeline.queue_size,
            config.pipeline.batch_size,
            config.pipeline.batch_timeout_ms / 1000,
            config.pipeline.log_every_s,
            config.pipeline.detect_workers,
            config.pipeline.restart_initial_s,
            config.pipeline.restart_max_s,
        )
        every = {**metrics, "": device.metrics}
        if config.web.enabled:
            files = {c.source.name: CameraFiles.of(c) for c in configs}
            site = Device(files, every, health, config.output, engines.described(), feeds)
            web = serve(config.web, site, side_outputs)
        seconds = _run_until_signal(config, pipeline, health, every)
    finally:
        if web is not None:
            web.close()
        device.close()
        engines.close()
    per_camera = {
        camera.name: {
            "frames": camera.frames_done,
            "fps": round(camera.frames_done / max(seconds, 1e-9), 2),
        }
        for camera in cameras
    }
    for camera_config, camera, run_info in zip(configs, cameras, runs, strict=True):
        extra = {**per_camera[camera.name], "seconds": round(seconds, 3)}
        path = write_summary(camera_config.output, camera.metrics, extra, run_info)
        named = f"{camera.name}: " if len(cameras) > 1 else ""
        line = progress_line(camera.metrics)
        log.info("done: %s%s (%.1f s); summary %s", named, line, seconds, path)
    return {
        "frames": pipeline.frames_done,
        "seconds": round(seconds, 3),
        "fps": round(pipeline.frames_done / max(seconds, 1e-9), 2),
        "cameras": per_camera,
    }


def _run_until_signal(
    config: Config, pipeline: Pipeline, health: Health, metrics: Mapping[str, Metrics]
) -> float:
    """Run the pipeline with SIGINT/SIGTERM draining it and the metrics endpoint serving;
    return the seconds it ran."""

    def on_signal(number: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping capture and draining", signal.Signals(number).name)
        health.stopping()
        pipeline.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    server = None
    started = time.monotonic()
    for camera in pipeline.cameras:
        log.info(
            "running %s, colorize=%s", camera.source.spec.describe(), camera.models.colorize_mode
        )
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
    return time.monotonic() - started


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
