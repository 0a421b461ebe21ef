"""Encoded video out through GStreamer: H.264 segments (Matroska), one mp4 file (the RTSP server,
`edge.video.rtsp`, encodes with the same elements).

Encoder strings are pure functions (`encoder_chain`): `nvv4l2h264enc` on a Jetson, `x264enc`
elsewhere. Frames enter through `appsrc` with explicit timestamps, so a file keeps every frame;
`close()` sends EOS and waits for the muxer to finish. Every appsrc queue is bounded: the mp4
writer's push waits for room (a whole-video job loses nothing), while a live recorder's or RTSP
client's drops the frame and counts it, so a stalled encoder, disk or client costs frames, never
memory. File paths are element properties, never part of a pipeline string.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.video import gst

log = logging.getLogger(__name__)
JETSON_ENCODER = "nvv4l2h264enc"
EOS_TIMEOUT_S = 10.0
SPLITTER = "rec"
UNBUFFERED = 2  # filesink buffer-mode: one write(2) per buffer, nothing held in user space
MAX_GAP_S = 5.0  # a longer step in stream time is a discontinuity (e.g. a reconnect)
KEYFRAME_S = 1.0  # keyframe interval of the recording: bounds what a kill loses (see below)
SEGMENT_MESSAGES = {
    "splitmuxsink-fragment-opened": "opened",
    "splitmuxsink-fragment-closed": "closed",
}
RESOURCE_ERROR = "gst-resource-error-quark"  # GStreamer's error domain for files and devices
# Most bytes of frames an appsrc holds for its encoder (one frame always fits). The recorder's
# covers an encoder's hiccup at any size (≈10 frames of 1080p BGR, ≈290 of 320×240).
RECORDER_QUEUE_BYTES = 64 << 20
WRITER_QUEUE_BYTES = 64 << 20  # the mp4 writer's, whose push waits for room instead


def encoder_chain(
    bitrate_kbps: int, has: Callable[[str], bool], live: bool = False, keyframe_every: int = 60
) -> str:
    """BGR frames -> H.264 byte-stream elements, hardware on a Jetson; an IDR keyframe at least
    every `keyframe_every` frames."""
    if has(JETSON_ENCODER):
        return (
            "videoconvert ! video/x-raw,format=BGRx ! nvvidconv ! "
            f"video/x-raw(memory:NVMM),format=NV12 ! {JETSON_ENCODER} "
            f"bitrate={bitrate_kbps * 1000} iframeinterval={keyframe_every} "
            f"idrinterval={keyframe_every} insert-sps-pps=true ! h264parse"
        )
    tune = " tune=zerolatency" if live else ""
    return (
        "videoconvert ! video/x-raw,format=I420 ! "
        f"x264enc bitrate={bitrate_kbps} speed-preset=ultrafast{tune} "
        f"key-int-max={keyframe_every} ! h264parse"
    )


def frame_caps(width: int, height: int, fps: float) -> str:
    """Caps of the BGR frames pushed into appsrc."""
    rate = max(1, round(fps * 1000))
    return f"video/x-raw,format=BGR,width={width},height={height},framerate={rate}/1000"


def appsrc(
    width: int, height: int, fps: float, max_bytes: int, leaky: bool, live: bool = False
) -> str:
    """An appsrc named `src` for BGR frames, holding at most `max_bytes`: when full, a push
    waits for room, or (`leaky`) the frame is dropped (see `push_or_drop`, which counts it)."""
    full = "leaky-type=upstream" if leaky else "block=true"
    return (
        f"appsrc name=src format=time is-live={str(live).lower()} max-bytes={max_bytes} {full} "
        f"caps={frame_caps(width, height, fps)}"
    )


def mp4_pipeline(
    width: int, height: int, fps: float, bitrate_kbps: int, has: Callable[[str], bool]
) -> str:
    """appsrc -> H.264 -> mp4 file (one file, finalized at EOS: for whole-video jobs); the
    filesink is named `gst.FILE`, for `gst.set_location`."""
    return (
        f"{appsrc(width, height, fps, WRITER_QUEUE_BYTES, leaky=False)} ! "
        f"{encoder_chain(bitrate_kbps, has)} ! mp4mux ! filesink name={gst.FILE}"
    )


def segment_pipeline(
    width: int,
    height: int,
    fps: float,
    bitrate_kbps: int,
    segment_s: float,
    has: Callable[[str], bool],
) -> str:
    """appsrc -> H.264 -> Matroska segments of `segment_s` seconds (splitmuxsink).

    splitmuxsink asks the encoder for a keyframe when a segment's time is up and starts the next
    file there, so every segment begins with a keyframe and plays on its own. It hands the muxer
    one whole keyframe interval (GOP) at a time, so the encoder makes one every `KEYFRAME_S`:
    that, plus the encoder's few frames, is what a kill can take from the open segment.
    Matroska stores each frame as it comes, readable up to the last one written; mp4mux writes
    its index only at the end (a killed mp4 does not play at all).
    """
    keyframes = max(1, round(fps * KEYFRAME_S))
    return (
        f"{appsrc(width, height, fps, RECORDER_QUEUE_BYTES, leaky=True)} ! "
        f"{encoder_chain(bitrate_kbps, has, keyframe_every=keyframes)} ! "
        f"splitmuxsink name={SPLITTER} muxer=matroskamux "
        f"max-size-time={round(segment_s * 1e9)} send-keyframe-requests=true"
    )


def _push(src: Any, frame: np.ndarray, pts_ns: int, duration_ns: int) -> Any:
    """Push one BGR frame with the given timestamps; returns the flow return."""
    Gst = gst.init()
    buffer = Gst.Buffer.new_wrapped(np.ascontiguousarray(frame).tobytes())
    buffer.pts = pts_ns
    buffer.duration = duration_ns
    return src.emit("push-buffer", buffer)


def push_or_drop(
    src: Any, frame: np.ndarray, pts_ns: int, duration_ns: int, metrics: Metrics, counter: str
) -> Any:
    """Push a frame into a leaky appsrc (`appsrc(leaky=True)`), or drop it and count `counter`
    when it would overflow the queue's `max-bytes`; returns the flow return (OK when dropped).

    The check comes before the push, and only this thread pushes, so every drop is counted: the
    queue only shrinks meanwhile. GStreamer's `leaky-type` never has to drop one itself.
    """
    queued = src.get_property("current-level-bytes")
    if queued and queued + frame.nbytes > src.get_property("max-bytes"):
        metrics.increment(counter)
        return gst.init().FlowReturn.OK
    return _push(src, frame, pts_ns, duration_ns)


class _AppsrcPipeline:
    """A GStreamer pipeline fed BGR frames of one size through an appsrc named `src`."""

    def __init__(self, description: str, what: str, width: int, height: int) -> None:
        Gst = gst.init()
        try:
            self._pipeline: Any = Gst.parse_launch(description)
        except Exception as exc:  # GLib.Error
            raise EdgeError(f"cannot build the {what} ({exc}): is x264enc installed?") from exc
        self._src = self._pipeline.get_by_name("src")
        self.size = (width, height)

    def _check(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size or frame.ndim != 3:
            raise EdgeError(f"frame {frame.shape} does not match the video's {self.size} BGR")

    def _finish(self, also: int = 0) -> tuple[list[Any], str | None]:
        """Send EOS, wait for it, stop the pipeline.

        Args:
            also: further message types to collect on the way (e.g. element messages).

        Returns:
            The messages of those types (and the error, if one ended the wait), and the error's
            text (or "EOS timeout"), None after a clean EOS.
        """
        if self._pipeline is None:
            return [], None
        Gst = gst.init()
        self._src.emit("end-of-stream")
        bus, collected, problem = self._pipeline.get_bus(), [], None
        wanted = Gst.MessageType.EOS | Gst.MessageType.ERROR
        if also:  # OR-ing a plain 0 would turn the flags into an int PyGObject refuses
            wanted |= also
        while True:
            message = bus.timed_pop_filtered(int(EOS_TIMEOUT_S * 1e9), wanted)
            if message is None:
                problem = "EOS timeout"
                break
            if message.type == Gst.MessageType.ERROR:
                problem = message.parse_error()[0].message
                collected.append(message)
                break
            if message.type == Gst.MessageType.EOS:
                break
            collected.append(message)
        self._pipeline.set_state(Gst.State.NULL)
        self._pipeline = None
        return collected, problem


class Mp4Recorder(_AppsrcPipeline):
    """Encodes BGR frames of a fixed size into one mp4 file (readable only once closed)."""

    def __init__(self, path: Path, width: int, height: int, fps: float, bitrate_kbps: int) -> None:
        """Start the encoding pipeline; raises EdgeError if GStreamer cannot build it."""
        description = mp4_pipeline(width, height, fps, bitrate_kbps, gst.has_element)
        super().__init__(description, "mp4 encoder", width, height)
        gst.set_location(self._pipeline, path)
        self.path, self.fps, self.frames = path, fps, 0
        self._pipeline.set_state(gst.init().State.PLAYING)

    def write(self, frame: np.ndarray) -> None:
        """Append one BGR frame of the recorder's size (waits while the encoder is behind)."""
        self._check(frame)
        duration = int(1e9 / self.fps)
        _push(self._src, frame, self.frames * duration, duration)
        self.frames += 1

    def close(self) -> None:
        """Send EOS, wait until the file is finalized, stop the pipeline."""
        _, problem = self._finish()
        if problem:
            log.error("mp4 %s may be incomplete: %s", self.path, problem)
        else:
            log.info("wrote %s (%d frames)", self.path, self.frames)


class SegmentRecorder(_AppsrcPipeline):
    """Encodes BGR frames into H.264 Matroska segments of about `segment_s` seconds each.

    Frames are stamped with their stream time (gaps from a live source's dropped frames kept, a
    jump or a step back after a reconnect bridged by one frame), so a segment lasts `segment_s`
    of the camera's time. Each new segment's file comes from `location(utc_s)`, given the UTC
    capture time of its first frame. The file sink writes unbuffered, so every keyframe interval
    reaches the file as soon as splitmuxsink lets it go: a kill loses at most the last interval
    (`KEYFRAME_S`) and the frames inside the encoder.

    `poll()` reports segments opened and closed and keeps the first error in `error`
    (`disk_error` when it is the disk's: full, read-only, gone); the pipeline is then dead and
    the caller calls `abort()`. A frame the encoder has no room for (`RECORDER_QUEUE_BYTES`
    waiting: the encoder or the disk stalls) is dropped and counted in `metrics` as
    `recording_frames_dropped`.
    """

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        bitrate_kbps: int,
        segment_s: float,
        location: Callable[[float], Path],
        metrics: Metrics | None = None,
    ) -> None:
        """Start the pipeline; raises EdgeError if GStreamer cannot build it."""
        Gst = gst.init()
        description = segment_pipeline(width, height, fps, bitrate_kbps, segment_s, gst.has_element)
        super().__init__(description, "segment recorder", width, height)
        self.fps, self._location = fps, location
        self.metrics = metrics or Metrics()
        splitter = self._pipeline.get_by_name(SPLITTER)
        sink = Gst.ElementFactory.make("filesink")
        sink.set_property("buffer-mode", UNBUFFERED)
        splitter.set_property("sink", sink)
        muxer = splitter.get_property("muxer")
        if muxer.find_property("offset-to-zero") is not None:
            muxer.set_property("offset-to-zero", True)  # each segment's clock starts at 0
        splitter.connect("format-location-full", self._name_segment)
        # Keyframe requests go upstream from the splitter's input to the encoder.
        self._encoder_side = splitter.get_static_pad("video") or splitter.sinkpads[0]
        self._keyframe_due = 0
        self._lock = threading.Lock()
        self._utc_by_pts: dict[int, float] = {}
        self._pts = 0
        self._stream_s: float | None = None
        self.error: str | None = None
        self.disk_error = False
        self.current: Path | None = None
        self._bus = self._pipeline.get_bus()
        self._pipeline.set_state(Gst.State.PLAYING)

    def write(self, frame: np.ndarray, stream_s: float, utc_s: float) -> None:
        """Append one BGR frame captured at stream time `stream_s` and UTC time `utc_s` (or
        drop it, counted, when the encoder's queue is full)."""
        self._check(frame)
        if self._stream_s is not None:
            step = stream_s - self._stream_s
            if not 0 < step <= MAX_GAP_S:
                step = 1 / self.fps
            self._pts += round(step * 1e9)
        self._stream_s = stream_s
        with self._lock:
            self._utc_by_pts[self._pts] = utc_s
        if self._pts >= self._keyframe_due:
            self._request_keyframe()
        duration = round(1e9 / self.fps)
        push_or_drop(
            self._src, frame, self._pts, duration, self.metrics, "recording_frames_dropped"
        )

    def _request_keyframe(self) -> None:
        """Ask the encoder for a keyframe at this frame: the interval is `KEYFRAME_S` of stream
        time even when a slow pipeline passes fewer frames than the frame rate says."""
        Gst = gst.init()
        from gi.repository import GstVideo

        # "As soon as possible", not at a running time: x264enc shifts its input by 1000 h, and
        # the encoder would refuse a time earlier than splitmuxsink's last request.
        event = GstVideo.video_event_new_upstream_force_key_unit(Gst.CLOCK_TIME_NONE, True, 0)
        self._encoder_side.push_event(event)
        self._keyframe_due = self._pts + round(KEYFRAME_S * 1e9)

    def _name_segment(self, _splitter: Any, _fragment: int, first: Any) -> str:
        """splitmuxsink's `format-location-full`: the file of a segment starting at `first`."""
        # Its running time is the pts we pushed (encoders may offset pts: x264enc by 1000 h).
        Gst = gst.init()
        pts = None
        if first is not None:
            running = first.get_segment().to_running_time(Gst.Format.TIME, first.get_buffer().pts)
            pts = None if running == Gst.CLOCK_TIME_NONE else running
        with self._lock:
            utc = self._utc_by_pts.get(pts) if pts is not None else None
            self._utc_by_pts = {p: u for p, u in self._utc_by_pts.items() if p > (pts or 0)}
        return str(self._location(utc if utc is not None else time.time()))

    def poll(self) -> list[tuple[str, Path]]:
        """Segments `opened` and `closed` since the last poll; sets `error` on a failure."""
        if self._pipeline is None:
            return []
        events: list[tuple[str, Path]] = []
        while (message := self._bus.pop()) is not None:
            self._note(message, events)
        return events

    def _note(self, message: Any, events: list[tuple[str, Path]]) -> None:
        Gst = gst.init()
        if message.type == Gst.MessageType.ELEMENT:
            structure = message.get_structure()
            kind = SEGMENT_MESSAGES.get(structure.get_name() if structure else "")
            if kind is not None:
                path = Path(structure.get_string("location"))
                self.current = path if kind == "opened" else self.current
                events.append((kind, path))
        elif message.type == Gst.MessageType.ERROR and self.error is None:
            error, _debug = message.parse_error()
            self.error = error.message
            self.disk_error = error.domain == RESOURCE_ERROR

    def close(self) -> list[tuple[str, Path]]:
        """Finish the open segment (EOS) and stop; returns the last segment events."""
        if self._pipeline is None:
            return []
        if self.error is not None:
            self.abort()
            return []
        events: list[tuple[str, Path]] = []
        messages, problem = self._finish(gst.init().MessageType.ELEMENT)
        for message in messages:
            self._note(message, events)
        if problem and self.error is None:  # the EOS never came: the segment may lack its end
            self.error = problem
        return events

    def abort(self) -> None:
        """Stop at once (after an error); what the open segment holds stays readable."""
        if self._pipeline is not None:
            self._pipeline.set_state(gst.init().State.NULL)
            self._pipeline = None
