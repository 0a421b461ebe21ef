"""The `track` command end to end, its outputs, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge.__main__ import COMMANDS
from edge.cli import main
from edge.errors import EdgeError
from edge.outputs.events import EventSink
from edge.outputs.mot import MotSink
from edge.outputs.records import EventRecords
from edge.outputs.run import Run
from edge.types import Frame, Packet, Track, TrackEvent, TrackUpdate
from edge.utc import parse_time
from export.data import data_file
from tests.recorded import run_file

ROOT = Path(__file__).resolve().parent.parent
FRAMES = 15
# Runs the whole command in a fresh interpreter, then reports which heavy frameworks it loaded.
PROBE = """
import json, sys
from edge.__main__ import COMMANDS
from edge.cli import main
status = main("edge", "", COMMANDS, sys.argv[1:])
heavy = [m for m in ("torch", "tensorflow", "ultralytics") if m in sys.modules]
print(json.dumps({"status": status, "heavy": heavy}))
"""


def _track_args(detector: Path, reid: Path, out: Path, video: Path) -> list[str]:
    return [
        "track", str(video), "--detector", str(detector), "--reid", str(reid),
        "--max-frames", str(FRAMES), "--events", str(out / "events.jsonl"),
        "--mot", str(out / "tracks.txt"),
    ]  # fmt: skip


def test_full_run_writes_both_files_without_torch(
    tmp_path: Path,
    detector_onnx: Path,
    reid_onnx: Path,
) -> None:
    args = _track_args(detector_onnx, reid_onnx, tmp_path, data_file("vtest.avi"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"status": 0, "heavy": []}

    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert {e["event"] for e in events} >= {"started", "ended"}
    assert {e["class"] for e in events} == {"Normal"}
    started = {e["track_id"] for e in events if e["event"] == "started"}
    assert started == {e["track_id"] for e in events if e["event"] == "ended"}
    rows = np.loadtxt(tmp_path / "tracks.txt", delimiter=",", ndmin=2)
    assert rows.shape[1] == 10
    assert rows[:, 0].min() >= 1
    assert rows[:, 0].max() <= FRAMES
    assert set(rows[:, 1].astype(int)) == started
    assert (rows[:, 4:6] > 0).all()


@pytest.mark.parametrize(
    ("video", "message"),
    [
        ("missing.avi", "source file not found"),
        ("garbage.avi", "cannot read file"),
    ],
)
def test_unreadable_video_is_one_line_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    detector_onnx: Path,
    reid_onnx: Path,
    video: str,
    message: str,
) -> None:
    (tmp_path / "garbage.avi").write_bytes(b"this is not a video\n" * 100)
    args = _track_args(detector_onnx, reid_onnx, tmp_path, tmp_path / video)
    assert main("edge", "", COMMANDS, args) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("edge track: error: ")
    assert message in error


def test_unknown_class_is_one_line_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    detector_onnx: Path,
    reid_onnx: Path,
) -> None:
    args = _track_args(detector_onnx, reid_onnx, tmp_path, data_file("vtest.avi"))
    assert main("edge", "", COMMANDS, [*args, "--classes", "person"]) == 2
    assert "class 'person' is not in" in capsys.readouterr().err


def _track(track_id: int, frame_box: tuple[float, float, float, float]) -> Track:
    return Track(track_id, 1, 0.8765, frame_box, age=5, hits=4, time_since_update=0)


def test_writers_format(tmp_path: Path) -> None:
    track = _track(7, (10.0, 20.0, 40.5, 80.0))
    captured = time.monotonic()
    frame = Frame(0, np.zeros((4, 4, 3), np.uint8), captured=captured, pts_s=None, fps=10.0)
    packet = Packet(frame, update=TrackUpdate(0, [track], [TrackEvent(12, "started", track)]))
    run = Run("20250601T120305Z-3fa1", "cam0", tmp_path)
    events = EventSink(tmp_path / "e.jsonl", EventRecords(run, ["Normal", "Fall"]))
    mot = MotSink(tmp_path / "m.txt")
    for sink in (events, mot):
        sink.write(packet, fps=3.0)
        sink.close([])
    record = json.loads((tmp_path / "e.jsonl").read_text())
    assert abs(parse_time(record.pop("utc")) - (time.time() - time.monotonic() + captured)) < 0.01
    assert record == {
        "id": "20250601T120305Z-3fa1/1", "run": "20250601T120305Z-3fa1", "camera": "cam0",
        "frame": 12, "time_s": 1.2, "event": "started", "track_id": 7, "class": "Fall",
        "class_id": 1, "confidence": 0.8765, "box": [10.0, 20.0, 40.5, 80.0], "age": 5, "hits": 4,
    }  # fmt: skip
    assert (tmp_path / "m.txt").read_text() == "1,7,10.00,20.00,30.50,60.00,0.8765,-1,-1,-1\n"


def test_unwritable_output_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(EdgeError, match="cannot write"):
        MotSink(tmp_path / "file" / "m.txt")


def test_track_and_run_write_the_same_mot_rows(
    tmp_path: Path, detector_320: Path, reid_onnx: Path, model_overrides: list[str]
) -> None:
    """`edge track` and `edge run` share one detection + tracking path and one set of defaults."""
    video = str(data_file("vtest.avi"))
    run_args = ["run", "--source", video, "source.max_frames=40", "colorizer.mode='frame'",
                f"output.dir='{tmp_path / 'run'}'", *model_overrides]  # fmt: skip
    assert main("edge", "", COMMANDS, run_args) == 0
    track_args = _track_args(detector_320, reid_onnx, tmp_path / "track", Path(video))
    track_args[track_args.index("--max-frames") + 1] = "40"
    track_args += ["--high-confidence", "0.25", "--birth-confidence", "0.25"]  # as model_overrides
    assert main("edge", "", COMMANDS, track_args) == 0
    run_rows = run_file(tmp_path / "run", "tracks.mot.txt").read_text().splitlines()
    track_rows = (tmp_path / "track" / "tracks.txt").read_text().splitlines()
    assert len(run_rows) >= 10  # walkers confirmed and tracked
    assert track_rows == run_rows
