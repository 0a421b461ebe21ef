"""Reading and writing video files with OpenCV, for offline jobs on recorded video."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgeError
from edge.files import writable_dir


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


class Mp4Writer:
    """Writes BGR frames to an MPEG-4 file; the size is taken from the first frame."""

    def __init__(self, path: Path, fps: float) -> None:
        """Check the folder is writable now, so a long job does not fail at its end."""
        writable_dir(path.parent)
        self.path, self.fps = path, fps
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one frame (all frames must have the first frame's size)."""
        if self._writer is None:
            fourcc = cv2.VideoWriter.fourcc(*"mp4v")
            size = (frame.shape[1], frame.shape[0])
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, size)
            if not self._writer.isOpened():
                raise EdgeError(f"cannot open {self.path} for writing an mp4 video")
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the file so it plays."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
