"""Daytime footage collection for scene adaptation: sampled color frames, bounded, gray skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.models.colorizer import carries_color
from edge.outputs.footage import FootageSink
from edge.types import Frame, Packet
from export.data import data_file
from tests.recorded import summary

ROOT = Path(__file__).resolve().parent.parent


def colorful(seed: int) -> np.ndarray:
    """A 96×128 frame of random colored blocks."""
    blocks = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(blocks, (128, 96), interpolation=cv2.INTER_NEAREST)


def packet(index: int, image: np.ndarray, fps: float = 10.0) -> Packet:
    return Packet(Frame(index, image, captured=0.0, pts_s=None, fps=fps))


def test_color_is_told_from_gray_and_tinted_gray() -> None:
    frame = colorful(0)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    gray_as_bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    lab = cv2.cvtColor(gray_as_bgr.astype(np.float32) / 255, cv2.COLOR_BGR2Lab)
    lab[..., 1:] = (-12.0, 6.0)  # one hue everywhere: the green cast of an IR camera
    tinted = (np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2BGR), 0, 1) * 255).astype(np.uint8)
    assert carries_color(frame)
    assert not carries_color(gray)
    assert not carries_color(gray_as_bgr)
    assert not carries_color(tinted)


def test_one_frame_per_interval_oldest_dropped_beyond_the_bound(tmp_path: Path) -> None:
    sink = FootageSink(tmp_path, every_s=0.5, max_frames=3, max_mb=100)
    for index in range(40):  # 4 s at 10 FPS: frames 0, 5, 10, ... are due
        sink.write(packet(index, colorful(index)), fps=10.0)
    kept = sorted(tmp_path.glob("*.jpg"))
    assert [int(p.stem.split("_")[-1]) for p in kept] == [25, 30, 35]


def test_gray_frames_are_skipped_until_color_returns(tmp_path: Path) -> None:
    sink = FootageSink(tmp_path, every_s=1.0, max_frames=10, max_mb=100)
    night = cv2.cvtColor(colorful(1), cv2.COLOR_BGR2GRAY)
    for index in range(12):
        sink.write(packet(index, night if index < 7 else colorful(index)), fps=10.0)
    assert [int(p.stem.split("_")[-1]) for p in sorted(tmp_path.glob("*.jpg"))] == [7]


def test_disk_bound_counts_files_of_an_earlier_run(tmp_path: Path) -> None:
    first = FootageSink(tmp_path, every_s=0.1, max_frames=100, max_mb=100)
    for index in range(3):
        first.write(packet(index, colorful(index)), fps=10.0)
    size = max(p.stat().st_size for p in tmp_path.glob("*.jpg"))
    again = FootageSink(tmp_path, every_s=0.1, max_frames=100, max_mb=3.5 * size / 1e6)
    again.write(packet(100, colorful(100)), fps=10.0)
    names = sorted(p.name for p in tmp_path.glob("*.jpg"))
    assert len(names) == 3  # the new frame in, the oldest of the earlier run out
    assert names[-1].endswith("_00000100.jpg")


def test_photos_of_the_user_in_the_folder_are_never_counted_or_deleted(tmp_path: Path) -> None:
    photos = [tmp_path / "0001_holiday.jpg", tmp_path / "IMG_20240101T000000.000000Z_00000001.jpg"]
    for seed, photo in enumerate(photos):
        cv2.imwrite(str(photo), colorful(seed))
    sink = FootageSink(tmp_path, every_s=0.05, max_frames=2, max_mb=100)  # every frame
    for index in range(5):
        sink.write(packet(index, colorful(index)), fps=10.0)
    assert all(photo.exists() for photo in photos)
    ours = sorted(p.name for p in tmp_path.glob("footage_*.jpg"))
    assert [int(name[-12:-4]) for name in ours] == [3, 4]


# The sample video runs at 10 FPS: every 0.5 s of stream time is every 5th frame.
@pytest.mark.parametrize(("fmt", "expected"), [("BGR", [0, 5, 10, 15, 20, 25]), ("GRAY8", [])])
def test_run_collects_footage_from_a_color_source_only(
    model_overrides: list[str], tmp_path: Path, fmt: str, expected: list[int]
) -> None:
    footage = tmp_path / "footage"
    args = [
        "run", "--source", str(data_file("vtest.avi")), "source.max_frames=30",
        f"source.format='{fmt}'", "colorizer.mode='off'", f"colorizer.collect_dir='{footage}'",
        "colorizer.collect_every_s=0.5", f"output.dir='{tmp_path / 'out'}'", *model_overrides,
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "edge", *args], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    kept = sorted(footage.glob("*.jpg"))
    assert [int(p.stem.split("_")[-1]) for p in kept] == expected
    for path in kept:
        assert cv2.imread(str(path)).shape == (576, 768, 3)
    assert summary(tmp_path / "out")["frames"] == 30
