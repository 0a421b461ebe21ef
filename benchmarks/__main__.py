"""`python -m benchmarks COMMAND`: latency per stage, FP16 drift, tracking quality, naive vs ours,
what detector.interval costs, MQTT delivery, several cameras in one process, faults a device
meets on a wall, the web page's live view (0, 1, 4 viewers).

Results go to `artifacts/bench/` (JSON with the machine and the exact config, Markdown, PNG).
"""

from __future__ import annotations

import sys

from benchmarks import (
    compare,
    drift,
    faults,
    interval,
    latency,
    motion,
    mqtt,
    multicam,
    tracking,
    web,
)
from edge.cli import main

COMMANDS = [
    latency.register,
    drift.register,
    tracking.register,
    compare.register,
    interval.register,
    motion.register,
    mqtt.register,
    multicam.register,
    faults.register,
    web.register,
]

if __name__ == "__main__":
    sys.exit(main("benchmarks", __doc__ or "", COMMANDS, sys.argv[1:]))
