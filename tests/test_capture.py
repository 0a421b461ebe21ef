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
from edge.video.capture import FrameSource
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


def test_rtsp_source_survives_a_server_restart() -> None:
    port = free_port()
    server = start_rtsp_server(port)
    collector = Collector(
        SourceConfig(
            uri=f"rtsp://127.0.0.1:{port}/cam",
            timeout_s=2,
            reconnect_initial_s=0.2,
            reconnect_max_s=1,
        )
    )
    try:
        collector.wait_for(lambda: len(collector.frames) >= 5)
        server.kill()
        server.wait()
        collector.wait_for(lambda: collector.reconnects() >= 1)
        before = len(collector.frames)
        server = start_rtsp_server(port)
        collector.wait_for(lambda: len(collector.frames) >= before + 5)
    finally:
        collector.stop()
        server.kill()
    assert collector.frames[-1].shape == (240, 320, 3)
