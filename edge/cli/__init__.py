"""Command-line front ends (argparse only) and their shared plumbing: logging to stderr and
one-line errors with a non-zero exit. `run`, `track`, `colorize`, `engines` each add one command;
the work is done by library code (`edge.runtime`, `edge.engines.build`). Nothing imports a CLI
module but `edge.__main__`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from edge.errors import EdgeError


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: time, level, logger, thread, message (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def main(prog: str, description: str, commands: Sequence[Register], argv: list[str] | None) -> int:
    """Build a CLI from per-command `register` functions, run the chosen one, return its status.

    Each `register(subparsers)` adds one sub-command and sets `func(args) -> None` as default.
    An `EdgeError` becomes one line on stderr and exit status 2.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="stderr log lines as text, or as one JSON object each (for log collectors)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for register in commands:
        register(subparsers)
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if args.log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    try:
        args.func(args)
    except EdgeError as exc:
        sys.stderr.write(f"{prog} {args.command}: error: {exc}\n")
        return 2
    return 0
