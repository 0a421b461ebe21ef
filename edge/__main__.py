"""`python -m edge COMMAND`: the on-device runtime's commands."""

from __future__ import annotations

import sys

from edge.cli import colorize, engines, main, recordings, run, track, web

COMMANDS = [
    run.register,
    colorize.register,
    track.register,
    engines.register,
    recordings.register,
    web.register,
]

if __name__ == "__main__":
    sys.exit(main("edge", __doc__ or "", COMMANDS, sys.argv[1:]))
