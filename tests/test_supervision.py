"""Supervision and isolation: a live camera whose stage fails is restarted with backoff, a failed
detection call is retried, a side output's fault stays in it (the RTSP stream's too), a slow or
hung camera never holds back another, and a recording follows a camera back at another
resolution. Real GStreamer (`test://` sources, the recorder, gst-rtsp-server), real ONNX models;
the faults are injected by small sinks and engine and server wrappers that fail on purpose."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.processes import free_port
from edge.config import load
from edge.errors import EdgeError
from edge.faults import Backoff, describe
from edge.metrics import Metrics
from edge.outputs.base import Sink
from edge.outputs.guarded import Guard, GuardedSink
from edge.outputs.video import VideoSink
from edge.pipeline import Camera, FrameListener, Pipeline
from edge.runtime import DeviceOutputs, SharedEngines, load_models, open_sinks
from edge.service.health import Health
from edge.service.metrics_http import healthz
from edge.service.side_outputs import SideOutputs
from edge.types import Frame, Packet, TrackEvent
from edge.video.capture import FrameSource
from edge.video.rtsp import RtspMount, RtspServer
from export.data import data_file
from tests.recorded import decoded_frames, segments

# --- backoff ------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_to_its_bound_and_starts_over_after_working_that_long() -> None:
    clock = Clock()
    backoff = Backoff(1.0, 8.0, clock=clock)
    delays = []
    for _ in range(5):
        delays.append(backoff.failed())
        clock.now += delays[-1]  # fails again right after each wait
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    clock.now += 7.0  # worked for less than max_s since its last wait
    assert backoff.failed() == 8.0
    clock.now += 8.0 + 8.5
    assert backoff.failed() == 1.0
    assert backoff.failures == 1


def test_a_success_ends_a_run_of_failures_unless_it_began_before_the_last() -> None:
    clock = Clock()
    backoff = Backoff(1.0, 60.0, clock=clock)
    for _ in range(3):
        backoff.failed()
        clock.now += 1.0
    backoff.succeeded(started=clock.now - 5.0)  # began before the last failure: proves nothing
    assert backoff.failures == 3
    backoff.succeeded(started=clock.now)
    assert backoff.failures == 0
    assert backoff.failed() == 1.0
    backoff.succeeded()
    assert backoff.failed() == 1.0


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            RuntimeError("[ONNXRuntimeError] : 6 :\n  RUNTIME_EXCEPTION\tnode"),
            "RuntimeError: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION node",
        ),
        (EdgeError("cannot read x:\n\n  no frame "), "cannot read x: no frame"),
    ],
)
def test_describe_says_a_multi_line_error_in_one_line(error: Exception, line: str) -> None:
    assert describe(error) == line


# --- side outputs -------------------------------------------------------------------------------


class FaultySink:
    """A sink that raises while `failing` is set, and records the frames it was given."""

    def __init__(self, failing: bool = True, delay_s: float = 0.0) -> None:
        self.failing, self.delay_s = failing, delay_s
        self.frames: list[int] = []
        self.closed = False

    def write(self, packet: Packet, fps: float) -> None:
        time.sleep(self.delay_s)
        if self.failing:
            raise RuntimeError("disk on fire")
        self.frames.append(packet.frame.index)

    def close(self, final_events: list[TrackEvent]) -> None:
        self.closed = True


def packet(index: int, width: int = 32, height: int = 24) -> Packet:
    image = np.full((height, width, 3), index % 256, np.uint8)
    return Packet(Frame(index, image, time.monotonic(), index / 10, 10.0))


def test_a_side_outputs_fault_is_counted_degraded_left_out_and_retried() -> None:
    clock, device, metrics = Clock(), Metrics(), Metrics()
    side_outputs = SideOutputs(device)
    inner = FaultySink()
    guard = Guard("snapshots:cam0", side_outputs, metrics, Backoff(1.0, 60), clock)
    sink = GuardedSink(inner, guard)
    sink.write(packet(0), 10.0)  # raises inside: the camera never sees it
    assert metrics.snapshot().counters["sink_errors"] == 1
    assert side_outputs.degraded() == {"snapshots:cam0": "RuntimeError: disk on fire"}
    inner.failing = False
    clock.now = 0.5
    sink.write(packet(1), 10.0)  # left out during its backoff
    assert inner.frames == []
    clock.now = 1.0
    sink.write(packet(2), 10.0)
    assert inner.frames == [2]
    assert side_outputs.degraded() == {}
    assert device.snapshot().gauges["side_outputs_degraded"] == 0
    sink.close([])
    assert inner.closed


def test_a_side_outputs_fault_is_logged_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    guard = Guard("events:cam0", SideOutputs(Metrics()), Metrics(), Backoff(1.0, 60), clock)
    sink = GuardedSink(FaultySink(), guard)
    with caplog.at_level(logging.INFO):
        sink.write(packet(0), 10.0)
        first = [record.getMessage() for record in caplog.records]
        caplog.clear()
        clock.now = 1.0
        sink.write(packet(1), 10.0)  # the same fault again
    assert first == ["events:cam0 degraded: RuntimeError: disk on fire (the cameras keep running)"]
    assert [(record.getMessage(), record.exc_info) for record in caplog.records] == [
        ("events:cam0 failed again: RuntimeError: disk on fire; retrying in 2.0 s", None)
    ]


def test_open_sinks_guards_every_output_but_the_video(
    model_overrides: list[str], tmp_path: Path
) -> None:
    config = load(
        None,
        [*model_overrides, f"output.dir='{tmp_path}'", f"colorizer.collect_dir='{tmp_path}/c'"],
    )
    device = DeviceOutputs(config)
    sinks = open_sinks(config, ("person",), Metrics(), device)
    guarded = {s.name for s in sinks if isinstance(s, GuardedSink)}
    assert guarded == {
        f"{n}:cam0" for n in ("track_ids", "events", "mot", "snapshots", "collector")
    }
    assert [type(s) for s in sinks if not isinstance(s, GuardedSink)] == [VideoSink]
    for sink in sinks:
        sink.close([])


# --- resolution change --------------------------------------------------------------------------


def test_a_camera_back_at_another_resolution_records_a_new_segment(
    model_overrides: list[str], tmp_path: Path
) -> None:
    config = load(None, [*model_overrides, f"output.dir='{tmp_path}'", "output.overlay=false"])
    sinks = open_sinks(config, ("person",), Metrics(), DeviceOutputs(config))
    (video,) = (s for s in sinks if isinstance(s, VideoSink))
    for index in range(20):
        video.write(packet(index, 320, 240), 10.0)
    for index in range(20, 35):
        video.write(packet(index, 160, 120), 10.0)
    video.close([])
    assert [decoded_frames(path) for path in segments(tmp_path)] == [
        (20, (240, 320)),
        (15, (120, 160)),
    ]


# --- RTSP stream -------------------------------------------------------------------------------


class FlakyRtsp:
    """The real RTSP server, whose `mount()` and its mounts' writes raise while `failing`."""

    def __init__(self, server: RtspServer) -> None:
        self.server, self.failing = server, True

    def mount(self, *args: Any) -> FlakyMount:
        if self.failing:
            raise RuntimeError("cannot add the mount")
        return FlakyMount(self.server.mount(*args), self)

    def close(self) -> None:
        self.server.close()


class FlakyMount:
    def __init__(self, mount: RtspMount, server: FlakyRtsp) -> None:
        self.mount, self.server = mount, server

    def write(self, frame: np.ndarray) -> None:
        if self.server.failing:
            raise RuntimeError("appsrc push failed")
        self.mount.write(frame)


def test_a_failing_rtsp_stream_degrades_alone_and_the_recording_goes_on(
    model_overrides: list[str], tmp_path: Path
) -> None:
    settings = [f"output.dir='{tmp_path}'", f"output.rtsp_port={free_port()}"]
    settings += ["pipeline.restart_initial_s=0.01", "pipeline.restart_max_s=0.01"]
    config = load(None, [*model_overrides, *settings])
    device = DeviceOutputs(config)
    assert device.rtsp is not None
    rtsp = FlakyRtsp(device.rtsp)
    device.rtsp = rtsp  # type: ignore[assignment]
    metrics = Metrics()
    sinks = open_sinks(config, ("person",), metrics, device)
    (video,) = (s for s in sinks if isinstance(s, VideoSink))
    degraded = []
    for index in range(40):  # the mount fails, works, its writes fail, work
        rtsp.failing = (index // 10) % 2 == 0
        video.write(packet(index, 160, 120), 10.0)
        degraded.append(set(device.side_outputs.degraded()))
        time.sleep(0.02)  # past the backoff: the stream is tried at each frame
    for sink in sinks:
        sink.close([])
    device.close()
    assert [decoded_frames(path) for path in segments(tmp_path)] == [(40, (120, 160))]
    assert degraded[9] == degraded[29] == {"rtsp:cam0"}
    assert degraded[19] == degraded[39] == set()
    assert metrics.snapshot().counters["sink_errors"] == 20


# --- live cameras in a pipeline -----------------------------------------------------------------


@pytest.fixture(scope="module")
def engines() -> Iterator[SharedEngines]:
    shared = SharedEngines("auto", 1)
    yield shared
    shared.close()


def live_camera(
    name: str,
    overrides: list[str],
    engines: SharedEngines,
    sinks: list[Sink],
    metrics: Metrics | None = None,
    listener: FrameListener | None = None,
) -> Camera:
    """A `test://` camera of small frames at 10 FPS, detected on one frame in five (cheap on any
    CPU)."""
    settings = ["source.uri='test://'", f"source.name='{name}'", "colorizer.mode='off'"]
    settings += ["source.width=160", "source.height=120", "source.fps=10", "detector.interval=4"]
    config = load(None, [*overrides, *settings])
    metrics = metrics or Metrics()
    source = FrameSource(config.source, metrics)
    return Camera(name, source, load_models(config, engines=engines), sinks, metrics, listener)


class Running:
    """A pipeline run in a thread; `stop()` stops it and returns what `run()` raised."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline, self.error = pipeline, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.pipeline.run()
        except Exception as error:
            self.error = error  # type: ignore[assignment]

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)

    def stop(self) -> BaseException | None:
        self.pipeline.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        return self.error


def counter(camera: Camera, name: str) -> int:
    return camera.metrics.snapshot().counters.get(name, 0)


def test_a_live_cameras_failing_output_is_restarted_with_backoff(
    model_overrides: list[str], engines: SharedEngines, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FaultySink()
    camera = live_camera("cam", model_overrides, engines, [sink])
    running = Running(Pipeline([camera], restart_initial_s=0.05, restart_max_s=1.0))
    running.wait_for(lambda: counter(camera, "camera_restarts") >= 3)
    sink.failing = False  # the disk is back: the camera delivers again without a restart
    running.wait_for(lambda: len(sink.frames) >= 5)
    assert running.stop() is None
    assert counter(camera, "camera_restarts") in (3, 4)  # one may have been under way
    assert camera.frames_done >= 5
    failures = [r for r in caplog.records if "stage failed" in r.getMessage()]
    assert len(failures) >= 3
    # the traceback once, with the first failure; then one line per attempt
    assert [r.exc_info is not None for r in failures] == [True] + [False] * (len(failures) - 1)


class Listener:
    """Records what the pipeline tells a camera's health."""

    def __init__(self) -> None:
        self.done, self.failed = 0, list[str]()

    def frame_done(self) -> None:
        self.done += 1

    def camera_failed(self, reason: str) -> None:
        self.failed.append(reason)


def test_a_complete_frame_ends_a_cameras_run_of_failures(
    model_overrides: list[str], engines: SharedEngines
) -> None:
    sink = EveryNth(5)  # fails once in five frames: never three times in a row
    listener = Listener()
    camera = live_camera("cam", model_overrides, engines, [sink], listener=listener)
    running = Running(Pipeline([camera], restart_initial_s=0.05, restart_max_s=60.0))
    running.wait_for(lambda: counter(camera, "camera_restarts") >= 4, timeout_s=30)
    assert running.stop() is None
    assert listener.failed == []  # each failure waited 0.05 s, the first of a new run
    assert listener.done >= 12


class EveryNth(FaultySink):
    """A sink whose every `n`th write raises."""

    def __init__(self, n: int) -> None:
        super().__init__(failing=False)
        self.n, self.writes = n, 0

    def write(self, packet: Packet, fps: float) -> None:
        self.writes += 1
        self.failing = self.writes % self.n == 0
        super().write(packet, fps)


def test_every_sink_gets_the_frame_when_one_before_it_raises(
    model_overrides: list[str], engines: SharedEngines
) -> None:
    video, events = FaultySink(), FaultySink(failing=False)  # the video is not guarded
    camera = live_camera("cam", model_overrides, engines, [video, events])
    running = Running(Pipeline([camera], restart_initial_s=0.05, restart_max_s=0.2))
    running.wait_for(lambda: len(events.frames) >= 3, timeout_s=20)
    assert running.stop() is None
    assert counter(camera, "camera_restarts") >= 3  # the video's fault still restarts it
    assert camera.frames_done == 0


class StuckSink(FaultySink):
    """A sink whose writes hang (a hung disk) until `release` is set."""

    def __init__(self) -> None:
        super().__init__(failing=False)
        self.entered, self.release = threading.Event(), threading.Event()

    def write(self, packet: Packet, fps: float) -> None:
        self.entered.set()
        self.release.wait()


def test_a_hung_camera_does_not_keep_another_from_finishing_its_files(
    model_overrides: list[str], engines: SharedEngines
) -> None:
    good, stuck = FaultySink(failing=False), StuckSink()
    cameras = [
        live_camera(name, model_overrides, engines, [sink])
        for name, sink in (("good", good), ("stuck", stuck))
    ]
    running = Running(Pipeline(cameras, queue_size=2))  # one detect thread serves both
    try:
        running.wait_for(lambda: counter(cameras[1], "frames_dropped_slow") >= 3)
        cameras[1].source.stop()  # its end reaches the detect thread first, at a full queue
        time.sleep(1.0)
        running.pipeline.stop()
        running.wait_for(lambda: good.closed, timeout_s=5)
        assert not stuck.closed  # still hung in its write
    finally:
        stuck.release.set()
    assert running.stop() is None
    assert stuck.closed


def test_a_camera_that_keeps_failing_is_unhealthy_with_its_error_the_other_runs(
    model_overrides: list[str], engines: SharedEngines
) -> None:
    metrics = {"good": Metrics(), "bad": Metrics()}
    health = Health(metrics, None, stall_s=30)
    good, bad = FaultySink(failing=False), FaultySink()
    cameras = [
        live_camera(name, model_overrides, engines, [sink], metrics[name], health.listener(name))
        for name, sink in (("good", good), ("bad", bad))
    ]
    running = Running(Pipeline(cameras, restart_initial_s=0.05, restart_max_s=0.2))
    running.wait_for(lambda: counter(cameras[1], "camera_restarts") >= 4 and len(good.frames) > 3)
    ok, body = healthz(health)
    status = health.status()
    assert running.stop() is None
    assert not ok
    assert "bad: unhealthy: failed, restarting: RuntimeError: disk on fire" in body
    assert "good: ok" in body
    assert status.startswith("failed: bad; good: ")


def test_a_slow_camera_does_not_hold_back_another_on_the_same_detect_worker(
    model_overrides: list[str], engines: SharedEngines
) -> None:
    fast, slow = FaultySink(failing=False), FaultySink(failing=False, delay_s=1.0)
    cameras = [
        live_camera(name, model_overrides, engines, [sink])
        for name, sink in (("fast", fast), ("slow", slow))
    ]
    running = Running(Pipeline(cameras, queue_size=2))
    running.wait_for(lambda: len(fast.frames) >= 5 and len(slow.frames) >= 1)
    before, started = len(fast.frames), time.monotonic()
    time.sleep(3.0)
    fps = (len(fast.frames) - before) / (time.monotonic() - started)
    assert running.stop() is None
    assert fps >= 5.0, fps  # 10 FPS captured; tied to the slow one it would be about 1
    assert counter(cameras[1], "frames_dropped_slow") >= 5
    assert counter(cameras[0], "frames_dropped_slow") == 0


class FlakyEngine:
    """The real engine, whose `call`th run (counted from 0) raises when `fails(call)`."""

    def __init__(self, engine: Any, fails: Callable[[int], bool]) -> None:
        self._engine, self.fails, self.calls = engine, fails, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.fails(self.calls - 1):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        result: dict[str, np.ndarray] = self._engine.run(feeds)
        return result


def file_camera(overrides: list[str], fails: Callable[[int], bool], sink: Sink) -> Camera:
    video = data_file("vtest.avi")
    config = load(None, [*overrides, f"source.uri='{video}'", "source.max_frames=8"])
    metrics = Metrics()
    models = load_models(config)
    models.detector.engine = FlakyEngine(models.detector.engine, fails)
    return Camera("cam", FrameSource(config.source, metrics), models, [sink], metrics)


def test_a_failed_detection_call_is_retried_and_no_frame_of_a_file_is_lost(
    model_overrides: list[str],
) -> None:
    sink = FaultySink(failing=False)
    camera = file_camera(model_overrides, lambda call: call < 2, sink)
    Pipeline([camera], restart_initial_s=0.05).run()
    assert sink.frames == list(range(8))
    assert counter(camera, "detect_failures") == 2


def test_detection_failures_with_calls_that_work_between_do_not_end_the_run(
    model_overrides: list[str],
) -> None:
    sink = FaultySink(failing=False)
    camera = file_camera(model_overrides, lambda call: call % 2 == 0, sink)  # every other
    Pipeline([camera], restart_initial_s=0.01).run()  # within restart_max_s (60 s) of each other
    assert sink.frames == list(range(8))
    assert counter(camera, "detect_failures") == 8


def test_a_broken_detector_cuts_a_cameras_backoff_short(
    model_overrides: list[str], engines: SharedEngines
) -> None:
    sink = FaultySink()
    camera = live_camera("cam", model_overrides, engines, [sink])
    broken = threading.Event()
    camera.models.detector.engine = FlakyEngine(
        camera.models.detector.engine, lambda _: broken.is_set()
    )
    # Room for 19 s of frames, so detection goes on while the output stage waits.
    pipeline = Pipeline([camera], queue_size=64, restart_initial_s=0.01, restart_max_s=600)
    running = Running(pipeline)
    running.wait_for(lambda: counter(camera, "camera_restarts") >= 10)  # now waiting 5.12 s
    broken.set()  # fails 5 times in 0.15 s
    started = time.monotonic()
    running.thread.join(timeout=30)
    assert time.monotonic() - started < 2.5
    assert isinstance(running.error, EdgeError)
    assert "detection failed 5 times in a row" in str(running.error)


def test_a_detector_that_keeps_failing_ends_the_run_with_an_error(
    model_overrides: list[str],
) -> None:
    camera = file_camera(model_overrides, lambda _: True, FaultySink(failing=False))
    with pytest.raises(EdgeError, match="detection failed 5 times in a row, last: RuntimeError"):
        Pipeline([camera], restart_initial_s=0.01).run()
    assert counter(camera, "detect_failures") == 5


def test_a_detection_failure_while_stopping_ends_the_run_cleanly(
    model_overrides: list[str], engines: SharedEngines
) -> None:
    """At SIGTERM a failing call is not retried (the backoff is cut short, so 5 attempts would
    come back to back and exit non-zero): its frames go on undetected and the run ends well."""
    camera = live_camera("cam", model_overrides, engines, [FaultySink(failing=False)])
    broken = threading.Event()
    camera.models.detector.engine = FlakyEngine(
        camera.models.detector.engine, lambda _: broken.is_set()
    )
    pipeline = Pipeline([camera], restart_initial_s=5.0)
    running = Running(pipeline)
    running.wait_for(lambda: counter(camera, "frames") >= 2)
    broken.set()
    running.wait_for(lambda: counter(camera, "detect_failures") >= 1)  # now in a 5 s backoff
    pipeline.stop()
    running.thread.join(timeout=30)
    assert not running.thread.is_alive()
    assert running.error is None
