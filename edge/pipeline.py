"""The runtime: for each camera capture → (batched) detect → track → colorize → output.

Every camera has its own capture, track, colorize and output threads joined by bounded queues.
A detect thread serves its share of the cameras (`detect_workers` threads, camera i on thread
i mod N; one thread serves all by default), DeepStream's nvstreammux idea: it takes at most one
frame from each of its cameras that has one, up to `batch_size`, waiting at most
`batch_timeout_s` after the first for the others, so a slow or dead camera never holds the rest
back; the frames go through the shared detector in one inference call and their crops through
the embedder in one more. It starts each round with the next camera, so none is starved.

A live camera keeps only its newest captured frame (an older one waiting is dropped and
counted): a frame waits for at most the batch in progress. Nor does a detect thread ever wait
for a live camera's own stages: a frame whose camera's track queue is full is dropped before
detection and counted (`dropped_frames` and `frames_dropped_slow`), and its end-of-stream marker
takes the place of the oldest frame there (counted alike), so a camera with a slow or hung sink
(a hung disk) never holds back the other cameras of its thread, nor keeps them from finishing
their files at `stop()`. A file blocks instead, so every frame is processed. A camera's later
queues block (bounded, and holding back only that camera): every frame that enters its tracker
is tracked, colorized and written in order, so a camera's video, JSONL events and MOT file
number frames the same way.

Supervision. A live camera is a service: when one of its stages raises (its capture, track,
colorize or output stage), the error is logged and counted (`camera_restarts`) and that stage
waits out a backoff (`restart_initial_s` doubling to `restart_max_s`), then goes on with the
next frame; a failed capture reopens its source. The run of failures ends at the camera's next
complete frame captured after its last failure (or `restart_max_s` after its last wait without a
failure). A bug's traceback is logged at the first failure of a run only, later ones in one
line. Frames that arrive meanwhile are dropped and counted like a slow camera's. The camera's
other stages and every other camera run on; after `FAILED_AFTER` failures in a row the camera is
reported failing to its listener (unhealthy on `/healthz` and STATUS) until its next complete
frame. Each frame goes to every one of a camera's sinks, even after one of them raised. A file's
camera is a job: its first stage error stops it and `run()` raises it. The shared detection
retries a failed batch with the same backoff; after `DETECT_ATTEMPTS` failures in a row (a call
that works starts the count over) the engine is taken as broken: every camera stops, every
backoff is cut short, and `run()` raises, so `edge run` exits non-zero and systemd restarts the
service (a fresh process reloads the engine, which an in-process retry cannot).

`stop()` (from a signal handler) stops capture and cuts any backoff short; the end-of-stream
markers then drain every queue and each camera's output stage finalizes its files before
`run()` returns (a camera whose sink hangs holds back `run()`, but no other camera's files).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edge.detections import pixel_box
from edge.errors import EdgeError
from edge.faults import Backoff, describe, trace_of
from edge.metrics import Metrics
from edge.models.colorizer import Colorizer
from edge.models.detector import Detector
from edge.models.embedder import Embedder
from edge.models.tracker import Tracker
from edge.motion import MotionGate
from edge.outputs.base import Sink
from edge.types import Packet
from edge.video.capture import FrameSource

log = logging.getLogger(__name__)
END = None  # the end-of-stream marker passed down the queues
FAILED_AFTER = 3  # a live camera failing this many times in a row is reported unhealthy
DETECT_ATTEMPTS = 5  # failed detection calls in a row after which the engine counts as broken


class FrameListener(Protocol):
    """Told when a frame has gone through every stage (systemd health, for example)."""

    def frame_done(self) -> None:
        """One more frame completed."""

    def camera_failed(self, reason: str) -> None:
        """The camera keeps failing (`reason`: its last error); its next frame clears this."""


@dataclass
class Models:
    """What one camera's stages run: `detector` (the camera's thresholds and classes over the
    shared engine), `embedder` and `colorizer` (None when off) are shared with the other
    cameras that use the same model files; `tracker` is the camera's own."""

    detector: Detector
    embedder: Embedder
    tracker: Tracker
    colorizer: Colorizer | None
    colorize_mode: str  # frame, tracks, off
    detect_interval: int = 0  # detect on one frame in detect_interval + 1
    motion: MotionGate | None = None  # the camera's own; None: detect whether or not it moves


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


@dataclass
class Camera:
    """One camera's part of the pipeline: its source, models, outputs and metrics."""

    name: str
    source: FrameSource
    models: Models
    sinks: Sequence[Sink]
    metrics: Metrics
    listener: FrameListener | None = None
    frames_done: int = 0
    rate: FrameRate = field(default_factory=FrameRate)
    to_detect: int = 0  # frames to skip before the next detection

    def detection_due(self, packet: Packet) -> bool:
        """Whether this frame is detected (`detect_interval`); counts the frames between. A
        frame in which nothing moves is not (`packet.still`), and the next one that moves is."""
        motion = self.models.motion
        if motion is not None and not motion.moving(packet.frame.image):
            packet.still, self.to_detect = True, 0
            return False
        self.to_detect, due = self.to_detect - 1, self.to_detect == 0
        if due:
            self.to_detect = self.models.detect_interval
        return due


class Captured:
    """Each camera's captured frames waiting for detection, behind one condition, so the
    detect stage can wait for any camera. A live camera holds one frame (the newest), a file
    up to `capacity` (its capture blocks while full)."""

    def __init__(self, capacities: Sequence[int]) -> None:
        self._waiting: list[deque[Packet | None]] = [deque() for _ in capacities]
        self._capacities = list(capacities)
        self._ready = threading.Condition()

    def put(self, camera: int, packet: Packet | None, live: bool) -> bool:
        """Queue a frame (or END); return True if an older frame was dropped for it."""
        with self._ready:
            waiting, dropped = self._waiting[camera], False
            while len(waiting) >= self._capacities[camera]:
                if live:
                    waiting.popleft()
                    dropped = True
                else:
                    self._ready.wait()
            waiting.append(packet)
            self._ready.notify_all()
        return dropped

    def take(
        self, cameras: Sequence[int], most: int, timeout_s: float
    ) -> list[tuple[int, Packet | None]]:
        """At most one frame from each of `cameras` (in that order), up to `most`: as soon as
        every one of them has a frame, else `timeout_s` after the first arrived."""
        wanted = min(most, len(cameras))
        with self._ready:
            deadline = None
            while True:
                ready = [c for c in cameras if self._waiting[c]]
                if len(ready) >= wanted:
                    break
                if ready and deadline is None:
                    deadline = time.monotonic() + timeout_s
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._ready.wait(left)
            taken = [(c, self._waiting[c].popleft()) for c in ready[:wanted]]
            self._ready.notify_all()  # a file's capture may be waiting for room
        return taken


class Pipeline:
    """Runs every camera's stages until their sources end or `stop()` is called."""

    def __init__(
        self,
        cameras: Sequence[Camera],
        queue_size: int = 4,
        batch_size: int = 0,
        batch_timeout_s: float = 0.04,
        log_every_s: float = 10.0,
        detect_workers: int = 1,
        restart_initial_s: float = 1.0,
        restart_max_s: float = 60.0,
    ) -> None:
        """Set up the queues; nothing runs before `run()`.

        Args:
            cameras: the cameras, whose detectors share one engine (and embedders one).
            queue_size: frames a file source and each later stage may hold.
            batch_size: most frames per detection call (0: one per camera).
            batch_timeout_s: longest wait for a full batch after its first frame.
            log_every_s: seconds between progress lines (0: none).
            detect_workers: detection threads; camera i is always served by thread i mod N,
                so each camera's frames reach its tracker in order.
            restart_initial_s: a failed live camera's (or detection's) first backoff.
            restart_max_s: the longest backoff, and how long a camera must work for its next
                failure to start over at `restart_initial_s`.
        """
        if not cameras:
            raise ValueError("a pipeline needs at least one camera")
        self.cameras = list(cameras)
        self.batch_size = batch_size or len(self.cameras)
        self.batch_timeout_s = batch_timeout_s
        self.log_every_s = log_every_s
        self.detect_workers = min(detect_workers, len(self.cameras))
        self._captured = Captured([1 if c.source.spec.live else queue_size for c in self.cameras])
        self._queues = [
            [queue.Queue[Packet | None](maxsize=queue_size) for _ in range(3)] for _ in self.cameras
        ]
        self._errors: list[BaseException] = []
        self._restart_s = (restart_initial_s, restart_max_s)
        self._backoffs = [Backoff(*self._restart_s) for _ in self.cameras]
        self._stopping = threading.Event()  # cuts every backoff short

    @property
    def frames_done(self) -> int:
        """Frames all cameras have completed."""
        return sum(camera.frames_done for camera in self.cameras)

    def stop(self) -> None:
        """Stop capturing; frames already captured are still processed and written."""
        self._stopping.set()
        for camera in self.cameras:
            camera.source.stop()

    def run(self) -> None:
        """Process until every source ends or is stopped; raise the first stage error, if any."""
        workers = self.detect_workers
        threads = [
            threading.Thread(
                target=self._detect,
                args=(list(range(worker, len(self.cameras), workers)),),
                name=f"detect{worker}" if workers > 1 else "detect",
                daemon=True,
            )
            for worker in range(workers)
        ]
        for index, camera in enumerate(self.cameras):
            track, colorize, output = self._queues[index]
            work: list[tuple[str, Callable[..., None], tuple[Any, ...]]] = [
                ("capture", self._capture, (index,)),
                ("track", self._stage, (index, self._track, track, colorize)),
                ("colorize", self._stage, (index, self._colorize, colorize, output)),
                ("output", self._output, (index,)),
            ]
            for stage, target, args in work:
                name = f"{stage}:{camera.name}" if len(self.cameras) > 1 else stage
                threads.append(threading.Thread(target=target, args=args, name=name, daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._errors:
            error = self._errors[0]
            if isinstance(error, EdgeError):
                raise error
            raise EdgeError(f"pipeline stage failed: {type(error).__name__}: {error}") from error

    def _fail(self, error: BaseException, cameras: Sequence[Camera]) -> None:
        log.error("%s stage failed: %s", _thread(), describe(error), exc_info=trace_of(error))
        self._errors.append(error)
        if len(cameras) == len(self.cameras):  # the run is over: no stage may sleep through it
            self._stopping.set()
        for camera in cameras:
            camera.source.stop()

    def _restart(self, index: int, error: Exception) -> bool:
        """After a stage of camera `index` raised: True once a live camera's backoff is over
        (the stage goes on); False for a file's camera, which stops (`run()` raises)."""
        camera = self.cameras[index]
        if not camera.source.spec.live:
            self._fail(error, [camera])
            return False
        backoff = self._backoffs[index]
        delay, reason = backoff.failed(), describe(error)
        camera.metrics.increment("camera_restarts")
        _log_failure(f"{_thread()} stage", error, backoff, f"restarting it in {delay:.1f} s")
        if backoff.failures >= FAILED_AFTER and camera.listener is not None:
            camera.listener.camera_failed(reason)
        self._stopping.wait(delay)
        return True

    def _capture(self, index: int) -> None:
        try:
            while True:
                try:
                    self._capture_until_end(index)
                    return
                except Exception as error:  # a live source is reopened, a file's is reported
                    if not self._restart(index, error):
                        return
        finally:
            self._captured.put(index, END, live=False)

    def _capture_until_end(self, index: int) -> None:
        camera = self.cameras[index]
        live, metrics = camera.source.spec.live, camera.metrics
        frames = camera.source.frames()
        while True:
            waited = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                return
            metrics.observe("capture", time.perf_counter() - waited)
            metrics.increment("frames_captured")
            if self._captured.put(index, Packet(frame), live):
                metrics.increment("dropped_frames")

    def _detect(self, running: list[int]) -> None:
        """Batches frames of these cameras, while they run, through detection and embedding."""
        failed, backoff = False, Backoff(*self._restart_s)
        while running:
            batch = self._captured.take(running, self.batch_size, self.batch_timeout_s)
            running = running[1:] + running[:1]  # the next round starts with the next camera
            packets = []
            for index, packet in batch:
                if packet is END:
                    running.remove(index)
                    self._hand_end(index)
                elif self._has_room(index):
                    packets.append((index, packet))
            if failed:
                continue  # drain, so no capture blocks on a dead stage
            due = [(self.cameras[i], p) for i, p in packets if self.cameras[i].detection_due(p)]
            try:
                self._detect_retrying(due, backoff)
            except Exception as error:  # reported by run()
                self._fail(error, self.cameras)
                failed = True
                continue
            for index, packet in packets:  # never waits for a live camera: `_has_room`
                self._queues[index][0].put(packet)

    def _has_room(self, index: int) -> bool:
        """Whether camera `index`'s tracker queue can take a frame. A live camera's frame that it
        cannot is dropped now and counted; a file's waits. This thread is the queue's only
        producer, so a frame that passes here is handed over without waiting."""
        camera = self.cameras[index]
        if not camera.source.spec.live or not self._queues[index][0].full():
            return True
        _dropped_slow(camera)
        return False

    def _hand_end(self, index: int) -> None:
        """Put the end-of-stream marker in camera `index`'s tracker queue. A file's waits for
        room; a live camera's never does: when the queue is full (its stages are stuck), the
        oldest frame there is dropped for it, so this thread goes on to its other cameras."""
        inbox = self._queues[index][0]
        if not self.cameras[index].source.spec.live:
            inbox.put(END)
            return
        while True:
            try:
                inbox.put_nowait(END)
                return
            except queue.Full:
                try:
                    inbox.get_nowait()
                except queue.Empty:  # the tracker took one meanwhile
                    continue
                _dropped_slow(self.cameras[index])

    def _detect_retrying(self, due: list[tuple[Camera, Packet]], backoff: Backoff) -> None:
        """Detect these frames; a failed call is retried after `backoff`'s delay, and raised
        once it has failed `DETECT_ATTEMPTS` times in a row."""
        while True:
            try:
                self._detect_batch(due)
            except Exception as error:
                delay = backoff.failed()
                for camera, _ in due:
                    camera.metrics.increment("detect_failures")
                if self._stopping.is_set():  # draining: no time to retry, and no broken engine
                    _log_failure(_thread(), error, backoff, "its frames go on undetected")
                    return
                if backoff.failures >= DETECT_ATTEMPTS:
                    raise EdgeError(
                        f"detection failed {backoff.failures} times in a row, last: "
                        f"{describe(error)}; exiting so that the service restarts"
                    ) from error
                _log_failure(_thread(), error, backoff, f"retrying in {delay:.1f} s")
                self._stopping.wait(delay)
                continue
            backoff.succeeded()  # only failures in a row mean a broken engine
            return

    def _detect_batch(self, due: list[tuple[Camera, Packet]]) -> None:
        if not due:
            return  # the trackers predict these frames (`detect_interval`)
        t0 = time.perf_counter()
        inputs = [camera.models.detector.preprocess(packet.bgr) for camera, packet in due]
        t1 = time.perf_counter()
        shared = due[0][0].models  # every camera's detector runs the one engine
        heads = shared.detector.infer_batch(np.concatenate([tensor for tensor, _ in inputs]))
        t2 = time.perf_counter()
        found = []
        for (camera, packet), head, (_, box) in zip(due, heads, inputs, strict=True):
            found.append(camera.models.detector.postprocess(head, box, packet.bgr.shape[:2]))
        t3 = time.perf_counter()
        crops = [
            (packet.bgr, detections.xyxy)
            for (_, packet), detections in zip(due, found, strict=True)
        ]
        embeddings = shared.embedder.embed_frames(crops)
        t4 = time.perf_counter()
        times = {"detect_pre": t1 - t0, "detect_infer": t2 - t1, "detect_post": t3 - t2}
        times |= {"detect": t3 - t0, "embed": t4 - t3}
        for (camera, packet), detections, embedding in zip(due, found, embeddings, strict=True):
            packet.detections = detections.with_data(embedding=embedding)
            packet.timings.update(times)
            for stage, seconds in times.items():
                camera.metrics.observe(stage, seconds)
            camera.metrics.set("batch_size", len(due))

    def _stage(
        self,
        index: int,
        work: Callable[[Camera, Packet], Packet],
        inbox: queue.Queue[Packet | None],
        outbox: queue.Queue[Packet | None],
    ) -> None:
        camera, stopped = self.cameras[index], False
        while (packet := inbox.get()) is not END:
            if stopped:
                continue  # drain, so upstream never blocks on a stopped stage
            try:
                outbox.put(work(camera, packet))
            except Exception as error:  # the stage restarts, or run() reports it
                stopped = not self._restart(index, error)
        outbox.put(END)

    @staticmethod
    def _track(camera: Camera, packet: Packet) -> Packet:
        started = time.perf_counter()
        tracker, detections = camera.models.tracker, packet.detections
        if packet.still:
            packet.update = tracker.hold()
        elif detections is not None:
            packet.update = tracker.update(detections, packet.frame.image)
        else:
            packet.update = tracker.coast(packet.frame.image)
        _timed(camera, packet, "track", started)
        return packet

    @staticmethod
    def _colorize(camera: Camera, packet: Packet) -> Packet:
        started = time.perf_counter()
        colorizer, mode = camera.models.colorizer, camera.models.colorize_mode
        if colorizer is None or mode == "off":
            packet.image = packet.bgr.copy()
        elif mode == "frame":
            packet.image = colorizer.colorize(packet.frame.image)
        else:
            packet.image = colorize_tracks(colorizer, packet)
        _timed(camera, packet, "colorize", started)
        return packet

    def _output(self, index: int) -> None:
        camera, inbox = self.cameras[index], self._queues[index][-1]
        last_log = time.monotonic()
        stopped = False
        while (packet := inbox.get()) is not END:
            if stopped:
                continue
            try:
                fps = camera.rate.tick()
                _write_all(camera.sinks, packet, fps)
                _finish(camera, packet, fps)
                self._backoffs[index].succeeded(started=packet.frame.captured)
                if self.log_every_s and time.monotonic() - last_log >= self.log_every_s:
                    last_log = time.monotonic()
                    prefix = f"{camera.name}: " if len(self.cameras) > 1 else ""
                    log.info(prefix + progress_line(camera.metrics))
            except Exception as error:  # the stage restarts, or run() reports it
                stopped = not self._restart(index, error)
        final_events = camera.models.tracker.finish()
        for sink in camera.sinks:  # each is closed, so one failure loses no other output
            try:
                sink.close(final_events)
            except Exception as error:  # reported by run()
                self._fail(error, [camera])


def _thread() -> str:
    return threading.current_thread().name


def _log_failure(what: str, error: Exception, backoff: Backoff, then: str) -> None:
    """One error line for a failure that is retried; a bug's traceback only with the first of a
    run, which later ones would repeat at every attempt, forever."""
    trace = trace_of(error) if backoff.failures == 1 else None
    log.error("%s failed: %s; %s", what, describe(error), then, exc_info=trace)


def _dropped_slow(camera: Camera) -> None:
    camera.metrics.increment("dropped_frames")
    camera.metrics.increment("frames_dropped_slow")


def _write_all(sinks: Sequence[Sink], packet: Packet, fps: float) -> None:
    """Give the frame to every sink, even after one raised, so that one output's fault (the
    video's: the others are guarded) costs no other output the frame; then raise the first."""
    failure: Exception | None = None
    for sink in sinks:
        try:
            sink.write(packet, fps)
        except Exception as error:  # raised below, once every sink has the frame
            failure = failure or error
    if failure is not None:
        raise failure


def _timed(camera: Camera, packet: Packet, stage: str, started: float) -> None:
    seconds = time.perf_counter() - started
    packet.timings[stage] = seconds
    camera.metrics.observe(stage, seconds)


def _finish(camera: Camera, packet: Packet, fps: float) -> None:
    metrics = camera.metrics
    camera.frames_done += 1
    metrics.increment("frames")
    metrics.observe("total", time.monotonic() - packet.frame.captured)
    metrics.set("fps", fps)
    tracks = packet.update.tracks if packet.update else []
    metrics.set("active_tracks", len(tracks))
    if packet.update:
        started = sum(1 for e in packet.update.events if e.kind == "started")
        if started:
            metrics.increment("tracks_started", started)
    if camera.listener is not None:
        camera.listener.frame_done()


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
