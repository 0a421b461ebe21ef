"""Everything a run writes: annotated video (mp4 and/or RTSP), track events (JSONL), MOT file,
a snapshot JPEG of each new track, and a summary. Each output is optional (see OutputConfig)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.annotate import TrackAnnotator
from edge.config import Config
from edge.files import writable_dir
from edge.metrics import Metrics
from edge.pipeline import Packet
from edge.track_io import EventWriter, MotWriter
from edge.tracker import TrackEvent
from edge.video_out import Mp4Recorder, RtspServer

log = logging.getLogger(__name__)


class RunOutputs:
    """The pipeline's sink: draws, encodes and writes each finished frame."""

    def __init__(
        self, config: Config, class_names: tuple[str, ...], fps: float, metrics: Metrics
    ) -> None:
        """Open the file outputs now (a bad folder fails before any frame is processed)."""
        self.config, self.fps, self.metrics = config.output, fps, metrics
        self.folder = writable_dir(Path(self.config.dir))
        self.annotator = TrackAnnotator(class_names) if self.config.overlay else None
        self.events = (
            EventWriter(self.folder / self.config.events, class_names, fps)
            if self.config.events
            else None
        )
        self.mot = MotWriter(self.folder / self.config.mot) if self.config.mot else None
        self.snapshots = self.folder / "snapshots" if self.config.snapshots else None
        if self.snapshots:
            self.snapshots.mkdir(exist_ok=True)
        self.recorder: Mp4Recorder | None = None
        self.rtsp: RtspServer | None = None
        self.frames = 0
        self.track_ids: set[int] = set()

    def _open_video(self, width: int, height: int) -> None:
        if self.config.video:
            self.recorder = Mp4Recorder(
                self.folder / self.config.video, width, height, self.fps, self.config.bitrate_kbps
            )
        if self.config.rtsp_port:
            self.rtsp = RtspServer(
                self.config.rtsp_port,
                self.config.rtsp_path,
                width,
                height,
                self.fps,
                self.config.bitrate_kbps,
            )

    def write(self, packet: Packet, fps: float) -> None:
        """Snapshots, events and MOT rows for the frame; then draw and encode it."""
        image = packet.image if packet.image is not None else packet.bgr
        update = packet.update
        if update is not None:
            if self.snapshots:
                self._snapshot(image, update.events)
            if self.events:
                self.events.write(update.events)
            if self.mot:
                self.mot.write(update.frame, update.tracks)
            self.track_ids.update(t.track_id for t in update.tracks)
        started = time.perf_counter()
        if self.annotator is not None:
            image = self.annotator.annotate(image, update.tracks if update else [], fps)
        drawn = time.perf_counter()
        self.metrics.observe("draw", drawn - started)
        if self.frames == 0:
            self._open_video(image.shape[1], image.shape[0])
        if self.recorder:
            self.recorder.write(image)
        if self.rtsp:
            self.rtsp.write(image)
        self.metrics.observe("encode", time.perf_counter() - drawn)
        self.frames += 1

    def _snapshot(self, image: np.ndarray, events: list[TrackEvent]) -> None:
        """A JPEG of each newly started track's (colorized) crop."""
        height, width = image.shape[:2]
        for event in events:
            if event.kind != "started" or self.snapshots is None:
                continue
            box = np.clip(event.track.xyxy, 0, [width, height, width, height])
            x1, y1, x2, y2 = (int(v) for v in box)
            if x2 > x1 and y2 > y1:
                name = f"track_{event.track.track_id:05d}.jpg"
                cv2.imwrite(str(self.snapshots / name), image[y1:y2, x1:x2])

    def close(self, final_events: list[TrackEvent]) -> None:
        """Write the last events; finalize the video so it plays; close the files."""
        if self.events:
            self.events.write(final_events)
            self.events.close()
        if self.mot:
            self.mot.close()
        if self.recorder:
            self.recorder.close()
        if self.rtsp:
            self.rtsp.close()

    def write_summary(self, extra: dict[str, Any]) -> Path | None:
        """Write summary.json (frames, FPS, tracks, per-stage latency, ...); return its path."""
        if not self.config.summary:
            return None
        snap = self.metrics.snapshot()
        summary = {
            "frames": self.frames,
            "tracks": len(self.track_ids),
            **extra,
            "counters": snap.counters,
            "stages_ms": {
                name: {
                    "p50": s.p50_ms,
                    "p95": s.p95_ms,
                    "p99": s.p99_ms,
                    "mean": s.mean_ms,
                    "count": s.count,
                }
                for name, s in snap.stages.items()
            },
        }
        path = self.folder / self.config.summary
        path.write_text(json.dumps(summary, indent=1))
        return path
