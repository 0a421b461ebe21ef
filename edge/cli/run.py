"""`python -m edge run --config FILE [--source URI] [section.key=value ...]`: the headless runtime.

Runs until the source ends (a file) or SIGINT/SIGTERM (a camera): then capture stops, the queues
drain, the video and event files are finalized, a summary is logged and written, and the process
exits 0. Every config value is checked before any model is loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge import runtime
from edge.config import load


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `run` command."""
    parser = subparsers.add_parser("run", help="run the pipeline (see deploy/edge.toml)")
    parser.add_argument("--config", type=Path, help="TOML config file (default: built-in)")
    parser.add_argument("--source", help="source URI, overrides source.uri")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="config overrides, e.g. source.max_frames=100",
    )

    def main(args: argparse.Namespace) -> None:
        overrides = list(args.overrides)
        if args.source:
            overrides.append(f"source.uri={args.source}")
        runtime.run(load(args.config, overrides))

    parser.set_defaults(func=main)
