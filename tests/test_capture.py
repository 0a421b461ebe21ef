"""Capture through real GStreamer pipelines: test patterns, the sample video, a lost camera,
an RTSP server on loopback that goes away and comes back."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from benchmarks.processes import free_port
from benchmarks.rtsp_server import start_rtsp_server
from edge.config import SourceConfig
from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.video import capture as capture_module
from edge.video import gst
from edge.video.capture import FrameSource, GstCapture
from edge.video.sources import SINK_NAME, redact
from export.data import data_file


def capture(config: SourceConfig) -> tuple[list[np.ndarray], Metrics]:
    metrics = Metrics()
    return [f.image for f in FrameSource(config, metrics).frames()], metrics


@pytest.mark.parametrize(
    ("fmt", "size", "shape"),
    [("BGR", (321, 241), (241, 321, 3)), ("GRAY8", (0, 0), (480, 640))],
)
def test_test_pattern_in_color_and_gray(
    fmt: str, size: tuple[int, int], shape: tuple[int, ...]
) -> None:
    config = SourceConfig(
        uri="test://", format=fmt, width=size[0], height=size[1], fps=60, max_frames=8
    )
    frames, _ = capture(config)
    assert len(frames) == 8
    assert all(f.shape == shape and f.dtype == np.uint8 for f in frames)
    assert frames[0].std() > 10  # a real picture, not a blank buffer (the odd width has padding)


def test_a_file_is_read_completely_without_drops() -> None:
    frames, _ = capture(SourceConfig(uri=str(data_file("vtest.avi")), format="GRAY8"))
    assert len(frames) == 795
    assert frames[0].shape == (576, 768)


def test_a_file_that_is_not_a_video_is_one_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "clip.mp4"
    bogus.write_text("not a video")
    with pytest.raises(EdgeError, match=r"cannot read file .*clip.mp4"):
        capture(SourceConfig(uri=str(bogus)))


class Collector:
    """Runs a FrameSource on a thread and keeps what it yields."""

    def __init__(self, config: SourceConfig) -> None:
        self.metrics = Metrics()
        self.source = FrameSource(config, self.metrics)
        self.frames: list[np.ndarray] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for frame in self.source.frames():
            self.frames.append(frame.image)

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)

    def reconnects(self) -> int:
        return self.metrics.snapshot().counters.get("reconnects", 0)

    def stop(self) -> None:
        self.source.stop()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def test_an_unplugged_camera_is_retried_with_backoff_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    collector = Collector(
        SourceConfig(uri="/dev/video97", reconnect_initial_s=0.05, reconnect_max_s=0.2)
    )
    collector.wait_for(lambda: collector.reconnects() >= 4)
    collector.stop()
    delays = [
        r.getMessage().rsplit("reconnecting in ", 1)[1]
        for r in caplog.records
        if "reconnecting in" in r.getMessage()
    ]
    assert delays[:4] == ["0.1 s", "0.1 s", "0.2 s", "0.2 s"]  # 0.05, 0.1, 0.2, capped at 0.2
    assert "/dev/video97" in caplog.records[0].getMessage()


def reconnect_delays(records: list[logging.LogRecord]) -> list[float]:
    """The waits before each reopening, from the capture's log, in order."""
    return [r.args[2] for r in records if r.msg.endswith("reconnecting in %.1f s")]  # type: ignore[index]


def test_rtsp_source_survives_a_server_restart(caplog: pytest.LogCaptureFixture) -> None:
    """A camera that is not up yet is waited for with doubling delays; once its frames flow, the
    next loss waits reconnect_initial_s again."""
    caplog.set_level(logging.WARNING, logger="edge.video.capture")
    port = free_port()
    collector = Collector(
        SourceConfig(
            uri=f"rtsp://127.0.0.1:{port}/cam",
            timeout_s=2,
            reconnect_initial_s=0.1,
            reconnect_max_s=0.4,
        )
    )
    server = None
    try:
        collector.wait_for(lambda: collector.reconnects() >= 3)  # nothing listens yet
        server = start_rtsp_server(port)
        collector.wait_for(lambda: len(collector.frames) >= 5)
        before = len(reconnect_delays(caplog.records))
        server.kill()
        server.wait()
        collector.wait_for(lambda: collector.reconnects() >= before + 1)
        server = start_rtsp_server(port)
        frames = len(collector.frames)
        collector.wait_for(lambda: len(collector.frames) >= frames + 5)
    finally:
        collector.stop()
        if server is not None:
            server.kill()
    assert collector.frames[-1].shape == (240, 320, 3)
    delays = reconnect_delays(caplog.records)
    assert delays[:3] == [0.1, 0.2, 0.4]
    assert delays[before] == 0.1


def test_a_pipeline_stuck_in_a_streaming_thread_does_not_hang_close(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping a pipeline waits for its streaming threads; one blocked inside an element (as
    rtspsrc blocks on a server that stopped answering) must not hang a reconnect or a SIGTERM.
    A real pipeline whose streaming thread is held in a pad probe stands in for the network."""
    monkeypatch.setattr(capture_module, "CLOSE_TIMEOUT_S", 0.5)
    description = (
        "videotestsrc is-live=true ! video/x-raw,format=BGR,width=64,height=48 "
        f"! identity name=stuck ! appsink name={SINK_NAME}"
    )
    pipeline = GstCapture(description)
    assert pipeline.read(5.0) is not None
    held, release = threading.Event(), threading.Event()

    def hold(_pad: object, _info: object) -> object:
        held.set()
        release.wait(30)
        return gst.init().PadProbeReturn.OK

    stuck = pipeline._pipeline.get_by_name("stuck").get_static_pad("src")
    stuck.add_probe(gst.init().PadProbeType.BUFFER, hold)
    assert held.wait(5.0)
    started = time.monotonic()
    changes: list[int] = []
    with caplog.at_level(logging.WARNING, logger="edge.video.capture"):
        assert pipeline.close(changes.append) is False
    assert time.monotonic() - started < 2.0
    assert changes == [1]  # counted as still stopping
    assert "did not stop within 0.5 s" in caplog.text
    assert "stuck (" in caplog.text  # the warning names the element that has not stopped
    release.set()  # the pipeline left behind then stops on its own thread
    deadline = time.monotonic() + 5.0
    while changes != [1, -1] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert changes == [1, -1]  # and is counted off when it has


def test_close_returns_once_the_pipeline_stopped() -> None:
    pipeline = GstCapture("videotestsrc num-buffers=5 ! appsink name=" + SINK_NAME)
    assert pipeline.close() is True
    assert pipeline.close() is True  # a second close is a no-op


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://admin:s3cret@10.0.0.2:554/live", "rtsp://***@10.0.0.2:554/live"),
        ("rtspsrc0: rtsp://admin:p@ss@cam/x failed", "rtspsrc0: rtsp://***@cam/x failed"),
        ("rtsp://cam/x?channel=1&password=s3cret", "rtsp://cam/x?channel=1&password=***"),
        ("rtsp://cam/stream@2", "rtsp://cam/stream@2"),  # an @ in the path is no login
        ("/dev/video0", "/dev/video0"),
    ],
)
def test_redact_hides_the_credentials_of_every_uri(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_camera_credentials_reach_no_log_line_and_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A camera that refuses connections is retried (each attempt logged) and a URI that is not
    a source is refused: the password is in none of it."""
    caplog.set_level(logging.DEBUG)
    port = free_port()  # nothing listens there
    collector = Collector(
        SourceConfig(
            uri=f"rtsp://admin:secret@127.0.0.1:{port}/x",
            timeout_s=1,
            reconnect_initial_s=0.05,
            reconnect_max_s=0.1,
        )
    )
    collector.wait_for(lambda: collector.reconnects() >= 2)
    collector.stop()
    with pytest.raises(EdgeError) as refused:
        FrameSource(SourceConfig(uri="http://admin:secret@127.0.0.1/x"), Metrics())
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"rtsp://***@127.0.0.1:{port}/x" in logged  # still says which camera
    assert "secret" not in logged + str(refused.value)
