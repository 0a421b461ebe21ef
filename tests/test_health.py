"""sd_notify and the stall check, against real datagram sockets the test owns."""

from __future__ import annotations

import itertools
import os
import re
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from edge.metrics import Metrics
from edge.pipeline import FrameListener
from edge.service.health import Health, SystemdNotifier
from tests.notify_socket import NotifyListener

WATCHDOG_USEC = 200_000  # 0.2 s timeout: a ping every 0.1 s while frames flow
PING_PERIOD = WATCHDOG_USEC / 1e6 / 2


@pytest.fixture(params=[False, True], ids=["path", "abstract"])
def listener(request: pytest.FixtureRequest) -> Iterator[NotifyListener]:
    sink = NotifyListener(abstract=request.param)
    yield sink
    sink.close()


def _health(
    listener: NotifyListener,
    watchdog: bool = True,
    cameras: tuple[str, ...] = ("cam0",),
    **kwargs: float,
) -> Health:
    env = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    notifier = SystemdNotifier.from_env(env)
    metrics = {name: Metrics() for name in cameras}
    return Health(metrics, notifier, stall_s=1.0, watchdog=watchdog, **kwargs)


class FrameFeeder:
    """Calls `frame_done()` every `period` seconds on its own thread, like a running pipeline."""

    def __init__(self, health: Health, period: float = 0.02, camera: str = "cam0") -> None:
        self._stop = threading.Event()
        args = (health.listener(camera), period)
        self._thread = threading.Thread(target=self._feed, args=args, daemon=True)
        self._thread.start()

    def _feed(self, camera: FrameListener, period: float) -> None:
        while not self._stop.wait(period):
            camera.frame_done()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize(
    ("env", "address", "interval"),
    [
        ({}, None, None),
        ({"NOTIFY_SOCKET": ""}, None, None),
        ({"NOTIFY_SOCKET": "vsock:2:1234"}, None, None),
        ({"NOTIFY_SOCKET": "/run/systemd/notify"}, "/run/systemd/notify", None),
        ({"NOTIFY_SOCKET": "@abstract/name"}, "\0abstract/name", None),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "30000000"}, "/n", 30.0),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "OWN"}, "/n", 30.0),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, "/n", None),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "soon"}, "/n", None),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "0"}, "/n", None),
    ],
)
def test_from_env(env: dict[str, str], address: str | None, interval: float | None) -> None:
    env = {k: str(os.getpid()) if v == "OWN" else v for k, v in env.items()}
    notifier = SystemdNotifier.from_env(env)
    if address is None:
        assert notifier is None
        return
    assert notifier is not None
    assert (notifier.address, notifier.watchdog_interval_s) == (address, interval)
    notifier.close()


def test_send_lines_and_fields(listener: NotifyListener) -> None:
    notifier = SystemdNotifier(listener.address)
    notifier.send("READY=1", STATUS="two\nlines")
    notifier.close()
    (message,) = listener.wait_for("READY")
    # A newline in a value must not start a new assignment.
    assert message.fields == {"READY": "1", "STATUS": "two lines"}


def test_send_without_a_listener_does_not_raise(tmp_path: os.PathLike[str]) -> None:
    notifier = SystemdNotifier(os.path.join(tmp_path, "gone"))
    notifier.send("WATCHDOG=1")
    notifier.send("WATCHDOG=1")
    notifier.close()


def test_ready_only_after_the_first_frame_and_only_once(listener: NotifyListener) -> None:
    health = _health(listener)
    health.start()
    listener.wait_for("STATUS")
    time.sleep(3 * PING_PERIOD)
    assert listener.notifications("READY") == []
    assert listener.notifications("WATCHDOG") == [], "pinged before any frame went through"
    health.frame_done("cam0")
    health.frame_done("cam0")
    listener.wait_for("READY")
    time.sleep(2 * PING_PERIOD)
    health.close()
    assert len(listener.notifications("READY")) == 1


def test_watchdog_pings_while_frames_flow_and_stop_when_they_stop(
    listener: NotifyListener,
) -> None:
    health = _health(listener)
    health.start()
    feeder = FrameFeeder(health)
    pings = listener.wait_for("WATCHDOG", count=8)
    gaps = [b.at - a.at for a, b in itertools.pairwise(pings)]
    # At half the watchdog timeout: never spamming, and typically on time (a loaded CI machine
    # may delay a single ping, hence the median).
    assert min(gaps) > 0.5 * PING_PERIOD, gaps
    assert 0.8 * PING_PERIOD < statistics.median(gaps) < 1.3 * PING_PERIOD, gaps

    feeder.stop()
    # A frame finished just before the stop may still earn one ping; after that, silence.
    time.sleep(2 * PING_PERIOD)
    stalled_at = len(listener.notifications("WATCHDOG"))
    time.sleep(6 * PING_PERIOD)
    assert len(listener.notifications("WATCHDOG")) == stalled_at, "pinged with no frames"

    feeder = FrameFeeder(health)
    listener.wait_for("WATCHDOG", count=stalled_at + 3)
    feeder.stop()
    health.close()


def test_one_stalled_camera_of_two_is_named_and_the_watchdog_still_fed(
    listener: NotifyListener,
) -> None:
    health = _health(listener, cameras=("gate", "yard"), status_interval_s=0.05)
    health.start()
    health.frame_done("yard")
    feeder = FrameFeeder(health, camera="gate")  # yard delivers no more
    time.sleep(1.5)  # beyond stall_s
    pinged = len(listener.notifications("WATCHDOG"))
    listener.wait_for("WATCHDOG", count=pinged + 3)  # gate's frames keep systemd fed
    statuses = [m.fields["STATUS"] for m in listener.notifications("STATUS")]
    feeder.stop()
    health.close()
    assert statuses[-1].startswith("stalled: yard; gate: 0.0 fps"), statuses[-1]
    assert re.search(r"yard: stalled: no frame for \d+ s", statuses[-1]), statuses[-1]
    assert not health.healthy()
    assert health.healthy("gate")


def test_no_pings_when_watchdog_is_off(listener: NotifyListener) -> None:
    health = _health(listener, watchdog=False)
    health.start()
    feeder = FrameFeeder(health)
    listener.wait_for("READY")
    time.sleep(5 * PING_PERIOD)
    feeder.stop()
    health.close()
    assert listener.notifications("WATCHDOG") == []


def test_stopping(listener: NotifyListener) -> None:
    health = _health(listener)
    health.start()
    health.frame_done("cam0")
    health.stopping()
    (message,) = listener.wait_for("STOPPING")
    health.close()
    assert message.fields["STOPPING"] == "1"


def test_status_reports_fps_tracks_and_stalls(listener: NotifyListener) -> None:
    now = [100.0]
    env = {"NOTIFY_SOCKET": listener.address}
    metrics = Metrics()
    health = Health(
        {"cam0": metrics}, SystemdNotifier.from_env(env), stall_s=10.0, clock=lambda: now[0]
    )
    assert health.status() == "starting: waiting for the first frame"
    metrics.set("fps", 14.96)
    metrics.set("active_tracks", 3)
    metrics.increment("frames", 120)
    health.frame_done("cam0")
    assert health.status() == "15.0 fps, 3 active tracks, 120 frames"
    now[0] += 12
    assert health.status().startswith("stalled: no frame for 12 s; 15.0 fps")
    health.close()


def test_status_is_sent_periodically(listener: NotifyListener) -> None:
    health = _health(listener, status_interval_s=0.05)
    health.start()
    health.frame_done("cam0")
    statuses = listener.wait_for("STATUS", count=4)
    health.close()
    assert statuses[-1].fields["STATUS"].endswith("0 active tracks, 0 frames")


def test_healthy_follows_the_last_frame() -> None:
    now = [0.0]
    health = Health({"cam0": Metrics()}, None, stall_s=2.0, clock=lambda: now[0])
    health.start()  # no notifier: nothing to run, nothing to send
    assert not health.healthy()
    assert health.last_frame_age_s("cam0") is None
    health.frame_done("cam0")
    now[0] = 2.0
    assert health.healthy()
    now[0] = 2.5
    assert not health.healthy()
    assert health.last_frame_age_s("cam0") == pytest.approx(2.5)
    health.close()


@pytest.mark.parametrize("name", ["stall_s", "status_interval_s"])
def test_rejects_non_positive_intervals(name: str) -> None:
    kwargs = {"stall_s": 1.0, name: 0.0}
    with pytest.raises(ValueError, match=f"{name} must be > 0"):
        Health({"cam0": Metrics()}, None, **kwargs)


def test_a_failing_camera_is_unhealthy_with_its_error_until_its_next_frame() -> None:
    metrics = {"door": Metrics(), "yard": Metrics()}
    health = Health(metrics, None, stall_s=10.0)
    for camera in metrics:
        health.frame_done(camera)
    metrics["yard"].increment("camera_restarts", 3)
    health.listener("yard").camera_failed("recording failed: not negotiated")
    assert health.healthy("door")
    assert not health.healthy("yard")
    assert not health.healthy()
    assert health.failure("yard") == "recording failed: not negotiated"
    assert health.status().startswith(
        "failed: yard; door: 0.0 fps, 0 active tracks, 0 frames; "
        "yard: failed: recording failed: not negotiated (3 restarts)"
    )
    health.frame_done("yard")
    assert health.healthy()
    assert health.failure("yard") is None
