"""GStreamer's bindings used from several threads at once, as the cameras' capture threads do
when they start together (the runtime's start, a restart of the service)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.faults import faketime_library
from edge.errors import EdgeError

ROOT = Path(__file__).resolve().parent.parent
# Eight threads released at once each convert their first appsink-like sample.
SCRIPT = """
import threading
from edge.video import gst
barrier, errors = threading.Barrier(8), []
def first_frame():
    barrier.wait()
    try:
        Gst = gst.init()
        from gi.repository import GstVideo  # what sample_to_array imports
        caps = Gst.Caps.from_string("video/x-raw,format=BGR,width=4,height=2,framerate=1/1")
        sample = Gst.Sample.new(Gst.Buffer.new_wrapped(bytes(24)), caps, None, None)
        gst.sample_to_array(sample)
    except Exception as error:
        errors.append(repr(error))
threads = [threading.Thread(target=first_frame) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(errors[0] if errors else "ok")
"""


def test_capture_threads_starting_together_all_read_their_frames(tmp_path: Path) -> None:
    """Each fresh process's threads race to the bindings' first use; before `gst.init` made the
    wrapper classes itself, some got `Expected Gst.MapInfo, but got gi.repository.Gst.MapInfo`
    (about one process in four with libfaketime, which slows every clock call and so widens
    the window; it stopped three cameras of the fault run after a restart)."""
    try:
        preload = {"LD_PRELOAD": str(faketime_library())}
    except EdgeError:  # the race exists without it, only rarer
        preload = {}
    clock = tmp_path / "faketime"
    clock.write_text("+0\n")
    env = {"PYTHONPATH": str(ROOT), "FAKETIME_TIMESTAMP_FILE": str(clock), "FAKETIME_NO_CACHE": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1", **preload}  # fmt: skip

    def one_process(_: int) -> str:
        done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                              env={**os.environ, **env}, timeout=120)  # fmt: skip
        return done.stdout.strip() or done.stderr.strip()[-300:]

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one_process, range(12)))
    assert results == ["ok"] * len(results)
