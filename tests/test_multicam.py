"""Several cameras in one process: the batching collector, a dead camera isolated, results
unchanged by batching, files kept apart. Real GStreamer (loopback RTSP servers of the sample
video, `test://`), real ONNX models (the detector exported with a dynamic batch)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.processes import free_port
from benchmarks.rtsp_server import start_rtsp_server
from edge.config import PipelineConfig
from edge.pipeline import Captured
from edge.runtime import model_threads
from edge.types import Frame, Packet
from export.data import data_file
from tests.recorded import run_file

ROOT = Path(__file__).resolve().parent.parent


def packet(index: int) -> Packet:
    return Packet(Frame(index, np.zeros((4, 4, 3), np.uint8), time.monotonic(), None, 10.0))


# --- the collector ------------------------------------------------------------------------------


def test_a_full_batch_goes_at_once_one_frame_per_camera() -> None:
    captured = Captured([4, 4, 4])
    for camera in (0, 1, 2):
        captured.put(camera, packet(camera), live=False)
    captured.put(0, packet(10), live=False)
    started = time.monotonic()
    taken = captured.take([0, 1, 2], most=3, timeout_s=5.0)
    assert time.monotonic() - started < 1.0
    assert [(camera, p.frame.index if p else None) for camera, p in taken] == [
        (0, 0),
        (1, 1),
        (2, 2),
    ]


def test_a_silent_camera_holds_the_batch_only_until_the_timeout() -> None:
    captured = Captured([4, 4, 4])
    captured.put(0, packet(0), live=False)
    captured.put(2, packet(2), live=False)
    started = time.monotonic()
    taken = captured.take([0, 1, 2], most=3, timeout_s=0.2)
    waited = time.monotonic() - started
    assert [camera for camera, _ in taken] == [0, 2]
    assert 0.15 <= waited < 2.0


def test_batches_smaller_than_the_cameras_start_where_asked() -> None:
    captured = Captured([4, 4, 4])
    for camera in (0, 1, 2):
        captured.put(camera, packet(camera), live=False)
    assert [camera for camera, _ in captured.take([1, 2, 0], most=2, timeout_s=1.0)] == [1, 2]
    assert [camera for camera, _ in captured.take([2, 0, 1], most=2, timeout_s=0.1)] == [0]


def test_a_live_camera_keeps_only_its_newest_frame_a_file_waits() -> None:
    captured = Captured([1, 1])
    assert not captured.put(0, packet(1), live=True)
    assert captured.put(0, packet(2), live=True)  # the older frame is dropped
    captured.put(1, packet(1), live=False)
    later = threading.Thread(target=captured.put, args=(1, packet(2), False), daemon=True)
    later.start()
    later.join(0.2)
    assert later.is_alive()  # a file's capture blocks while its frame waits
    taken = captured.take([0, 1], most=2, timeout_s=1.0)
    assert [(c, p.frame.index if p else None) for c, p in taken] == [(0, 2), (1, 1)]
    later.join(2.0)
    assert not later.is_alive()


# --- whole runs ---------------------------------------------------------------------------------


def edge_command(config: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "edge", "run", "--config", str(config), *overrides]


def edge_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def mot_rows(folder: Path) -> np.ndarray:
    return np.loadtxt(run_file(folder, "tracks.mot.txt"), delimiter=",", ndmin=2)


FILE_OUTPUTS = """
[colorizer]
mode = "off"
[output]
dir = "{dir}"
video = ""
snapshots = false
"""


def test_batching_and_detect_workers_do_not_change_a_cameras_tracks(
    batch_model_overrides: list[str], tmp_path: Path
) -> None:
    """The sample video alone, then among four cameras: in one batch of 4 (one detect worker),
    and one frame per call on two detect workers (cameras 0, 2 on one; 1, 3 on the other)."""
    video = data_file("vtest.avi")
    alone = tmp_path / "alone.toml"
    alone.write_text(
        FILE_OUTPUTS.format(dir=tmp_path / "alone")
        + f'[source]\nuri = "{video}"\nname = "walkers"\nmax_frames = 120\n'
    )
    cameras = "".join(
        f'[[cameras]]\nname = "{name}"\nuri = "{video}"\nmax_frames = 120\n{size}'
        for name, size in [
            ("walkers", ""),
            ("small", "width = 320\nheight = 240\n"),
            ("wide", "width = 640\nheight = 360\n"),
            ("gray", 'format = "GRAY8"\n'),
        ]
    )
    runs = {"alone": (alone, [])}
    for label, batch_size, workers in [("batched", 0, 1), ("workers", 1, 2)]:
        config = tmp_path / f"{label}.toml"
        config.write_text(FILE_OUTPUTS.format(dir=tmp_path / label) + cameras)
        pipeline = [f"pipeline.batch_size={batch_size}", f"pipeline.detect_workers={workers}"]
        runs[label] = (config, pipeline)
    for config, pipeline in runs.values():
        done = subprocess.run(
            edge_command(config, [*batch_model_overrides, *pipeline]),
            cwd=ROOT,
            env=edge_env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    reference = mot_rows(tmp_path / "alone")
    assert len(reference) > 100
    for label, batch_size in [("batched", 4), ("workers", 1)]:
        walkers = tmp_path / label / "walkers"
        summary = json.loads(run_file(walkers, "summary.json").read_text())
        assert summary["frames"] == 120
        assert summary["gauges"]["batch_size"] == batch_size  # frames per detection call
        mine = mot_rows(walkers)
        assert mine.shape == reference.shape
        np.testing.assert_array_equal(mine[:, :2], reference[:, :2])  # frames and track ids
        np.testing.assert_allclose(mine[:, 2:6], reference[:, 2:6], atol=1e-3)  # boxes, px
        for name in ("small", "wide", "gray"):  # each camera its own folder, tracks and events
            events = (tmp_path / label / name / "events.jsonl").read_text().splitlines()
            assert events
            assert {json.loads(line)["camera"] for line in events} == {name}


def scrape(port: int) -> tuple[dict[str, dict[str, float]], tuple[int, str]]:
    """Each camera's counters from /metrics, and /healthz's status and body."""
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    counters: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            camera = sample.labels.get("camera")
            if camera and sample.name.endswith("_total"):
                counters.setdefault(camera, {})[sample.name] = sample.value
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
            health = (response.status, response.read().decode())
    except urllib.error.HTTPError as error:
        health = (error.code, error.read().decode())
    return counters, health


def test_four_cameras_one_rtsp_server_killed_only_that_camera_stops(
    batch_model_overrides: list[str], tmp_path: Path
) -> None:
    video = data_file("vtest.avi")
    ports = {"north": free_port(), "south": free_port()}
    servers = {name: start_rtsp_server(port, video) for name, port in ports.items()}
    metrics_port = free_port()
    rtsp = "timeout_s = 2.0\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0\n"
    config = tmp_path / "cameras.toml"
    config.write_text(
        f'[output]\ndir = "{tmp_path}"\nvideo = ""\n[colorizer]\nmode = "off"\n'
        f"[health]\nmetrics_port = {metrics_port}\nstall_s = 3.0\n"
        + "".join(
            f'[[cameras]]\nname = "{name}"\nuri = "rtsp://127.0.0.1:{port}/cam"\n{rtsp}'
            for name, port in ports.items()
        )
        + '[[cameras]]\nname = "ball"\nuri = "test://"\nwidth = 320\nheight = 240\nfps = 10\n'
        + '[[cameras]]\nname = "bars"\nuri = "test://"\npattern = "smpte"\nwidth = 320\n'
        + "height = 240\nfps = 10\n"
    )
    edge = subprocess.Popen(
        edge_command(config, batch_model_overrides),
        cwd=ROOT,
        env=edge_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    others = ("south", "ball", "bars")
    cameras = ("north", *others)

    def frames() -> dict[str, float]:
        counters = scrape(metrics_port)[0]
        return {name: counters.get(name, {}).get("edge_frames_total", 0) for name in cameras}

    def tracks_started(camera: str) -> float:
        return scrape(metrics_port)[0][camera].get("edge_tracks_started_total", 0)

    def wait_for(condition: Callable[[], bool], timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert edge.poll() is None, "the runtime exited"
            try:
                if condition():
                    return
            except (urllib.error.URLError, ConnectionError):
                pass  # the endpoint is not up yet
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.5)

    try:
        wait_for(lambda: min(frames().values()) >= 5)
        # The sample video's walkers are being tracked on both RTSP cameras
        wait_for(lambda: min(tracks_started(name) for name in ports) >= 1)
        servers["north"].kill()
        servers["north"].wait()
        killed = frames()
        outage_counts = [killed]
        # While north is away (and reconnecting), every other camera keeps producing frames.
        wait_for(lambda: scrape(metrics_port)[0]["north"]["edge_reconnects_total"] >= 1)
        for _ in range(4):
            time.sleep(2.0)
            outage_counts.append(frames())
        for before, after in pairwise(outage_counts):
            for name in others:
                assert after[name] > before[name], (name, outage_counts)
        assert outage_counts[-1]["north"] - outage_counts[1]["north"] <= 1
        status, body = scrape(metrics_port)[1]
        assert status == 503
        assert "north: unhealthy: stalled" in body
        assert all(f"{name}: ok" in body for name in others), body
        servers["north"] = start_rtsp_server(ports["north"], video)
        back = frames()["north"]
        wait_for(lambda: frames()["north"] >= back + 5)
        edge.send_signal(signal.SIGTERM)
        _, log = edge.communicate(timeout=120)
        assert edge.returncode == 0, log[-2000:]
    finally:
        if edge.poll() is None:
            edge.kill()
        for server in servers.values():
            server.kill()
    for name in cameras:  # files per camera, nothing of one in another's
        folder = tmp_path / name
        assert run_file(folder, "tracks.mot.txt").is_file()
        summary = json.loads(run_file(folder, "summary.json").read_text())
        assert summary["camera"] == name
        records = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
        assert {r["camera"] for r in records} <= {name}
    for name in ports:  # the sample video's walkers are tracked on both RTSP cameras
        records = (tmp_path / name / "events.jsonl").read_text().splitlines()
        assert any(json.loads(line)["event"] == "started" for line in records), name
        assert len(mot_rows(tmp_path / name)) > 0


@pytest.fixture(scope="module")
def batch_model_overrides(model_overrides: list[str], detector_320: Path) -> list[str]:
    """The test models, with a detector that takes a dynamic batch."""
    from edge.engines import open_engine

    with open_engine(detector_320) as engine:
        assert engine.inputs[0].shape[0] is None, "the test detector must have a dynamic batch"
    return model_overrides


def test_model_threads_share_the_cores_among_detect_workers() -> None:
    cores = os.cpu_count() or 1
    assert model_threads(PipelineConfig(), cameras=4) == 0  # ONNX Runtime's default
    assert model_threads(PipelineConfig(detect_workers=2), cameras=4) == max(1, cores // 2)
    assert model_threads(PipelineConfig(detect_workers=2), cameras=1) == 0  # one worker is used
    assert model_threads(PipelineConfig(detect_workers=2, threads=3), cameras=4) == 3
