"""`python -m edge colorize` on the real sample video."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from export.data import data_file
from tests.onnx_models import constant_chroma_model


def run_edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=300
    )


def test_colorizes_sample_video_frames_at_full_size(tmp_path: Path) -> None:
    model = constant_chroma_model(tmp_path / "c.onnx", (0.2, 0.1))
    output = tmp_path / "out.mp4"
    result = run_edge(
        "colorize", str(data_file("vtest.avi")), "--output", str(output),
        "--model", str(model), "--max-frames", "12",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    video = cv2.VideoCapture(str(output))
    frames = []
    while (frame := video.read()[1]) is not None:
        frames.append(frame)
    assert len(frames) == 12
    assert frames[0].shape == (576, 768, 3)
    assert cv2.imread(str(output.with_suffix(".preview.png"))).shape == (576, 768 * 3, 3)


@pytest.mark.parametrize(
    ("source", "model", "message"),
    [
        ("text.avi", "c.onnx", r"cannot decode video .*text.avi"),
        ("missing.avi", "c.onnx", r"video file not found"),
        ("vtest", "missing.onnx", r"model file not found"),
        ("vtest", "text.avi", r"unsupported model file type '.avi'"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path: Path, source: str, model: str, message: str) -> None:
    (tmp_path / "text.avi").write_text("not a video")
    constant_chroma_model(tmp_path / "c.onnx", (0.0, 0.0))
    video = data_file("vtest.avi") if source == "vtest" else tmp_path / source
    output, model_path = tmp_path / "o.mp4", tmp_path / model
    result = run_edge("colorize", str(video), "--output", str(output), "--model", str(model_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("edge colorize: error:")
    assert re.search(message, lines[0])
