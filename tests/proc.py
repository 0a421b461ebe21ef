"""What /proc says about a process under test: its open file descriptors (its resident memory:
`benchmarks.processes.rss_kib`)."""

from __future__ import annotations

import os


def fd_count(pid: int) -> int:
    """Open file descriptors of a process."""
    return len(os.listdir(f"/proc/{pid}/fd"))
