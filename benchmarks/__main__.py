"""`python -m benchmarks COMMAND`: latency per stage, FP16 drift, tracking quality, naive vs ours.

Results go to `artifacts/bench/` (JSON with the machine and the exact config, Markdown, PNG).
"""

from __future__ import annotations

import sys

from benchmarks import compare, drift, latency, mqtt, tracking
from edge.cli import main

COMMANDS = [latency.register, drift.register, tracking.register, compare.register, mqtt.register]

if __name__ == "__main__":
    sys.exit(main("benchmarks", __doc__ or "", COMMANDS, sys.argv[1:]))
