"""The fault run (`python -m benchmarks faults`): three RTSP cameras, a broker, and one fault
after another (a camera back at another resolution, the broker away, the disk full, a slow sink,
the clock stepped a day back and forward, a SIGKILL); every check it makes must pass.

Slow (several minutes): run it with `pytest -m slow tests/test_faults.py`; `make bench` runs
the benchmark itself with the real models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.faults import faketime_library


@pytest.mark.slow
def test_every_camera_and_every_record_survive_the_fault_run(
    model_overrides: list[str], tmp_path: Path
) -> None:
    """Needs root (the output disk is a tmpfs it fills) and libfaketime."""
    if os.geteuid() != 0:
        pytest.skip("the disk-full fault mounts a tmpfs: run as root")
    faketime_library()
    command = [sys.executable, "-m", "benchmarks", "faults", "--output", str(tmp_path),
               "--hold-s", "8", "--settle-s", "3", *model_overrides]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    data = json.loads((tmp_path / "faults.json").read_text())
    checks = data.get("result", {}).get("checks", {})
    failed = {name: check for name, check in checks.items() if not check["ok"]}
    assert done.returncode == 0, (failed, done.stderr[-3000:])
    assert {row["fault"] for row in data["result"]["faults"]} >= {
        "corrupt-spool",
        "disk-full",
        "camera-size",
        "broker",
        "slow-sink",
        "clock-step",
        "sigkill",
    }
    assert checks
    assert not failed
