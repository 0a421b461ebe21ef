"""detector.interval: detect on one frame in N+1, the tracker's prediction fills the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.detections import Detections
from edge.models.tracker import Tracker
from export.data import data_file
from tests.recorded import run_file

ROOT = Path(__file__).resolve().parent.parent


def walker(frame: int) -> Detections:
    """One person walking right at 4 px per frame, with a fixed appearance."""
    x = 100.0 + 4 * frame
    embedding = np.zeros((1, 8), np.float32)
    embedding[0, 0] = 1.0
    return Detections(
        np.array([[x, 50, x + 40, 150]], np.float32),
        np.array([0.9], np.float32),
        np.array([0], np.int64),
        {"embedding": embedding},
    )


def test_tracks_coast_through_skipped_frames_without_new_ids() -> None:
    tracker = Tracker(max_age=30, n_init=3)
    ids, events = set(), []
    for frame in range(60):
        update = tracker.update(walker(frame)) if frame % 3 == 0 else tracker.coast()
        events += [(e.frame, e.kind) for e in update.events]
        ids.update(t.track_id for t in update.tracks)
        if frame >= 9:  # confirmed at the third detected frame (frame 6)
            (track,) = update.tracks
            assert track.xyxy[0] == pytest.approx(100.0 + 4 * frame, abs=6.0)  # predicted motion
    assert ids == {1}
    assert events == [(6, "started")]  # no lost/ended while the detector skips frames


def test_run_detects_one_frame_in_three_and_writes_every_frame(
    model_overrides: list[str], tmp_path: Path
) -> None:
    args = ["run", "--source", str(data_file("vtest.avi")), "source.max_frames=30",
            "detector.interval=2", f"output.dir='{tmp_path}'", *model_overrides]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "edge", *args], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(run_file(tmp_path, "summary.json").read_text())
    assert summary["frames"] == 30
    assert summary["stages_ms"]["detect"]["count"] == 10
    assert summary["stages_ms"]["track"]["count"] == 30
    rows = np.loadtxt(run_file(tmp_path, "tracks.mot.txt"), delimiter=",", ndmin=2)
    skipped = {int(f) for f in rows[:, 0] if (int(f) - 1) % 3}
    assert skipped  # tracks are written on frames the detector skipped
