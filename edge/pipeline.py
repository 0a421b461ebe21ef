"""The runtime: capture → detect → track → colorize → output, each stage on its own thread.

Stages are joined by bounded queues. The first queue (capture → detect) drops its oldest frame
when full for a live source, so latency stays bounded when a stage falls behind, and counts the
drop; for a file it blocks, so every frame is processed. Later queues always block: every frame
that enters detection is tracked, colorized and written in order, so the output video, the JSONL
events and the MOT file number frames the same way.

`stop()` (from a signal handler) stops capture; the end-of-stream marker then drains every queue
and the output stage finalizes its files before `run()` returns.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edge.detections import pixel_box
from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.models.colorizer import Colorizer
from edge.models.detector import Detector
from edge.models.embedder import Embedder
from edge.models.tracker import Tracker
from edge.outputs.base import Sink
from edge.types import Packet
from edge.video.capture import FrameSource

log = logging.getLogger(__name__)
END = None  # the end-of-stream marker passed down the queues


class FrameListener(Protocol):
    """Told when a frame has gone through every stage (systemd health, for example)."""

    def frame_done(self) -> None:
        """One more frame completed."""


@dataclass
class Models:
    """What the stages run; `colorizer` is None when colorization is off."""

    detector: Detector
    embedder: Embedder
    tracker: Tracker
    colorizer: Colorizer | None
    colorize_mode: str  # frame, tracks, off
    detect_interval: int = 0  # detect on one frame in detect_interval + 1


class FrameRate:
    """Frames per second over the last `window` completed frames."""

    def __init__(self, window: int = 30) -> None:
        self._times: deque[float] = deque(maxlen=window)

    def tick(self) -> float:
        """Record a completed frame; return the current rate."""
        self._times.append(time.monotonic())
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)


class Pipeline:
    """Runs the stages over a source until it ends or `stop()` is called."""

    def __init__(
        self,
        source: FrameSource,
        models: Models,
        sinks: Sequence[Sink],
        metrics: Metrics,
        queue_size: int = 4,
        listener: FrameListener | None = None,
        log_every_s: float = 10.0,
    ) -> None:
        self.source, self.models, self.metrics = source, models, metrics
        self.sinks = list(sinks)
        self.listener = listener
        self.log_every_s = log_every_s
        self._queues = [queue.Queue[Packet | None](maxsize=queue_size) for _ in range(4)]
        self._errors: list[BaseException] = []
        self._rate = FrameRate()
        self._to_detect = 0  # frames to skip before the next detection
        self.frames_done = 0

    def stop(self) -> None:
        """Stop capturing; frames already captured are still processed and written."""
        self.source.stop()

    def run(self) -> None:
        """Process until the source ends or is stopped; raise the first stage error, if any."""
        stages: list[tuple[str, Callable[[Packet], Packet]]] = [
            ("detect", self._detect),
            ("track", self._track),
            ("colorize", self._colorize),
        ]
        threads = [threading.Thread(target=self._capture, name="capture", daemon=True)]
        for index, (name, work) in enumerate(stages):
            threads.append(
                threading.Thread(
                    target=self._stage,
                    args=(work, self._queues[index], self._queues[index + 1]),
                    name=name,
                    daemon=True,
                )
            )
        threads.append(threading.Thread(target=self._output, name="output", daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._errors:
            error = self._errors[0]
            if isinstance(error, EdgeError):
                raise error
            raise EdgeError(f"pipeline stage failed: {type(error).__name__}: {error}") from error

    def _fail(self, error: BaseException) -> None:
        # An EdgeError is a problem the user can fix, said in one line; anything else is a bug
        # and keeps its traceback.
        trace = None if isinstance(error, EdgeError) else error
        log.error("%s stage failed: %s", threading.current_thread().name, error, exc_info=trace)
        self._errors.append(error)
        self.source.stop()

    def _capture(self) -> None:
        first = self._queues[0]
        live = self.source.spec.live
        try:
            frames = self.source.frames()
            while True:
                waited = time.perf_counter()
                frame = next(frames, None)
                if frame is None:
                    break
                self.metrics.observe("capture", time.perf_counter() - waited)
                self.metrics.increment("frames_captured")
                packet = Packet(frame)
                if live:
                    while True:
                        try:
                            first.put_nowait(packet)
                            break
                        except queue.Full:
                            try:
                                first.get_nowait()
                                self.metrics.increment("dropped_frames")
                            except queue.Empty:
                                pass
                else:
                    first.put(packet)
        except BaseException as error:  # reported by run(), never swallowed
            self._fail(error)
        finally:
            first.put(END)

    def _stage(
        self,
        work: Callable[[Packet], Packet],
        inbox: queue.Queue[Packet | None],
        outbox: queue.Queue[Packet | None],
    ) -> None:
        failed = False
        while (packet := inbox.get()) is not END:
            if failed:
                continue  # drain, so upstream never blocks on a dead stage
            try:
                outbox.put(work(packet))
            except BaseException as error:  # reported by run()
                self._fail(error)
                failed = True
        outbox.put(END)

    def _timed(self, packet: Packet, stage: str, started: float) -> float:
        now = time.perf_counter()
        packet.timings[stage] = now - started
        self.metrics.observe(stage, now - started)
        return now

    def _detect(self, packet: Packet) -> Packet:
        self._to_detect, due = self._to_detect - 1, self._to_detect == 0
        if not due:
            return packet  # the tracker predicts this frame (`detect_interval`)
        self._to_detect = self.models.detect_interval
        detector, bgr = self.models.detector, packet.bgr
        t0 = time.perf_counter()
        tensor, box = detector.preprocess(bgr)
        t1 = self._timed(packet, "detect_pre", t0)
        raw = detector.infer(tensor)
        t2 = self._timed(packet, "detect_infer", t1)
        detections = detector.postprocess(raw, box, bgr.shape[:2])
        t3 = self._timed(packet, "detect_post", t2)
        self.metrics.observe("detect", t3 - t0)
        embeddings = self.models.embedder(bgr, detections.xyxy)
        self._timed(packet, "embed", t3)
        packet.detections = detections.with_data(embedding=embeddings)
        return packet

    def _track(self, packet: Packet) -> Packet:
        started = time.perf_counter()
        tracker, detections = self.models.tracker, packet.detections
        packet.update = tracker.update(detections) if detections is not None else tracker.coast()
        self._timed(packet, "track", started)
        return packet

    def _colorize(self, packet: Packet) -> Packet:
        started = time.perf_counter()
        colorizer, mode = self.models.colorizer, self.models.colorize_mode
        if colorizer is None or mode == "off":
            packet.image = packet.bgr.copy()
        elif mode == "frame":
            packet.image = colorizer.colorize(packet.frame.image)
        else:
            packet.image = colorize_tracks(colorizer, packet)
        self._timed(packet, "colorize", started)
        return packet

    def _output(self) -> None:
        inbox = self._queues[-1]
        last_log = time.monotonic()
        failed = False
        while (packet := inbox.get()) is not END:
            if failed:
                continue
            try:
                fps = self._rate.tick()
                for sink in self.sinks:
                    sink.write(packet, fps)
                self._finish(packet, fps)
                if self.log_every_s and time.monotonic() - last_log >= self.log_every_s:
                    last_log = time.monotonic()
                    log.info(progress_line(self.metrics))
            except BaseException as error:  # reported by run()
                self._fail(error)
                failed = True
        final_events = self.models.tracker.finish()
        for sink in self.sinks:  # each is closed, so one failure loses no other output
            try:
                sink.close(final_events)
            except BaseException as error:  # reported by run()
                self._fail(error)

    def _finish(self, packet: Packet, fps: float) -> None:
        self.frames_done += 1
        self.metrics.increment("frames")
        self.metrics.observe("total", time.monotonic() - packet.frame.captured)
        self.metrics.set("fps", fps)
        tracks = packet.update.tracks if packet.update else []
        self.metrics.set("active_tracks", len(tracks))
        if packet.update:
            started = sum(1 for e in packet.update.events if e.kind == "started")
            if started:
                self.metrics.increment("tracks_started", started)
        if self.listener is not None:
            self.listener.frame_done()


def colorize_tracks(colorizer: Colorizer, packet: Packet) -> np.ndarray:
    """The frame as BGR with each current track's box colorized in place."""
    image = packet.bgr.copy()
    for track in packet.update.tracks if packet.update else []:
        x1, y1, x2, y2 = pixel_box(track.xyxy, image.shape[:2])
        if x2 - x1 >= 2 and y2 - y1 >= 2:
            image[y1:y2, x1:x2] = colorizer.colorize(packet.frame.image[y1:y2, x1:x2])
    return image


def progress_line(metrics: Metrics) -> str:
    """One log line: frames, FPS, drops, tracks and per-stage p50 latency."""
    snap = metrics.snapshot()
    stages = " ".join(
        f"{name}={stats.p50_ms:.1f}ms"
        for name, stats in snap.stages.items()
        if name in ("capture", "detect", "embed", "track", "colorize", "draw", "encode", "total")
    )
    counters: dict[str, Any] = snap.counters
    return (
        f"frames={counters.get('frames', 0)} fps={snap.gauges.get('fps', 0):.1f} "
        f"dropped={counters.get('dropped_frames', 0)} tracks={counters.get('tracks_started', 0)} "
        f"reconnects={counters.get('reconnects', 0)} {stages}"
    )
