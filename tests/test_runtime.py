"""`python -m edge run` end to end with real GStreamer, real ONNX models and the sample video.

Models: the offline YOLOv8 exported at 320×320 (a quarter of the 640 model's work, so the full
795-frame video runs in CI time), the real ReID embedder, and a tiny constant-chroma colorizer
(tests/onnx_models.py): the trained colorizer is `make demo`'s, not the tests'.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.processes import free_port, rss_kib
from benchmarks.rtsp_server import start_rtsp_server
from edge.config import load
from edge.errors import EdgeError
from edge.metrics import Metrics
from edge.pipeline import Camera, Pipeline
from edge.runtime import DeviceOutputs, load_models, open_sinks, run
from edge.video import gst
from edge.video.capture import FrameSource
from export.data import data_file
from tests.recorded import recorded_frames, run_file, summary
from tests.test_recordings import close, feed


def run_edge(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", "run", *args],
        capture_output=True,
        text=True,
        timeout=900,
        **kwargs,
    )  # type: ignore[call-overload]


def start_edge(args: list[str]) -> subprocess.Popen[str]:
    """`python -m edge run ARGS` in the background, its log readable from `stderr`."""
    return subprocess.Popen(
        [sys.executable, "-m", "edge", "run", *args], stderr=subprocess.PIPE, text=True
    )


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sample_video_through_the_whole_pipeline(
    model_overrides: list[str], tmp_path: Path
) -> None:
    result = run_edge(
        [
            "--source",
            str(data_file("vtest.avi")),
            "source.format='GRAY8'",
            f"output.dir='{tmp_path}'",
            *model_overrides,
        ]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert recorded_frames(tmp_path) == (795, (576, 768))  # 79.5 s of video: two segments
    events = read_jsonl(tmp_path / "events.jsonl")
    mot = run_file(tmp_path, "tracks.mot.txt")
    mot_ids = {int(line.split(",")[1]) for line in mot.read_text().splitlines()}
    started = {e["track_id"] for e in events if e["event"] == "started"}
    ended = {e["track_id"] for e in events if e["event"] == "ended"}
    assert len(mot_ids) >= 10  # the walkers of the sample video
    assert started == ended == mot_ids
    done = summary(tmp_path)
    assert done["frames"] == 795
    assert done["counters"].get("dropped_frames", 0) == 0
    assert {e["run"] for e in events} == {done["run"]} == {mot.parent.name}
    assert len(list((tmp_path / "snapshots" / "cam0").glob("cam0_*.jpg"))) == len(started)


@pytest.mark.parametrize("fmt", ["BGR", "GRAY8"])
def test_test_pattern_runs_for_a_bounded_number_of_frames(
    model_overrides: list[str], tmp_path: Path, fmt: str
) -> None:
    result = run_edge(
        [
            "--source",
            "test://",
            f"source.format='{fmt}'",
            "source.max_frames=12",
            "source.width=320",
            "source.height=240",
            "colorizer.mode='frame'",
            f"output.dir='{tmp_path}'",
            *model_overrides,
        ]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    done = summary(tmp_path)
    assert done["counters"]["frames_captured"] == 12
    assert 1 <= done["frames"] <= 12  # a live source drops frames the pipeline cannot take
    assert recorded_frames(tmp_path) == (done["frames"], (240, 320))


def test_sigterm_mid_run_leaves_a_playable_video_and_complete_events(
    model_overrides: list[str], tmp_path: Path
) -> None:
    process = start_edge(
        [
            "--source",
            str(data_file("vtest.avi")),
            f"output.dir='{tmp_path}'",
            *model_overrides,
        ]
    )
    deadline = time.monotonic() + 300
    while not any(mot.stat().st_size for mot in tmp_path.glob("runs/*/tracks.mot.txt")):
        assert time.monotonic() < deadline
        assert process.poll() is None
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-2000:]
    assert time.monotonic() - signalled < 15
    done = summary(tmp_path)
    assert 0 < done["frames"] < 795
    assert recorded_frames(tmp_path) == (done["frames"], (576, 768))
    events = read_jsonl(tmp_path / "events.jsonl")  # every line parses
    started = {e["track_id"] for e in events if e["event"] == "started"}
    assert started
    assert started == {e["track_id"] for e in events if e["event"] == "ended"}


def test_rtsp_source_restart_keeps_the_pipeline_processing(
    model_overrides: list[str], tmp_path: Path
) -> None:
    port = free_port()
    server = start_rtsp_server(port)
    config = load(
        None,
        [
            *model_overrides,
            f"source.uri='rtsp://127.0.0.1:{port}/cam'",
            "source.timeout_s=2",
            "source.reconnect_initial_s=0.2",
            "source.reconnect_max_s=1",
            f"output.dir='{tmp_path}'",
        ],
    )
    metrics = Metrics()
    source = FrameSource(config.source, metrics)
    models = load_models(config)
    sinks = open_sinks(config, models.detector.names, metrics, DeviceOutputs(config))
    pipeline = Pipeline([Camera("cam", source, models, sinks, metrics)])
    thread = threading.Thread(target=pipeline.run, daemon=True)
    thread.start()

    def wait_for(condition: Callable[[], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            assert thread.is_alive(), "pipeline stopped"
            time.sleep(0.1)

    try:
        wait_for(lambda: pipeline.frames_done >= 5)
        server.kill()
        server.wait()
        wait_for(lambda: metrics.snapshot().counters.get("reconnects", 0) >= 1)
        before = pipeline.frames_done
        server = start_rtsp_server(port)
        wait_for(lambda: pipeline.frames_done >= before + 5)
    finally:
        pipeline.stop()
        thread.join(timeout=30)
        server.kill()
    assert not thread.is_alive()
    assert recorded_frames(tmp_path)[0] == pipeline.frames_done


def test_rtsp_output_serves_the_annotated_stream(
    model_overrides: list[str], tmp_path: Path
) -> None:
    port = free_port()
    process = start_edge(
        [
            "--source",
            "test://",
            "source.width=320",
            "source.height=240",
            f"output.rtsp_port={port}",
            "output.video=''",
            f"output.dir='{tmp_path}'",
            *model_overrides,
        ]
    )
    try:
        Gst = gst.init()
        received = 0
        deadline = time.monotonic() + 120
        while received == 0 and time.monotonic() < deadline:
            client = Gst.parse_launch(
                f"rtspsrc location=rtsp://127.0.0.1:{port}/edge latency=0 ! decodebin ! "
                "videoconvert ! video/x-raw,format=BGR ! appsink name=sink sync=false"
            )
            client.set_state(Gst.State.PLAYING)
            sample = client.get_by_name("sink").emit("try-pull-sample", 5 * Gst.SECOND)
            if sample is not None:
                image, _, _ = gst.sample_to_array(sample)
                assert image.shape == (240, 320, 3)
                received += 1
            client.set_state(Gst.State.NULL)
        assert received, "no frame over RTSP"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0


@pytest.mark.slow
def test_memory_stays_flat_over_5000_frames(model_overrides: list[str], tmp_path: Path) -> None:
    """5,000 frames of test:// processed: resident memory after warm-up grows < 5%."""
    settings = ["source.width=320", "source.height=240", "source.fps=30", "output.video=''"]
    process = start_edge(
        [
            "--source",
            "test://",
            *settings,
            f"output.dir='{tmp_path}'",
            *model_overrides,
            "pipeline.log_every_s=1",
        ]
    )
    processed, samples = 0, []
    assert process.stderr is not None
    for line in process.stderr:
        if " frames=" in line:
            processed = int(line.split(" frames=")[1].split()[0])
            if processed >= 500:  # warm-up: models loaded, buffers and caches allocated
                samples.append(rss_kib(process.pid))
            if processed >= 5000:
                process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    assert processed >= 5000
    warm, peak = samples[0], max(samples)
    assert peak < warm * 1.05, f"RSS grew from {warm} KiB to {peak} KiB"


def test_json_logs_are_one_object_per_line(model_overrides: list[str], tmp_path: Path) -> None:
    args = ["--source", "test://", "source.max_frames=3", "source.width=160", "source.height=120"]
    result = subprocess.run(
        [sys.executable, "-m", "edge", "--log-format", "json", "run", *args,
         f"output.dir='{tmp_path}'", *model_overrides],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"time", "level", "logger", "thread", "message"} <= set(records[-1])
    assert records[-1]["message"].startswith("done: frames=")


def test_a_wrong_output_dir_is_reported_before_any_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))  # as under the unit
    (tmp_path / "file").write_text("")  # output.dir beneath a file: never writable
    config = load(
        None,
        [
            "source.uri='test://'",
            f"output.dir='{tmp_path}/file/outputs'",
            f"detector.model='{tmp_path}/missing.onnx'",  # would fail too, were it loaded first
        ],
    )
    with pytest.raises(EdgeError, match=r"file/outputs is not writable .* set output\.dir inside"):
        run(config)


@pytest.mark.parametrize("fault", ["port in use", "password file missing"])
def test_rtsp_that_cannot_start_is_degraded_and_the_camera_records(
    tmp_path: Path, fault: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1] if fault == "port in use" else free_port()
        login = ["output.rtsp_user='viewer'", f"output.rtsp_password_file='{tmp_path}/none'"]
        config = load(
            None,
            [
                f"output.dir='{tmp_path}'",
                f"output.rtsp_port={port}",
                "output.bitrate_kbps=300",
                *(login if fault == "password file missing" else []),
            ],
        )
        device = DeviceOutputs(config)
    assert device.rtsp is None
    reason = device.side_outputs.degraded()["rtsp"]
    assert "\n" not in reason
    assert reason.endswith("; RTSP is off")
    assert (f"127.0.0.1:{port}" if fault == "port in use" else f"{tmp_path}/none") in reason
    sinks = open_sinks(config, ("Normal", "Fall"), Metrics(), device)
    feed(sinks, 0, 12)
    close(sinks)
    device.close()
    assert recorded_frames(tmp_path) == (12, (120, 160))


def test_a_model_that_cannot_load_stops_with_one_line(tmp_path: Path) -> None:
    # GStreamer is loaded by then (the source is checked first): its libunwind made ONNX
    # Runtime's C++ exception abort the process with no message.
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not a model")
    video = data_file("vtest.avi")
    result = run_edge(
        ["--source", str(video), f"detector.model='{model}'", f"output.dir='{tmp_path}/out'"]
    )
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"edge run: error: cannot load ONNX model {model}: ")
    assert not (tmp_path / "out").exists()


def test_a_model_failing_for_one_camera_leaves_no_run_files(
    model_overrides: list[str], reid_onnx: Path, tmp_path: Path
) -> None:
    video = data_file("vtest.avi")
    config = tmp_path / "cameras.toml"
    config.write_text(
        f'[[cameras]]\nname = "a"\nuri = "{video}"\n'
        f'[[cameras]]\nname = "b"\nuri = "{video}"\nformat = "GRAY8"\n'
        f'colorizer_model = "{reid_onnx}"\n'  # loads, but is no colorizer
    )
    overrides = [*model_overrides, f"output.dir='{tmp_path}/out'"]
    with pytest.raises(EdgeError, match="is not a chroma colorizer"):
        run(load(config, overrides))
    assert not (tmp_path / "out").exists()
