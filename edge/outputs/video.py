"""The output video: the overlay drawn on each frame, then H.264 segments and/or RTSP."""

from __future__ import annotations

import time

import numpy as np

from edge.config import OutputConfig
from edge.metrics import Metrics
from edge.outputs.annotate import TrackAnnotator
from edge.outputs.segments import Recording
from edge.types import Packet, TrackEvent
from edge.video.encoders import RtspServer


class VideoSink:
    """Draws (if `overlay`) and encodes each frame into the recording and/or the RTSP server;
    the RTSP encoder opens at the first frame, whose size and stream frame rate it takes."""

    def __init__(
        self,
        config: OutputConfig,
        class_names: tuple[str, ...],
        metrics: Metrics,
        recording: Recording | None = None,
    ) -> None:
        self.config, self.metrics, self.recording = config, metrics, recording
        self.annotator = TrackAnnotator(class_names) if config.overlay else None
        self.rtsp: RtspServer | None = None
        self._opened = False

    def _open(self, image: np.ndarray, fps: float) -> None:
        height, width = image.shape[:2]
        if self.config.rtsp_port:
            self.rtsp = RtspServer(
                self.config.rtsp_port,
                self.config.rtsp_path,
                width,
                height,
                fps,
                self.config.bitrate_kbps,
            )
        self._opened = True

    def write(self, packet: Packet, fps: float) -> None:
        """Draw the tracks and the frame rate, then encode the frame."""
        image = packet.image if packet.image is not None else packet.bgr
        started = time.perf_counter()
        if self.annotator is not None:
            tracks = packet.update.tracks if packet.update else []
            image = self.annotator.annotate(image, tracks, fps)
        drawn = time.perf_counter()
        self.metrics.observe("draw", drawn - started)
        if not self._opened:
            self._open(image, packet.frame.fps)
        if self.recording:
            self.recording.write(image, packet.frame)
        if self.rtsp:
            self.rtsp.write(image)
        self.metrics.observe("encode", time.perf_counter() - drawn)

    def close(self, final_events: list[TrackEvent]) -> None:
        """Finish the open segment so it is complete; stop the RTSP server."""
        if self.recording:
            self.recording.close()
        if self.rtsp:
            self.rtsp.close()
