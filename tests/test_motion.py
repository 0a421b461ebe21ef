"""Motion gating: the gate on real frames, and the runtime not detecting while nothing moves."""

from __future__ import annotations

import os
import subprocess
import sys
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.motion import held_frames
from edge.motion import MotionGate
from edge.video.files import read_frames
from export.data import data_file
from tests.recorded import summary

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """The first 12 frames of the sample video: people walk in every one."""
    return list(islice(read_frames(data_file("vtest.avi")), 12))


@pytest.mark.parametrize("gray", [False, True])
def test_walkers_move_and_a_held_frame_does_not(frames: list[np.ndarray], gray: bool) -> None:
    images = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) if gray else f for f in frames]
    gate = MotionGate()
    walking = [gate.moving(image) for image in images]
    assert all(walking)  # the first frame, then people walking in each
    held = [gate.moving(images[-1]) for _ in range(20)]
    assert held[0]  # the average still shows where they were a moment ago
    assert not any(held[10:])  # it catches up with the still scene within ten frames
    assert gate.moving(images[0])  # and the next change counts at once


def test_camera_noise_below_the_threshold_is_still(frames: list[np.ndarray]) -> None:
    gate = MotionGate()
    rng = np.random.default_rng(0)
    gate.moving(frames[0])
    for _ in range(5):
        noise = rng.integers(-6, 7, frames[0].shape)
        noisy = np.clip(frames[0].astype(int) + noise, 0, 255).astype(np.uint8)
        assert not gate.moving(noisy)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0}, "threshold must be within"),
        ({"min_area": 1.5}, "min_area"),
        ({"height": 4}, "height must be at least 8"),
        ({"alpha": 0.0}, "alpha must be within"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MotionGate(**kwargs)  # type: ignore[arg-type]


def test_held_frames_pause_between_moving_parts() -> None:
    assert held_frames(5, 2, 3) == [0, 1, 1, 1, 1, 2, 3, 3, 3, 3, 4]


def test_run_skips_detection_while_the_video_holds_still(
    frames: list[np.ndarray], model_overrides: list[str], tmp_path: Path
) -> None:
    clip = tmp_path / "idle.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
    order = held_frames(8, 4, 16)  # 4 moving, 16 held, 4 moving
    for index in order:
        writer.write(frames[index])
    writer.release()
    args = ["run", "--source", str(clip), "detector.motion=true", f"output.dir='{tmp_path}'",
            "output.video=''", *model_overrides]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "edge", *args], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    numbers = summary(tmp_path)
    assert numbers["frames"] == len(order) == 24
    detected = numbers["stages_ms"]["detect"]["count"]
    assert (
        8 <= detected <= 8 + 10
    )  # every moving frame, and the held ones until the average is still
    assert numbers["stages_ms"]["track"]["count"] == 24
