"""Reading recorded video files with OpenCV, for offline jobs (`track`, `colorize`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgeError


def read_frames(path: Path) -> Iterator[np.ndarray]:
    """Yield the BGR frames of a video file in order.

    Raises:
        EdgeError: the file is missing or no frame can be decoded from it.
    """
    if not path.is_file():
        raise EdgeError(f"video file not found: {path}")
    capture = cv2.VideoCapture(str(path))
    try:
        ok, frame = capture.read()
        if not ok:
            raise EdgeError(f"cannot decode video {path}: not a video, or a codec is missing")
        while ok:
            yield frame
            ok, frame = capture.read()
    finally:
        capture.release()


def frame_rate(path: Path, default: float = 25.0) -> float:
    """The file's frame rate, or `default` when the container does not say."""
    capture = cv2.VideoCapture(str(path))
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    capture.release()
    return fps if fps > 0 else default
