"""Shared entry-point plumbing: logging to stderr and one-line errors with a non-zero exit."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from edge.errors import EdgeError

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def main(prog: str, description: str, commands: Sequence[Register], argv: list[str] | None) -> int:
    """Build a CLI from per-command `register` functions, run the chosen one, return its status.

    Each `register(subparsers)` adds one sub-command and sets `func(args) -> None` as default.
    An `EdgeError` becomes one line on stderr and exit status 2.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for register in commands:
        register(subparsers)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        args.func(args)
    except EdgeError as exc:
        sys.stderr.write(f"{prog} {args.command}: error: {exc}\n")
        return 2
    return 0
