"""The output video: the overlay drawn on each frame, then H.264 segments and/or RTSP."""

from __future__ import annotations

import time

import cv2
import numpy as np

from edge.config import OutputConfig
from edge.metrics import Metrics
from edge.outputs.annotate import TrackAnnotator
from edge.outputs.guarded import Guard
from edge.outputs.segments import Recording
from edge.types import Packet, TrackEvent
from edge.video.rtsp import RtspMount, RtspServer


class VideoSink:
    """Draws (if `overlay`) and encodes each frame into the recording and/or the camera's mount
    (`output.rtsp_path`) on the device's RTSP server; the mount opens at the first frame, whose
    size and stream frame rate it takes.

    The recording's faults are the camera's (they restart it). The RTSP stream is a side
    output behind `rtsp_guard` (`rtsp:CAMERA`): a mount or a write that raises degrades it and
    is tried again after a backoff, while the recording goes on.

    A camera back at another resolution: the recording starts a new segment at the new size
    (`Recording`), while the RTSP stream keeps its size and gets the frames scaled to it, since
    its clients negotiated that size and would otherwise have to reconnect."""

    def __init__(
        self,
        config: OutputConfig,
        class_names: tuple[str, ...],
        metrics: Metrics,
        recording: Recording | None = None,
        rtsp_server: RtspServer | None = None,
        rtsp_guard: Guard | None = None,
    ) -> None:
        """Set up the outputs; the mount waits for the first frame.

        Raises:
            ValueError: `rtsp_server` without the `rtsp_guard` its faults go through.
        """
        if rtsp_server is not None and rtsp_guard is None:
            raise ValueError("an RTSP server needs the guard of the camera's stream")
        self.config, self.metrics, self.recording = config, metrics, recording
        self.annotator = TrackAnnotator(class_names) if config.overlay else None
        self.rtsp_server, self.rtsp_guard = rtsp_server, rtsp_guard
        self.rtsp: RtspMount | None = None
        self._rtsp_size = (0, 0)  # (width, height) of the mount's stream

    def write(self, packet: Packet, fps: float) -> None:
        """Draw the tracks and the frame rate, then encode the frame."""
        image = packet.image if packet.image is not None else packet.bgr
        started = time.perf_counter()
        if self.annotator is not None:
            tracks = packet.update.tracks if packet.update else []
            image = self.annotator.annotate(image, tracks, fps)
        drawn = time.perf_counter()
        self.metrics.observe("draw", drawn - started)
        if self.recording:
            self.recording.write(image, packet.frame)
        server, guard = self.rtsp_server, self.rtsp_guard
        if server is not None and guard is not None:
            guard.attempt(lambda: self._stream(server, image, packet.frame.fps))
        self.metrics.observe("encode", time.perf_counter() - drawn)

    def _stream(self, server: RtspServer, image: np.ndarray, fps: float) -> None:
        """Push the frame to the mount, opened now if it is not yet (or its opening failed)."""
        if self.rtsp is None:
            height, width = image.shape[:2]
            path, bitrate = self.config.rtsp_path, self.config.bitrate_kbps
            self.rtsp = server.mount(path, width, height, fps, bitrate, self.metrics)
            self._rtsp_size = (width, height)
        if (image.shape[1], image.shape[0]) != self._rtsp_size:
            image = cv2.resize(image, self._rtsp_size, interpolation=cv2.INTER_AREA)
        self.rtsp.write(image)

    def close(self, final_events: list[TrackEvent]) -> None:
        """Finish the open segment so it is complete (the runtime stops the RTSP server)."""
        if self.recording:
            self.recording.close()
