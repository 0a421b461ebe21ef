"""`python -m edge recordings`: list the recorded segments with the events inside each, or join
a time range into one file (`--export START END OUT.mp4`, no re-encoding)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge import recordings
from edge.config import load
from edge.utc import iso, parse_time

TIMES = (
    "Times: ISO 8601 in UTC (2025-06-01T12:03:05Z), a file-name stamp, an age (15m, 2h, 1d) or now"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `recordings` command."""
    parser = subparsers.add_parser(
        "recordings", help="list recorded segments and their events, or export a time range",
        description=f"Lists or exports what `edge run` recorded. {TIMES}.",
    )  # fmt: skip
    parser.add_argument("--config", type=Path, help="the runtime's TOML config (its [output])")
    parser.add_argument("--dir", type=Path, help="output folder (default: the config's output.dir)")
    parser.add_argument("--camera", help="only this camera (default: all; export: the only one)")
    parser.add_argument("--since", help="only segments that end after this time")
    parser.add_argument(
        "--export", nargs=3, metavar=("START", "END", "OUT"),
        help="join the segments between START and END into OUT (.mp4 or .mkv)",
    )  # fmt: skip
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    output = load(args.config).output
    folder = args.dir or Path(output.dir)
    root = folder / (output.video or "recordings")
    if args.export:
        start, end, out = args.export
        joined = recordings.export(root, parse_time(start), parse_time(end), Path(out), args.camera)
        sys.stdout.write(
            f"{out}: {len(joined)} segments, {iso(joined[0].start)} to {iso(joined[-1].end)}\n"
        )
        return
    since = parse_time(args.since) if args.since else None
    events = recordings.event_files(folder, output.events)
    entries = recordings.index(root, events, args.camera, since)
    lines = recordings.describe(entries) or [f"no recordings in {root}"]
    sys.stdout.write("\n".join(lines) + "\n")
