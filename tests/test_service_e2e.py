"""`python -m edge run` as systemd runs it: notifications to a socket the test owns, and /metrics.

The runtime is started the way systemd starts a Type=notify service with WatchdogSec=: with
NOTIFY_SOCKET and WATCHDOG_USEC in its environment. The test plays the service manager's part.
"""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.processes import free_port
from benchmarks.rtsp_server import start_rtsp_server
from tests.notify_socket import Notification, NotifyListener

WATCHDOG_USEC = 1_000_000  # systemd's WatchdogSec=1: a ping every 0.5 s while frames flow
PING_PERIOD = WATCHDOG_USEC / 1e6 / 2
STARTUP_S = 180  # loading the models on a busy 2-core CI machine


@contextmanager
def edge_service(
    tmp_path: Path, overrides: list[str]
) -> Iterator[tuple[subprocess.Popen[str], NotifyListener]]:
    """The runtime with a notify socket; killed if the test leaves it running; its log shown."""
    listener = NotifyListener()
    env = {**os.environ, "NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    log = tmp_path / "edge.log"
    with log.open("w") as stream:
        process = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", *overrides, f"output.dir='{tmp_path / 'out'}'"],
            env=env,
            stdout=stream,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield process, listener
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        listener.close()
        sys.stderr.write(log.read_text())


def _pings_after(listener: NotifyListener, ready: Notification) -> list[Notification]:
    return [n for n in listener.notifications("WATCHDOG") if n.at >= ready.at]


def _stop(process: subprocess.Popen[str], listener: NotifyListener) -> None:
    """SIGTERM as `systemctl stop` sends it: STOPPING=1, then a clean exit."""
    process.send_signal(signal.SIGTERM)
    listener.wait_for("STOPPING", timeout=30)
    assert process.wait(timeout=60) == 0


def test_ready_watchdog_metrics_and_stopping(tmp_path: Path, model_overrides: list[str]) -> None:
    port = free_port()
    overrides = [
        *model_overrides,
        "source.uri='test://'",
        "source.width=160",
        "source.height=120",
        f"health.metrics_port={port}",
    ]
    with edge_service(tmp_path, overrides) as (process, listener):
        (ready,) = listener.wait_for("READY", timeout=STARTUP_S)
        assert listener.notifications("WATCHDOG") == [], "pinged before the first frame"
        pings = listener.wait_for("WATCHDOG", count=5, timeout=30)
        gaps = [b.at - a.at for a, b in itertools.pairwise(pings)]
        assert 0.6 * PING_PERIOD < statistics.median(gaps) < 1.5 * PING_PERIOD, gaps

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
        stages = {s.labels["stage"] for s in families["edge_stage_latency_seconds"].samples}
        assert {"capture", "detect", "track", "total"} <= stages
        (frames,) = families["edge_frames"].samples
        assert frames.value >= 5
        # STATUS= is refreshed every 5 s: "12.3 fps, 0 active tracks, 140 frames".
        deadline = time.monotonic() + 15
        while "fps" not in listener.notifications("STATUS")[-1].fields["STATUS"]:
            assert time.monotonic() < deadline, listener.notifications("STATUS")
            time.sleep(0.1)

        _stop(process, listener)
        assert ready.at < listener.notifications("STOPPING")[0].at


def test_watchdog_pings_stop_while_the_camera_stalls(
    tmp_path: Path, model_overrides: list[str]
) -> None:
    port = free_port()
    server = start_rtsp_server(port)
    overrides = [
        *model_overrides,
        f"source.uri='rtsp://127.0.0.1:{port}/cam'",
        "source.timeout_s=2",
        "source.reconnect_initial_s=0.5",
        "source.reconnect_max_s=1",
    ]
    try:
        with edge_service(tmp_path, overrides) as (process, listener):
            (ready,) = listener.wait_for("READY", timeout=STARTUP_S)
            listener.wait_for("WATCHDOG", count=3, timeout=30)

            server.kill()  # the camera goes away; the runtime keeps trying to reconnect
            server.wait()
            time.sleep(4 * PING_PERIOD)  # frames already captured drain, one last ping at most
            stalled = len(_pings_after(listener, ready))
            time.sleep(8 * PING_PERIOD)
            assert len(_pings_after(listener, ready)) == stalled, "pinged with no frames"
            assert process.poll() is None, "the runtime exited instead of reconnecting"

            server = start_rtsp_server(port)  # the camera is back: frames, then pings, resume
            listener.wait_for("WATCHDOG", count=len(listener.notifications("WATCHDOG")) + 3)
            _stop(process, listener)
    finally:
        server.kill()
        server.wait()
