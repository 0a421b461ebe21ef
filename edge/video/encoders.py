"""Encoded video out through GStreamer: an H.264 mp4 file and an RTSP server.

Encoder strings are pure functions (`encoder_chain`): `nvv4l2h264enc` on a Jetson, `x264enc`
elsewhere. Frames enter through `appsrc` with timestamps from their frame index, so a file keeps
every frame; `close()` sends EOS and waits for the muxer to finish, so the mp4 always plays.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import EdgeError
from edge.video import gst

log = logging.getLogger(__name__)
JETSON_ENCODER = "nvv4l2h264enc"
EOS_TIMEOUT_S = 10.0


def encoder_chain(bitrate_kbps: int, has: Callable[[str], bool], live: bool = False) -> str:
    """BGR frames -> H.264 byte-stream elements, hardware on a Jetson."""
    if has(JETSON_ENCODER):
        return (
            "videoconvert ! video/x-raw,format=BGRx ! nvvidconv ! "
            f"video/x-raw(memory:NVMM),format=NV12 ! {JETSON_ENCODER} "
            f"bitrate={bitrate_kbps * 1000} insert-sps-pps=true ! h264parse"
        )
    tune = " tune=zerolatency" if live else ""
    return (
        "videoconvert ! video/x-raw,format=I420 ! "
        f"x264enc bitrate={bitrate_kbps} speed-preset=ultrafast{tune} key-int-max=60 ! h264parse"
    )


def frame_caps(width: int, height: int, fps: float) -> str:
    """Caps of the BGR frames pushed into appsrc."""
    rate = max(1, round(fps * 1000))
    return f"video/x-raw,format=BGR,width={width},height={height},framerate={rate}/1000"


def mp4_pipeline(
    path: Path, width: int, height: int, fps: float, bitrate_kbps: int, has: Callable[[str], bool]
) -> str:
    """appsrc -> H.264 -> mp4 file."""
    return (
        f"appsrc name=src format=time caps={frame_caps(width, height, fps)} ! "
        f'{encoder_chain(bitrate_kbps, has)} ! mp4mux ! filesink location="{path}"'
    )


def _push(appsrc: Any, frame: np.ndarray, index: int, fps: float) -> Any:
    """Push one BGR frame with pts = index / fps; returns the flow return."""
    Gst = gst.init()
    buffer = Gst.Buffer.new_wrapped(np.ascontiguousarray(frame).tobytes())
    duration = int(1e9 / fps)
    buffer.pts = index * duration
    buffer.duration = duration
    return appsrc.emit("push-buffer", buffer)


class Mp4Recorder:
    """Encodes BGR frames of a fixed size into an mp4 file."""

    def __init__(self, path: Path, width: int, height: int, fps: float, bitrate_kbps: int) -> None:
        """Start the encoding pipeline; raises EdgeError if GStreamer cannot build it."""
        Gst = gst.init()
        self.path, self.size, self.fps = path, (width, height), fps
        description = mp4_pipeline(path, width, height, fps, bitrate_kbps, gst.has_element)
        try:
            self._pipeline = Gst.parse_launch(description)
        except Exception as exc:  # GLib.Error
            raise EdgeError(f"cannot build the mp4 encoder ({exc}): is x264enc installed?") from exc
        self._src = self._pipeline.get_by_name("src")
        self._pipeline.set_state(Gst.State.PLAYING)
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one BGR frame of the recorder's size."""
        if (frame.shape[1], frame.shape[0]) != self.size or frame.ndim != 3:
            raise EdgeError(f"frame {frame.shape} does not match the video's {self.size} BGR")
        _push(self._src, frame, self.frames, self.fps)
        self.frames += 1

    def close(self) -> None:
        """Send EOS, wait until the file is finalized, stop the pipeline."""
        if self._pipeline is None:
            return
        Gst = gst.init()
        self._src.emit("end-of-stream")
        bus = self._pipeline.get_bus()
        message = bus.timed_pop_filtered(
            int(EOS_TIMEOUT_S * 1e9), Gst.MessageType.EOS | Gst.MessageType.ERROR
        )
        self._pipeline.set_state(Gst.State.NULL)
        self._pipeline = None
        if message is None or message.type == Gst.MessageType.ERROR:
            detail = message.parse_error()[0].message if message is not None else "EOS timeout"
            log.error("mp4 %s may be incomplete: %s", self.path, detail)
        else:
            log.info("wrote %s (%d frames)", self.path, self.frames)


class RtspServer:
    """Serves the annotated stream at rtsp://<host>:<port><path> with gst-rtsp-server.

    Each connected client gets its own appsrc; frames are pushed to all of them. Runs its own
    GLib main loop on a daemon thread.
    """

    def __init__(
        self, port: int, path: str, width: int, height: int, fps: float, bitrate_kbps: int
    ) -> None:
        """Start serving; raises EdgeError if gst-rtsp-server is missing or the port is taken."""
        gst.init()
        try:
            import gi

            gi.require_version("GstRtspServer", "1.0")
            from gi.repository import GLib, GstRtspServer
        except (ImportError, ValueError) as exc:
            raise EdgeError(
                f"RTSP output needs gst-rtsp-server ({exc}): install gir1.2-gst-rtsp-server-1.0"
            ) from exc
        self.fps = fps
        self._clients: list[tuple[Any, int]] = []  # (appsrc, frames pushed)
        self._lock = threading.Lock()
        launch = (
            f"( appsrc name=src is-live=true format=time caps={frame_caps(width, height, fps)} "
            f"! {encoder_chain(bitrate_kbps, gst.has_element, live=True)} "
            "! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(False)
        factory.connect("media-configure", self._on_media)
        self._server = GstRtspServer.RTSPServer()
        self._server.set_service(str(port))
        self._server.get_mount_points().add_factory(path, factory)
        self._context = GLib.MainContext.new()
        if self._server.attach(self._context) == 0:
            raise EdgeError(f"cannot serve RTSP on port {port}: is it in use? set output.rtsp_port")
        self._loop = GLib.MainLoop.new(self._context, False)
        self._thread = threading.Thread(target=self._loop.run, name="rtsp", daemon=True)
        self._thread.start()
        self.url = f"rtsp://127.0.0.1:{port}{path}"
        log.info("serving %s", self.url)

    def _on_media(self, _factory: Any, media: Any) -> None:
        appsrc = media.get_element().get_child_by_name("src")
        with self._lock:
            self._clients.append((appsrc, 0))

    def write(self, frame: np.ndarray) -> None:
        """Push a BGR frame to every connected client; drop clients that went away."""
        Gst = gst.init()
        with self._lock:
            alive = []
            for appsrc, count in self._clients:
                if _push(appsrc, frame, count, self.fps) == Gst.FlowReturn.OK:
                    alive.append((appsrc, count + 1))
            self._clients = alive

    def close(self) -> None:
        """Stop serving."""
        self._loop.quit()
        self._thread.join(timeout=2)
