"""The output folder's disk, shared by every file output of a run: when it is full or read-only,
writing pauses with one error line and a metric, and resumes by itself once the disk can take
data again. Detection, tracking, health and the sinks that do not write files never notice, and
the process never exits because of the disk (under systemd that would be a restart loop).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from edge.errors import EdgeError
from edge.metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")
# At start, errors that mean "this disk cannot take data now", as opposed to a wrong path or
# permission (which stop the run with a message). Once running, any failed write pauses.
DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO}
RETRY_S = 5.0
RELOG_S = 600.0  # the same failure again within this time is logged at debug level only


class OutputDisk:
    """Decides whether file outputs may write, from what the last writes met.

    Every method is called from the pipeline's output thread.

    Args:
        folder: the output folder (`output.dir`).
        metrics: counts `disk_errors` (each outage) and `writes_skipped`; sets `output_paused`.
        min_free_bytes: free space needed before writing resumes after a full disk.
        retry_s: how often a paused disk is probed.
    """

    def __init__(
        self, folder: Path, metrics: Metrics, min_free_bytes: int, retry_s: float = RETRY_S
    ) -> None:
        self.folder, self.metrics = folder, metrics
        self.min_free_bytes, self.retry_s = min_free_bytes, retry_s
        self.paused = False
        self._probed = 0.0  # when the disk was last tried
        self._logged: tuple[str, float] | None = None  # last reason logged, and when
        metrics.set("output_paused", 0)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno not in DISK_ERRNOS:
                raise EdgeError(f"cannot create output folder {folder}: {exc.strerror}") from exc
            self.failed(str(folder), exc.strerror or str(exc))
            return
        if not os.access(folder, os.W_OK | os.X_OK):
            if not _read_only(folder):
                raise EdgeError(
                    f"output folder {folder} is not writable: choose another (output.dir)"
                )
            self.failed(str(folder), "Read-only file system")

    def failed(self, what: str, reason: str) -> None:
        """A write failed because of the disk: pause every file output (one log line)."""
        reason = reason.rstrip(".")
        self._probed = time.monotonic()
        if self.paused:
            return
        self.paused = True
        self.metrics.increment("disk_errors")
        self.metrics.set("output_paused", 1)
        now = time.monotonic()
        if self._logged and self._logged[0] == reason and now - self._logged[1] < RELOG_S:
            log.debug("output disk: cannot write %s again: %s", what, reason)
            return
        self._logged = (reason, now)
        log.error(
            "output disk: cannot write %s: %s; recording, event and track files and snapshots "
            "pause until the disk takes data again (free space, or lower output.keep_gb) and "
            "then resume by themselves; detection, tracking and health go on",
            what,
            reason,
        )

    def writable(self) -> bool:
        """Whether file outputs may write now; while paused, probes the disk every `retry_s`."""
        if not self.paused:
            return True
        if time.monotonic() - self._probed < self.retry_s:
            return False
        self._probed = time.monotonic()
        free = _free_bytes(self.folder)
        if free is None or free < self.min_free_bytes:
            return False
        self.paused = False
        self.metrics.set("output_paused", 0)
        log.info("output disk: %s takes data again, writing resumed", self.folder)
        return True

    def attempt(self, what: str, action: Callable[[], T]) -> T | None:
        """Run one write if the disk allows; a disk error pauses instead of raising.

        Returns:
            What `action` returned, or None when it was skipped or failed.
        """
        if not self.writable():
            self.metrics.increment("writes_skipped")
            return None
        try:
            return action()
        except OSError as exc:
            self.failed(what, exc.strerror or str(exc))
            self.metrics.increment("writes_skipped")
            return None


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _free_bytes(folder: Path) -> int | None:
    """Bytes an unprivileged writer may still use in `folder`, or None if it cannot write."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stats = os.statvfs(folder)
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY:
        return None
    return stats.f_bavail * stats.f_frsize
