"""`python -m edge colorize`: colorize a recorded video as a grayscale camera would deliver it."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.config import ColorizerConfig
from edge.engines import BACKENDS
from edge.runtime import colorize_video


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `colorize` command."""
    parser = subparsers.add_parser("colorize", help="colorize a video file (as seen in grayscale)")
    parser.add_argument("source", type=Path, help="video file")
    parser.add_argument("--output", type=Path, required=True, help="mp4 file to write")
    parser.add_argument(
        "--model", type=Path, default=ColorizerConfig().model, help="chroma colorizer"
    )
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: all)")
    parser.set_defaults(
        func=lambda a: colorize_video(a.source, a.output, a.model, a.backend, a.max_frames)
    )
