"""Health the runtime reports: systemd notifications (sd_notify) and a stall check.

The sd_notify protocol is small enough to speak directly (no libsystemd): newline-separated
`KEY=value` lines in one datagram to the AF_UNIX socket named by `$NOTIFY_SOCKET`, where a name
starting with '@' is in the abstract namespace. `$WATCHDOG_USEC` is the watchdog timeout and
`$WATCHDOG_PID`, when set, names the one process meant to ping.

The watchdog means something here: `WATCHDOG=1` goes out only if a frame of some camera went
through every stage since the previous ping, so a hung inference, or every camera stalled, stops
the pings and systemd restarts the service; one dead camera of several does not (it is
reconnected in-process), but `STATUS=` and `/healthz` name it. Nor does a camera whose stage
keeps failing (the pipeline restarts it with backoff): it is unhealthy with its last error
(`camera_failed`) until its next complete frame. `READY=1` waits for the first complete frame.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

from edge.metrics import Metrics
from edge.service.side_outputs import SideOutputs

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends sd_notify datagrams to the service manager's socket.

    Attributes:
        address: the socket address (abstract names start with a NUL byte).
        watchdog_interval_s: systemd's watchdog timeout for this process, None when it has none.
    """

    def __init__(self, address: str, watchdog_interval_s: float | None = None) -> None:
        """Open a datagram socket for `address` (a path, or '@name' for an abstract socket)."""
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval_s = watchdog_interval_s
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier | None:
        """The notifier systemd asked for through the environment, or None outside systemd.

        Args:
            environ: the environment to read (default `os.environ`).
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        if not address.startswith(("/", "@")):
            log.warning("NOTIFY_SOCKET=%s is not a unix socket; not notifying systemd", address)
            return None
        return cls(address, _watchdog_interval(env))

    def send(self, *lines: str, **fields: object) -> None:
        """Send one notification, e.g. `send("READY=1", STATUS="12.0 fps")`.

        A failed send is logged, never raised: losing systemd must not stop the pipeline (the
        watchdog, if any, will act on the silence).
        """
        items = [*lines, *(f"{key}={value}" for key, value in fields.items())]
        # A newline inside a value would start a new (bogus) assignment.
        message = "\n".join(item.replace("\n", " ") for item in items)
        try:
            self._socket.sendto(message.encode(), self.address)
        except OSError as exc:
            level = logging.DEBUG if self._warned else logging.WARNING
            log.log(level, "cannot notify systemd at %r: %s", self.address, exc)
            self._warned = True

    def close(self) -> None:
        """Close the socket."""
        self._socket.close()


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds from `WATCHDOG_USEC`, or None if unset, invalid or meant for another process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        log.debug("WATCHDOG_PID=%s is not this process; not pinging", pid)
        return None
    try:
        value = int(usec)
    except ValueError:
        value = 0
    if value <= 0:
        log.warning("ignoring WATCHDOG_USEC=%r: not a positive integer", usec)
        return None
    return value / 1e6


class Health:
    """The pipeline's health per camera: a stall check, and what systemd hears about it.

    The pipeline calls `frame_done(camera)` (or a `listener(camera)`) after each frame has gone
    through every stage, `stopping()` on SIGTERM/SIGINT before draining, and `close()` at exit.
    `start()` runs a daemon thread that pings the watchdog at half its timeout while frames flow
    and refreshes `STATUS=`.
    """

    def __init__(
        self,
        metrics: Mapping[str, Metrics],
        notifier: SystemdNotifier | None,
        stall_s: float,
        watchdog: bool = True,
        status_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        side_outputs: SideOutputs | None = None,
    ) -> None:
        """Set up; nothing is sent before `start()` or the first frame.

        Args:
            metrics: each camera's metrics by name (for FPS and track counts in STATUS).
            notifier: where notifications go; None outside systemd.
            stall_s: no completed frame for this long means unhealthy.
            watchdog: send WATCHDOG=1 when systemd asks for it (config `health.watchdog`).
            status_interval_s: how often STATUS= is refreshed.
            clock: monotonic seconds (tests may pass their own).
            side_outputs: the degraded side outputs, named in STATUS (None: none tracked).

        Raises:
            ValueError: `stall_s` or `status_interval_s` is not positive.
        """
        for name, value in (("stall_s", stall_s), ("status_interval_s", status_interval_s)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value}")
        self._metrics = metrics
        self._notifier = notifier
        self._stall_s = stall_s
        self._status_interval_s = status_interval_s
        self._clock = clock
        self.side_outputs = side_outputs
        self._lock = threading.Lock()
        self._last_frame: dict[str, float | None] = dict.fromkeys(metrics)
        self._failures: dict[str, str] = {}  # cameras that cannot recover, with their last error
        self._flowed_since_ping = False
        self._pinging = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        interval = notifier.watchdog_interval_s if notifier is not None else None
        if interval is not None and not watchdog:
            log.warning(
                "health.watchdog is false but systemd set a watchdog (WatchdogSec=): "
                "without pings systemd will restart the service after %.0f s",
                interval,
            )
        self._ping_period = interval / 2 if interval is not None and watchdog else None

    def start(self) -> None:
        """Start the notification thread (nothing to do outside systemd)."""
        if self._notifier is None or self._thread is not None:
            return
        self._notifier.send(STATUS="starting: waiting for the first frame")
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._thread.start()

    @property
    def cameras(self) -> list[str]:
        """The cameras' names."""
        return list(self._metrics)

    def listener(self, camera: str) -> _CameraListener:
        """What one camera's pipeline calls after each complete frame."""
        return _CameraListener(self, camera)

    def frame_done(self, camera: str) -> None:
        """Record that a camera's frame went through every stage; the first one of all sends
        READY=1."""
        with self._lock:
            first = all(last is None for last in self._last_frame.values())
            self._last_frame[camera] = self._clock()
            self._flowed_since_ping = True
            recovered = self._failures.pop(camera, None) is not None
        if recovered:
            log.info("%s delivers frames again", camera)
        if first and self._notifier is not None:
            self._notifier.send("READY=1", STATUS="running: first frame done")
            log.info("first frame through the pipeline: ready")

    def camera_failed(self, camera: str, reason: str) -> None:
        """Mark a camera unhealthy: it keeps failing (`reason`: its last error) and is being
        restarted; its next complete frame clears this."""
        with self._lock:
            self._failures[camera] = reason

    def failure(self, camera: str) -> str | None:
        """Why a camera that keeps failing failed last; None while it is not failing."""
        with self._lock:
            return self._failures.get(camera)

    def last_frame_age_s(self, camera: str) -> float | None:
        """Seconds since the camera's last completed frame, None before its first one."""
        with self._lock:
            last = self._last_frame[camera]
        return None if last is None else self._clock() - last

    def healthy(self, camera: str | None = None) -> bool:
        """True when the camera (None: every camera) completed a frame in the last `stall_s` and
        is not failing."""
        names = [camera] if camera is not None else list(self._metrics)
        ages = [self.last_frame_age_s(name) for name in names]
        fresh = all(age is not None and age <= self._stall_s for age in ages)
        return fresh and not any(self.failure(name) for name in names)

    def stopping(self) -> None:
        """Tell systemd the service is shutting down (before the queues drain)."""
        if self._notifier is not None:
            self._notifier.send("STOPPING=1", STATUS="stopping: draining the pipeline")

    def close(self) -> None:
        """Stop the notification thread and close the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._notifier is not None:
            self._notifier.close()

    def status(self) -> str:
        """One line for `STATUS=` and logs: each camera's FPS, active tracks and frames, or why
        it is stalled or failing (with several cameras, each is named and the failed and stalled
        ones come first)."""
        lines = {name: self._camera_status(name) for name in self._metrics}
        if len(lines) == 1:
            text = next(iter(lines.values()))
        else:
            failed = [name for name in lines if self.failure(name) is not None]
            stalled = [name for name in lines if name not in failed and not self.healthy(name)]
            kinds = (("failed", failed), ("stalled", stalled))
            heads = [f"{kind}: {', '.join(names)}" for kind, names in kinds if names]
            text = "; ".join([*heads, *(f"{name}: {line}" for name, line in lines.items())])
        degraded = self.side_outputs.degraded() if self.side_outputs is not None else {}
        return f"{text}; degraded: {', '.join(degraded)}" if degraded else text

    def _camera_status(self, camera: str) -> str:
        snapshot = self._metrics[camera].snapshot()
        age, failure = self.last_frame_age_s(camera), self.failure(camera)
        if failure is not None:
            restarts = snapshot.counters.get("camera_restarts", 0)
            return f"failed: {failure} ({restarts} restarts)"
        if age is None:
            return "starting: waiting for the first frame"
        text = (
            f"{snapshot.gauges.get('fps', 0.0):.1f} fps, "
            f"{int(snapshot.gauges.get('active_tracks', 0))} active tracks, "
            f"{snapshot.counters.get('frames', 0)} frames"
        )
        return text if age <= self._stall_s else f"stalled: no frame for {age:.0f} s; {text}"

    def _run(self) -> None:
        notifier = self._notifier
        if notifier is None:
            return
        period = self._ping_period if self._ping_period is not None else math.inf
        next_ping = next_status = self._clock()
        while True:
            wait = max(0.0, min(next_ping, next_status) - self._clock())
            if self._stop.wait(wait):
                return
            now = self._clock()
            if now >= next_ping:
                next_ping = now + period
                self._ping(notifier, period)
            if now >= next_status:
                next_status = now + self._status_interval_s
                notifier.send(STATUS=self.status())

    def _ping(self, notifier: SystemdNotifier, period: float) -> None:
        """WATCHDOG=1 if a frame completed since the last ping; log when pings stop or resume."""
        with self._lock:
            flowed, self._flowed_since_ping = self._flowed_since_ping, False
        if flowed:
            notifier.send("WATCHDOG=1")
            if not self._pinging:
                log.info("frames flowing: pinging the systemd watchdog every %.1f s", period)
        elif self._pinging:
            log.warning("no frame completed in %.1f s: watchdog pings stop", period)
        self._pinging = flowed


class _CameraListener:
    """One camera's `frame_done()` (the pipeline's `FrameListener`)."""

    def __init__(self, health: Health, camera: str) -> None:
        self._health, self._camera = health, camera

    def frame_done(self) -> None:
        """One more of this camera's frames completed."""
        self._health.frame_done(self._camera)

    def camera_failed(self, reason: str) -> None:
        """This camera keeps failing; `reason` is its last error."""
        self._health.camera_failed(self._camera, reason)
