"""`python -m edge COMMAND`: the on-device runtime's commands."""

from __future__ import annotations

import sys

from edge import colorize_cli, run_cli, track_cli
from edge.cli import main

COMMANDS = [run_cli.register, colorize_cli.register, track_cli.register]

if __name__ == "__main__":
    sys.exit(main("edge", __doc__ or "", COMMANDS, sys.argv[1:]))
