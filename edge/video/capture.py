"""Frames from a GStreamer pipeline through appsink, with reconnection for live sources.

`GstCapture` runs one pipeline and returns frames (`read` gives None on a timeout, like
jetson-utils' Capture). `FrameSource` turns a source URI into an endless stream for a camera or
RTSP feed — an error, an end of stream or a silent source closes the pipeline and reopens it with
exponential backoff, each attempt logged — and into a finite one for a file, which ends at EOS.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from edge.config import SourceConfig
from edge.errors import EdgeError
from edge.faults import Backoff
from edge.metrics import Metrics
from edge.types import Frame
from edge.video import gst
from edge.video.sources import (
    SINK_NAME,
    TEST_FPS,
    SourceSpec,
    capture_pipeline,
    parse_uri,
    redact,
)

log = logging.getLogger(__name__)
# How long `close()` waits for GStreamer to stop a pipeline. Stopping waits for every streaming
# thread, and one stuck in a network call (rtspsrc to a server that stopped answering) can hold
# it forever: past this the pipeline is abandoned, so a reconnect or a SIGTERM never hangs.
CLOSE_TIMEOUT_S = 5.0
# Frame rate assumed when neither the config nor the stream's caps state one.
DEFAULT_FPS = {"file": 25.0, "test": float(TEST_FPS), "csi": 30.0, "v4l2": 30.0, "rtsp": 30.0}


class SourceLost(Exception):
    """The pipeline reported an error or ended; a live source may be reopened."""


class GstCapture:
    """One running capture pipeline."""

    def __init__(self, description: str) -> None:
        """Start the pipeline; raises SourceLost if it cannot start (e.g. camera unplugged).

        Its errors, and GStreamer's messages in them, come without the URI's credentials.
        """
        Gst = gst.init()
        try:
            self._pipeline = Gst.parse_launch(description)
        except Exception as exc:  # GLib.Error: a malformed pipeline is a bug, not a lost source
            raise EdgeError(f"cannot build capture pipeline: {redact(str(exc))}") from exc
        self._sink = self._pipeline.get_by_name(SINK_NAME)
        self._bus = self._pipeline.get_bus()
        if self._pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            problem = gst.bus_error(self._bus) or "pipeline failed to start"
            self.close()
            raise SourceLost(redact(problem))

    def read(self, timeout_s: float) -> tuple[np.ndarray, float | None, float] | None:
        """The next frame, its timestamp and caps frame rate, or None if none came in time.

        Raises:
            SourceLost: the pipeline posted an error, or the stream ended.
        """
        sample = self._sink.emit("try-pull-sample", int(timeout_s * 1e9))
        if sample is None:
            problem = gst.bus_error(self._bus)
            if problem:
                raise SourceLost(redact(problem))
            if self._sink.get_property("eos"):
                raise SourceLost("end of stream")
            return None
        return gst.sample_to_array(sample)

    def close(self, stopping: Callable[[int], None] | None = None) -> bool:
        """Stop the pipeline and free it, waiting at most CLOSE_TIMEOUT_S.

        Args:
            stopping: told +1 when the pipeline is left behind, and -1 (from the background
                thread) if it stops after all: the caller's count of pipelines still stopping.

        Returns:
            False if GStreamer did not stop it in time: it is left to stop in a background
            thread, and the warning names the elements still running, so that the caller goes on.
        """
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is None:
            return True
        lock = threading.Lock()
        stopped, left_behind = threading.Event(), threading.Event()

        def stop() -> None:
            pipeline.set_state(gst.init().State.NULL)
            with lock:
                stopped.set()
                late = left_behind.is_set()
            if late:
                log.info("a capture pipeline left behind has stopped")
                if stopping is not None:
                    stopping(-1)

        threading.Thread(target=stop, name="capture-close", daemon=True).start()
        if stopped.wait(CLOSE_TIMEOUT_S):
            return True
        with lock:
            if stopped.is_set():
                return True
            left_behind.set()
            if stopping is not None:
                stopping(+1)
        log.warning(
            "capture pipeline did not stop within %g s (a GStreamer thread is blocked in %s); "
            "left to stop in the background, going on",
            CLOSE_TIMEOUT_S,
            ", ".join(gst.not_stopped(pipeline)) or "the pipeline",
        )
        return False


class FrameSource:
    """Frames from a source URI until it ends (file), forever (live), or `stop()` is called."""

    def __init__(self, config: SourceConfig, metrics: Metrics) -> None:
        """Parse the URI and build its pipeline (not started yet)."""
        self.config = config
        self.spec: SourceSpec = parse_uri(config.uri)
        self.description = capture_pipeline(self.spec, config, gst.has_element)
        self.metrics = metrics
        self._stop = threading.Event()
        self._stopping_lock = threading.Lock()
        self._stopping = 0  # pipelines left behind by `close`, not stopped yet

    def stop(self) -> None:
        """Make `frames()` end at its next step (thread-safe)."""
        self._stop.set()

    def check(self) -> None:
        """Decode a file's first frame now, so an unreadable file fails before models load.

        Live sources are not checked: a camera that is away now is waited for by `frames()`.

        Raises:
            EdgeError: the file cannot be decoded.
        """
        if self.spec.live:
            return
        try:
            capture = GstCapture(self.description)
            try:
                if capture.read(self.config.timeout_s) is None:
                    raise SourceLost(f"no frame within {self.config.timeout_s:g} s")
            finally:
                capture.close()
        except SourceLost as exc:
            raise EdgeError(f"cannot read {self.spec.describe()}: {exc}") from exc

    def frames(self) -> Iterator[Frame]:
        """Yield frames; reconnect live sources with backoff; stop at EOS for files.

        Raises:
            EdgeError: a file cannot be read at all.
        """
        index = 0
        # Only frames end a run of failures: a source that opens and then stays silent keeps
        # doubling its wait, however long each attempt took.
        backoff = Backoff(
            self.config.reconnect_initial_s, self.config.reconnect_max_s, reset_after_s=math.inf
        )
        while not self._stop.is_set():
            try:
                capture = GstCapture(self.description)
            except SourceLost as exc:
                if not self.spec.live:
                    raise EdgeError(f"cannot read {self.spec.describe()}: {exc}") from exc
                self._wait_to_reconnect(str(exc), backoff)
                continue
            log.info("capturing from %s", self.spec.describe())
            try:
                for image, pts, caps_fps in self._read_until_lost(capture):
                    fps = self.config.fps or caps_fps or DEFAULT_FPS[self.spec.kind]
                    yield Frame(index, image, time.monotonic(), pts, fps)
                    index += 1
                    backoff.succeeded()  # frames flow again
                    if self.config.max_frames and index >= self.config.max_frames:
                        return
                return  # stopped
            except SourceLost as exc:
                if not self.spec.live:
                    if index == 0 and str(exc) != "end of stream":
                        raise EdgeError(f"cannot read {self.spec.describe()}: {exc}") from exc
                    log.info("%s: %s after %d frames", self.spec.describe(), exc, index)
                    return
                self._wait_to_reconnect(str(exc), backoff)
            finally:
                capture.close(self._count_stopping)

    def _count_stopping(self, change: int) -> None:
        """Count a capture pipeline left behind (+1) or stopped after all (-1): the gauge
        `capture_pipelines_stopping` shows what a stuck GStreamer thread still holds, and the
        counter `capture_pipelines_left_behind` how often it happened."""
        with self._stopping_lock:
            self._stopping += change
            self.metrics.set("capture_pipelines_stopping", self._stopping)
        if change > 0:
            self.metrics.increment("capture_pipelines_left_behind")

    def _read_until_lost(
        self, capture: GstCapture
    ) -> Iterator[tuple[np.ndarray, float | None, float]]:
        silent_since = time.monotonic()
        while not self._stop.is_set():
            frame = capture.read(min(self.config.timeout_s, 0.25))
            if frame is not None:
                silent_since = time.monotonic()
                yield frame
            elif self.spec.live and time.monotonic() - silent_since > self.config.timeout_s:
                raise SourceLost(f"no frame for {self.config.timeout_s:g} s")

    def _wait_to_reconnect(self, reason: str, backoff: Backoff) -> None:
        """Log, count and sleep for `backoff`'s next delay before the next attempt."""
        delay = backoff.failed()
        self.metrics.increment("reconnects")
        log.warning("%s: %s; reconnecting in %.1f s", self.spec.describe(), reason, delay)
        self._stop.wait(delay)
