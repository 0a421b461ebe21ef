"""`python -m edge colorize`: colorize a recorded video as a grayscale camera would deliver it."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from edge.colorizer import Colorizer
from edge.config import ColorizerConfig, OutputConfig
from edge.engine import BACKENDS, open_engine
from edge.files import writable_dir
from edge.video_file import frame_rate, read_frames
from edge.video_out import Mp4Recorder

log = logging.getLogger(__name__)
DEFAULT_MODEL = Path(ColorizerConfig().model)  # as `edge run`


def colorize_video(
    source: Path, output: Path, model: Path, backend: str = "auto", max_frames: int = 0
) -> int:
    """Convert each frame to grayscale, colorize it, write the result as mp4.

    Also writes `<output>.preview.png`: the first frame as gray input | colorized | original.

    Returns:
        The number of frames written.
    """
    colorizer = Colorizer(open_engine(model, backend))
    writable_dir(output.parent)  # fail now, not after decoding the whole video
    fps, recorder = frame_rate(source), None
    started = time.perf_counter()
    try:
        for index, frame in enumerate(read_frames(source)):
            if max_frames and index >= max_frames:
                break
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            colorized = colorizer.colorize(gray)
            if recorder is None:
                height, width = colorized.shape[:2]
                recorder = Mp4Recorder(output, width, height, fps, OutputConfig().bitrate_kbps)
            recorder.write(colorized)
            if index == 0:
                preview = np.hstack([cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), colorized, frame])
                cv2.imwrite(str(output.with_suffix(".preview.png")), preview)
            if (index + 1) % 100 == 0:
                log.info("%d frames colorized", index + 1)
    finally:
        if recorder is not None:
            recorder.close()
    frames = recorder.frames if recorder is not None else 0
    log.info("%d frames colorized at %.1f FPS", frames, frames / (time.perf_counter() - started))
    return frames


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `colorize` command."""
    parser = subparsers.add_parser("colorize", help="colorize a video file (as seen in grayscale)")
    parser.add_argument("source", type=Path, help="video file")
    parser.add_argument("--output", type=Path, required=True, help="mp4 file to write")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="chroma colorizer")
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: all)")
    parser.set_defaults(
        func=lambda a: colorize_video(a.source, a.output, a.model, a.backend, a.max_frames)
    )
