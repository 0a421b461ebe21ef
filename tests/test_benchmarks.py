"""`python -m benchmarks`: each command as a smoke test on a short input (no timing asserted), the
drift gate, and bad input (malformed ground truth, a video shorter than the warm-up, a missing
model) refused in one line with the results written so far kept."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.drift import load_thresholds, open_pair
from benchmarks.machine import parse_tegrastats
from benchmarks.tracking import load_truth
from edge import paths
from edge.detections import Detections
from edge.errors import EdgeError
from edge.video.files import read_frames
from export.agreement import average_precision, match
from export.data import data_file
from tests.onnx_models import constant_chroma_model


def bench(args: list[str], output: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m benchmarks` with results under `output`."""
    command = [sys.executable, "-m", "benchmarks", *args[:1], "--output", str(output), *args[1:]]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def error_line(done: subprocess.CompletedProcess[str], command: str) -> str:
    """The one-line error a failed command ends with (no traceback before it)."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"benchmarks {command}: error: ")
    return last


@pytest.fixture(scope="module")
def short_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 4 frames of the sample video."""
    path = tmp_path_factory.mktemp("video") / "short.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
    for frame in islice(read_frames(data_file("vtest.avi")), 4):
        writer.write(frame)
    writer.release()
    return path


def test_latency_reports_every_stage(model_overrides: list[str], tmp_path: Path) -> None:
    done = bench(["latency", "--frames", "3", "--warmup", "2", *model_overrides], tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "latency.json").read_text())
    assert data["complete"]
    assert data["machine"]["cores"] >= 1
    result = data["result"]
    # Capture runs ahead of the other stages into the queues: few frames may leave it unobserved.
    for stage in ("detect_pre", "detect_infer", "embed", "track", "colorize", "total",
                  "infer:detector", "infer:embedder", "infer:colorizer"):  # fmt: skip
        assert set(result["stages_ms"][stage]) == {"p50", "p95", "p99", "mean"}
    assert result["frames"] >= 2
    assert result["fps"] > 0
    assert result["rss_mb"] > 0
    assert result["per_frame_over_model_ratio"] > 0
    assert data["backends"]["detector"]["backend"] == "OnnxRuntimeEngine"
    assert data["config"]["source"]["max_frames"] == 5
    assert (tmp_path / "latency.md").read_text().startswith("# Pipeline latency")
    assert (tmp_path / "latency.png").stat().st_size > 0


def test_latency_on_a_video_shorter_than_the_warmup_keeps_partial_results(
    model_overrides: list[str],
    short_video: Path,
    tmp_path: Path,
) -> None:
    args = ["latency", "--source", str(short_video), "--warmup", "10", *model_overrides]
    line = error_line(bench(args, tmp_path), "latency")
    assert "gave 4 frames, too few for 10 warm-up frames" in line
    partial = json.loads((tmp_path / "latency.json").read_text())
    assert not partial["complete"]
    assert partial["counters"]["frames"] == 4


def test_latency_names_the_stage_whose_model_is_missing(
    model_overrides: list[str],
    tmp_path: Path,
) -> None:
    missing = tmp_path / "missing.onnx"
    args = ["latency", "--frames", "2", *model_overrides, f"tracker.reid_model='{missing}'"]
    assert f"embedder model not found: {missing}" in error_line(bench(args, tmp_path), "latency")
    assert "machine" in json.loads((tmp_path / "latency.json").read_text())


def test_drift_measures_each_model_and_gates_on_thresholds(
    detector_320: Path,
    reid_onnx: Path,
    tmp_path: Path,
) -> None:
    colorizer = constant_chroma_model(tmp_path / "colorizer.onnx", (0.1, 0.2))
    limits = tmp_path / "limits.toml"
    limits.write_text("[thresholds]\nembedder_min_cosine = 1.01\ndetector_min_recall = 0.0\n")
    args = ["drift", "--colorizer", str(colorizer), "--detector", str(detector_320),
            "--embedder", str(reid_onnx), "--frames", "2", "--photos", "1",
            "--thresholds", str(limits)]  # fmt: skip
    line = error_line(bench(args, tmp_path), "drift")
    assert "FP16 drift over thresholds: embedder_min_cosine" in line
    assert "detector_min_recall" not in line
    data = json.loads((tmp_path / "drift.json").read_text())
    assert data["colorizer"]["fp16"].startswith("FP16 ONNX")
    assert len(data["colorizer"]["per_image"]) == 3  # one photo, two video frames
    assert 0 <= data["detector"]["recall"] <= 1
    assert 0 <= data["detector"]["map50_vs_fp32"] <= 1
    assert 0.9 < data["embedder"]["mean_cosine"] <= 1.0 + 1e-6
    assert not data["thresholds"]["embedder_min_cosine"]["ok"]
    assert (tmp_path / "drift.png").stat().st_size > 0


def test_drift_refuses_unknown_thresholds_and_missing_models(tmp_path: Path) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text("[thresholds]\ndetector_min_f1 = 0.9\n")
    with pytest.raises(EdgeError, match="unknown threshold 'detector_min_f1'"):
        load_thresholds(limits)
    with pytest.raises(EdgeError, match="detector model not found"):
        open_pair(tmp_path / "none.onnx", "detector")


def _detections(boxes: list[list[float]], scores: list[float]) -> Detections:
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.zeros(len(scores), np.int64),
    )


def test_matching_and_average_precision() -> None:
    reference = _detections([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8])
    found = _detections([[0, 0, 10, 11], [50, 50, 60, 60]], [0.7, 0.95])
    matched, partner, iou = match(reference, found)
    assert matched.tolist() == [True, False]
    assert partner.tolist() == [0, -1]
    assert iou[0] == pytest.approx(100 / 110, rel=1e-5)
    assert average_precision(np.array([0.9, 0.8]), np.array([True, True]), 2) == 1.0
    # A false positive ranked first, then one of two reference boxes found.
    assert average_precision(found.confidence, matched, 2) == pytest.approx(0.25)


def test_tracking_scores_our_tracks_against_ground_truth(
    detector_320: Path,
    reid_onnx: Path,
    short_video: Path,
    tmp_path: Path,
) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("".join(f"{f},1,400,100,40,90,1,-1,-1,-1\n" for f in range(1, 5)))
    args = ["tracking", "--gt", str(gt), "--video", str(short_video), "--detector",
            str(detector_320), "--reid", str(reid_onnx)]  # fmt: skip
    done = bench(args, tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "tracking.json").read_text())["metrics"]
    assert {"mota", "idf1", "num_switches", "num_fragmentations"} <= set(metrics)
    assert (tmp_path / "tracking.mot.txt").is_file()


def test_interval_scores_each_interval_against_interval_0(
    model_overrides: list[str], tmp_path: Path
) -> None:
    args = ["interval", "--frames", "30", "--warmup", "3", "--intervals", "0,1", *model_overrides]
    done = bench(args, tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "interval.json").read_text())
    assert data["complete"]
    runs = data["runs"]
    assert [run["interval"] for run in runs] == [0, 1]
    reference = runs[0]["mot"]
    assert (reference["idf1"], reference["mota"], reference["num_switches"]) == (1.0, 1.0, 0.0)
    for run in runs:
        assert run["frames"] > 0
        assert run["fps"] > 0
        assert run["cpu_s_per_frame"] > 0
        assert 0 <= run["mot"]["idf1"] <= 1
    assert (tmp_path / "interval.md").read_text().startswith("# detector.interval: vtest.avi")


def test_interval_needs_interval_0_first(tmp_path: Path) -> None:
    line = error_line(bench(["interval", "--intervals", "1,2"], tmp_path), "interval")
    assert "distinct intervals from 0 (the reference)" in line


def test_tracking_scores_reproduce_motmetrics_published_tud_campus_result(tmp_path: Path) -> None:
    folder = paths.DATA / "motmetrics" / "TUD-Campus"
    args = ["tracking", "--gt", str(folder / "gt.txt"), "--tracks", str(folder / "test.txt")]
    done = bench(args, tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "tracking.json").read_text())["metrics"]
    assert metrics["mota"] == pytest.approx(0.526, abs=1e-3)  # motmetrics' README: 52.6%
    assert metrics["idf1"] == pytest.approx(0.558, abs=1e-3)  # and 55.8%


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("frame id left top\n", "is not MOTChallenge ground truth"),
        ("1,1,10,10,5\n", "has 5 columns"),
        ("0,1,10,10,5,5\n", "frames must be whole numbers from 1"),
        ("", "is empty"),
    ],
)
def test_bad_ground_truth_is_refused_in_one_line(
    content: str, problem: str, tmp_path: Path
) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text(content)
    with pytest.raises(EdgeError, match=problem):
        load_truth(gt)


def test_bad_ground_truth_from_the_command_line(tmp_path: Path) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("frame id left top\n")
    args = ["tracking", "--gt", str(gt), "--tracks", str(gt)]
    assert "is not MOTChallenge ground truth" in error_line(bench(args, tmp_path), "tracking")


@pytest.fixture(scope="session")
def keras_colorizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained Keras chroma model, for the naive side's Keras `predict` (the trained
    one is `make models`' and does not exist in a fresh checkout)."""
    from export.colorizer_models import build

    path = tmp_path_factory.mktemp("keras") / "colorizer_chroma.keras"
    build("chroma").save(path)
    return path


def test_compare_runs_both_pipelines(
    model_overrides: list[str], keras_colorizer: Path, tmp_path: Path
) -> None:
    args = ["compare", "--frames", "2", "--warmup", "1", "--keras", str(keras_colorizer),
            *model_overrides]  # fmt: skip
    done = bench(args, tmp_path)
    assert done.returncode == 0, done.stderr
    pipelines = json.loads((tmp_path / "compare.json").read_text())["pipelines"]
    assert set(pipelines) == {"naive", "ours"}
    assert pipelines["naive"]["speedup"] == 1.0
    assert pipelines["ours"]["fps"] > 0


def test_tegrastats_line_parsing() -> None:
    line = "RAM 2931/7620MB (lfb 2x4MB) SWAP 0/3810MB CPU [3%@1510,1%@1510] GR3D_FREQ 45% cpu@40C"
    assert parse_tegrastats(line) == {"gpu_percent": 45.0, "ram_used_mb": 2931.0}
    assert parse_tegrastats("no numbers here") == {}


def test_mqtt_measures_delivery_and_the_frame_rate_with_the_broker_away(
    model_overrides: list[str], tmp_path: Path
) -> None:
    args = ["mqtt", "--warmup", "20", "--window-s", "1", "--outage-s", "1", *model_overrides,
            "mqtt.reconnect_initial_s=0.2", "mqtt.reconnect_max_s=0.5"]  # fmt: skip
    done = bench(args, tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "mqtt.json").read_text())["result"]
    assert list(result["phases"]) == ["up", "away", "back"]
    assert all(phase["frames"] > 0 for phase in result["phases"].values())
    assert result["away_over_up"] > 0
    assert result["messages"] >= result["events_written"] >= 1
    assert result["lost"] == 0
    assert 0 < result["delivery_ms"]["p50"] <= result["capture_to_arrival_ms"]["p50"]
    assert "broker away / up" in (tmp_path / "mqtt.md").read_text()


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (
            ["--host", "localhost", "--port", "1", "--outage-s", "0"],
            "no MQTT broker at localhost:1",
        ),
        (["--host", "localhost"], "--outage-s stops the broker mid-run"),
    ],
)
def test_mqtt_bad_broker_arguments_are_one_line(
    args: list[str], problem: str, tmp_path: Path
) -> None:
    assert problem in error_line(bench(["mqtt", *args], tmp_path), "mqtt")


def test_multicam_compares_one_process_with_one_per_camera(
    model_overrides: list[str], tmp_path: Path
) -> None:
    args = ["multicam", "--cameras", "2", "--warmup-s", "1", "--seconds", "3", *model_overrides]
    done = bench(args, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((tmp_path / "multicam.json").read_text())
    assert data["complete"]
    (result,) = data["results"]
    for run in (result["one_process"], result["processes"]):
        assert set(run["fps"]) == {"cam0", "cam1"}
        assert all(fps > 0 for fps in run["fps"].values())
        assert run["rss_mib"] > 0
        assert run["cpu_cores"] > 0
        assert 0 < run["total_p50_ms"] <= run["total_p95_ms"]
        assert run["infer_p50_ms"] > 0
    markdown = (tmp_path / "multicam.md").read_text()
    assert "| 2 | one process |" in markdown
    assert "| 2 | a process per camera |" in markdown


def test_web_measures_viewers_and_the_page(model_overrides: list[str], tmp_path: Path) -> None:
    args = ["web", "--fps", "5", "--viewers", "0", "1", "--window-s", "2", "--rounds", "1",
            "--warmup", "3", "--page-s", "3", *model_overrides]  # fmt: skip
    done = bench(args, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "web.json").read_text())["result"]
    assert set(result["viewers"]) == {"0", "1"}
    assert all(row["fps"] > 0 and row["cpu_ms_per_frame"] > 0 for row in result["viewers"].values())
    assert result["viewers"]["1"]["viewer_fps"] > 0, "the viewer was sent no frame"
    assert result["page"]["page_fps"] > 0, "the page drew no frame"
    assert "| 1 |" in (tmp_path / "web.md").read_text()
