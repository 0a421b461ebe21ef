"""`python -m edge COMMAND`: the on-device runtime's commands."""

from __future__ import annotations

import os
import sys

# numpy's OpenBLAS threads busy-wait after each call and steal the cores the inference engine
# needs (measured: tracker update 30 ms -> 2 ms, detector faster too); the runtime's numpy work
# is small matrices, so one BLAS thread costs nothing. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from edge import colorize_cli, run_cli, track_cli
from edge.cli import main

COMMANDS = [run_cli.register, colorize_cli.register, track_cli.register]

if __name__ == "__main__":
    sys.exit(main("edge", __doc__ or "", COMMANDS, sys.argv[1:]))
