"""Retention: what bounds the recordings on disk, and in which order they go.

Each camera's `Retention` keeps its finished segments in recording order (their sequence
numbers, `edge.recordings`), never in the order of their UTC stamps: a clock that was wrong at
boot and then stepped by NTP cannot make a fresh segment look old. Ages come from the monotonic
clock for segments closed in this run, and from file modification times only for segments of
earlier runs (none counted older than a segment recorded before it); a segment of this run is
never deleted for its age because the wall clock jumped.

One `DiskBudget` per process bounds every camera together: `output.keep_gb` over all their
segments (and side files such as rotated event files and earlier runs' MOT files), and
`output.min_free_gb` free on the output file system. It deletes the oldest file of all: earlier
runs' files first, by modification time, then this run's by the monotonic time they closed. So
across cameras a clock step can only change which camera loses an earlier run's segment first;
it never makes a file of this run go before an earlier one.
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edge.metrics import Metrics
from edge.outputs.base import rotated_path
from edge.recordings import SNAPSHOT_NAME, Segment, camera_segments, parse_segment, segment_path
from edge.types import Packet, TrackEvent
from edge.utc import SYSTEM_CLOCK, Clock, iso, stamp_time

log = logging.getLogger(__name__)
REFRESH_S = 10.0  # how often side files are listed again (rotation adds one every few hours)


@dataclass(frozen=True)
class Kept:
    """A finished file retention may delete: its path, size, and when it was closed — the
    monotonic time if in this run, else None and its modification time (`mtime`) counts."""

    path: Path
    size: int
    mtime: float
    closed_mono: float | None = None

    @property
    def age_key(self) -> tuple[int, float]:
        """Oldest first across cameras: earlier runs' files by mtime, then this run's."""
        if self.closed_mono is None:
            return (0, self.mtime)
        return (1, self.closed_mono)

    def age_s(self, clock: Clock) -> float:
        """Seconds since it was closed: monotonic in this run, else by the wall clock (which
        can only make an earlier run's file look younger or older, never one of this run)."""
        if self.closed_mono is not None:
            return clock.monotonic() - self.closed_mono
        return clock.time() - self.mtime


class Member(Protocol):
    """What the budget bounds: a set of files deleted oldest first."""

    folder: Path

    def expire(self) -> None:
        """Delete the files beyond `keep_days`."""

    def used_bytes(self) -> int:
        """Bytes counted against `keep_gb` (with room for what is being written)."""

    def oldest(self) -> Kept | None:
        """The file that goes next, or None when nothing may go."""

    def delete_oldest(self, bound: str) -> None:
        """Delete `oldest()`, saying which bound (`keep_gb`, `min_free_gb`) made it go."""


class DiskBudget:
    """The process's bounds over every camera's files: total size and free space.

    Args:
        keep_bytes: bound on all members' bytes together; 0: none.
        min_free_bytes: delete the oldest files while the output file system has less free; 0:
            no floor.
    """

    def __init__(self, keep_bytes: int = 0, min_free_bytes: int = 0) -> None:
        self.keep_bytes, self.min_free_bytes = keep_bytes, min_free_bytes
        # Every camera's output thread calls in; members' state changes only under this lock.
        self.lock = threading.RLock()
        self._members: list[Member] = []
        self._side: dict[Path, SideFiles] = {}
        self.writing: set[Path] = set()  # line files this process appends to: never deleted
        self._floor_logged = False

    def join(self, member: Member) -> None:
        """Add a camera's retention (or side files) to the bounds."""
        with self.lock:
            self._members.append(member)

    def side_files(
        self, folder: Path, patterns: Sequence[str], keep_s: float, metrics: Metrics
    ) -> None:
        """Bound the event and MOT files that `patterns` (globs under `folder`) find, once per
        folder, except those in `writing`."""
        with self.lock:
            if folder not in self._side:
                self._side[folder] = SideFiles(folder, patterns, keep_s, metrics, self)

    def enforce(self) -> None:
        """Delete the files beyond each member's age bound, then the oldest files of all
        members until the size and free-space bounds hold (or none is left)."""
        with self.lock:
            for member in self._members:
                member.expire()
            # Free space is read once per file system and call, then counted down by what is
            # deleted: some file systems (btrfs, ZFS) report a deletion late, and a file still
            # open elsewhere frees nothing, so reading it again would delete on and on.
            free: dict[int, int | None] = {}
            while True:
                used = sum(m.used_bytes() for m in self._members)
                if self.keep_bytes and used > self.keep_bytes:
                    pool, bound = self._members, "keep_gb"
                else:
                    pool = [m for m in self._members if self._low(m.folder, free)]
                    bound = "min_free_gb"
                if not pool:
                    self._floor_logged = False
                    return
                candidates = [(kept, m) for m in pool if (kept := m.oldest())]
                if not candidates:
                    self._nothing_left(bound)
                    return
                kept, member = min(candidates, key=lambda c: c[0].age_key)
                member.delete_oldest(bound)
                device = _device(member.folder)
                if (known := free.get(device)) is not None:
                    free[device] = known + kept.size

    def _low(self, folder: Path, free: dict[int, int | None]) -> bool:
        """Whether `folder`'s file system is below the floor (`free`: what this call knows)."""
        if not self.min_free_bytes:
            return False
        device = _device(folder)
        if device not in free:
            free[device] = free_bytes(folder)
        known = free[device]
        return known is not None and known < self.min_free_bytes

    def _nothing_left(self, bound: str) -> None:
        if bound == "min_free_gb" and not self._floor_logged:
            self._floor_logged = True
            log.warning(
                "output disk below output.min_free_gb (%.2f GB free) with no finished recording "
                "left to delete: free space on it, or lower output.min_free_gb",
                self.min_free_bytes / 1e9,
            )


class RetentionTick:
    """A camera that records no video still bounds its event and MOT files: the device's bounds
    are applied from its output thread at most every `every_s` (a recording does it as its
    segments grow), and at close.

    Args:
        budget: the device's bounds.
        every_s: the shortest time between two checks.
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(
        self, budget: DiskBudget, every_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.budget, self.every_s, self._clock = budget, every_s, clock
        self._next = 0.0

    def write(self, packet: Packet, fps: float) -> None:
        """Apply the bounds if `every_s` has passed since the last time."""
        if self._clock() >= self._next:
            self._next = self._clock() + self.every_s
            self.budget.enforce()

    def close(self, final_events: list[TrackEvent]) -> None:
        """Apply the bounds once more."""
        self.budget.enforce()


class SideFiles:
    """An output folder's finished event and MOT files (full pieces of rotated files, earlier
    runs' files), bounded like the segments: a file found at start is an earlier run's (its
    mtime ages it, none counted older than a piece of the same file numbered before it), one
    that appears later was closed in this run (the monotonic clock ages it).

    Args:
        folder: the output folder (`output.dir`).
        patterns: globs under it, e.g. `runs/*/tracks*.mot.txt`.
        keep_s: bound on a file's age; 0: none.
        metrics: counts `side_files_deleted`.
        budget: the process's bounds (joined here); its `writing` files are never taken.
        clock: wall and monotonic time.
    """

    def __init__(
        self,
        folder: Path,
        patterns: Sequence[str],
        keep_s: float,
        metrics: Metrics,
        budget: DiskBudget,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.folder, self.patterns, self.keep_s = folder, patterns, keep_s
        self.metrics, self.budget, self.clock = metrics, budget, clock
        self._kept: dict[Path, Kept] = {}
        self._refreshed = clock.monotonic()
        self._refresh(closed_mono=None)
        budget.join(self)

    def _refresh(self, closed_mono: float | None) -> None:
        """Take in files that appeared (closed at `closed_mono`), forget vanished ones."""
        found = {
            Path(name)
            for pattern in self.patterns
            for name in glob.glob(str(self.folder / pattern))
        } - self.budget.writing
        new = []
        for path in found - self._kept.keys():
            try:
                status = path.stat()
            except OSError:
                continue
            new.append(Kept(path, status.st_size, status.st_mtime, closed_mono))
        if closed_mono is None:  # earlier runs': aged in each line file's order of pieces
            new = [
                kept
                for _, series in itertools.groupby(sorted(new, key=_piece), lambda k: _piece(k)[0])
                for kept in _ratcheted(list(series))
            ]
        self._kept.update((kept.path, kept) for kept in new)
        for path in self._kept.keys() - found:
            del self._kept[path]
        self._refreshed = self.clock.monotonic()

    def expire(self) -> None:
        """Take in newly finished files (every `REFRESH_S`), delete those beyond `keep_s`."""
        if self.clock.monotonic() - self._refreshed >= REFRESH_S:
            self._refresh(closed_mono=self.clock.monotonic())
        while self.keep_s and (kept := self.oldest()) and kept.age_s(self.clock) > self.keep_s:
            self.delete_oldest("keep_days")

    def used_bytes(self) -> int:
        """The finished files' bytes."""
        return sum(kept.size for kept in self._kept.values())

    def oldest(self) -> Kept | None:
        """The oldest finished file, if any."""
        return min(self._kept.values(), key=lambda kept: kept.age_key, default=None)

    def delete_oldest(self, bound: str) -> None:
        """Delete the oldest finished file."""
        kept = self.oldest()
        if kept is None:
            return
        del self._kept[kept.path]
        if _unlink(kept.path, "old file"):
            self.metrics.increment("side_files_deleted")
            log.info("deleted %s (%.1f MB): output.%s reached", kept.path, kept.size / 1e6, bound)


def line_file_patterns(names: Sequence[str]) -> list[str]:
    """Globs for every file and full piece that line-file names (`output.events`,
    `output.mot`, with `{run}`/`{camera}`) may have made, e.g. `runs/*/tracks-*.mot.txt`."""
    patterns = []
    for name in filter(None, names):
        whole = Path(name.replace("{run}", "*").replace("{camera}", "*"))
        stem, dot, suffix = whole.name.partition(".")
        patterns += [str(whole), str(whole.with_name(f"{stem}-*{dot}{suffix}"))]
    return patterns


def _device(folder: Path) -> int:
    """The file system `folder` is on (-1 when it cannot be read)."""
    try:
        return os.stat(folder).st_dev
    except OSError:
        return -1


def free_bytes(folder: Path) -> int | None:
    """Bytes an unprivileged writer may still use on `folder`'s file system (None: unknown)."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


class Retention:
    """Bounds one camera's segments in age, and with the other cameras' in size and free space
    (`budget`); the oldest go first, with the snapshots taken while they were written. Every
    deletion is logged and counted.

    The open segment (being written) is never deleted, but its size counts.

    Args:
        folder: the camera's segment folder.
        camera: the camera's name.
        snapshots: the camera's snapshot folder, or None.
        keep_s: bound on a segment's age (since it closed); 0: none.
        metrics: counts `segments_deleted` and `recording_bytes_deleted`, sets `recording_bytes`.
        budget: the process's size and free-space bounds (this retention joins it).
        margin_bytes: room kept for the open segment's growth at least (e.g. 2 s of video).
        clock: wall and monotonic time (a test steps the wall clock).
    """

    def __init__(
        self,
        folder: Path,
        camera: str,
        snapshots: Path | None,
        keep_s: float,
        metrics: Metrics,
        budget: DiskBudget,
        margin_bytes: int = 0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.folder, self.camera, self.snapshots = folder, camera, snapshots
        self.keep_s, self.metrics, self.budget = keep_s, metrics, budget
        self.margin_bytes, self.clock = margin_bytes, clock
        found = camera_segments(folder, camera) if folder.is_dir() else []
        earlier = _ratcheted([Kept(s.path, s.size, s.mtime) for s in found])
        self._closed = deque(zip(found, earlier, strict=True))
        self._closed_bytes = sum(s.size for s in found)
        self._last_seq = max((s.seq for s in found if s.seq is not None), default=0)
        self._open: tuple[Path, int] | None = None  # the open segment and its size
        self._open_bytes, self._margin = 0, 0
        self._growth: deque[int] = deque(maxlen=30)  # its growth between recent calls
        budget.join(self)

    def next_path(self, start_utc_s: float) -> Path:
        """The file of the camera's next segment, starting at UTC `start_utc_s`."""
        with self.budget.lock:
            self._last_seq += 1
            return segment_path(self.folder, self.camera, start_utc_s, self._last_seq)

    def closed(self, path: Path) -> None:
        """Count a segment that was just finished (in this run)."""
        segment = parse_segment(path, self.camera)
        with self.budget.lock:
            if segment is None or any(s.path == path for s, _ in self._closed):
                return
            kept = Kept(path, segment.size, segment.mtime, self.clock.monotonic())
            self._closed.append((segment, kept))
            self._closed_bytes += segment.size

    def enforce(self, open_segment: Path | None = None) -> None:
        """Delete the oldest finished segments beyond the bounds (and their snapshots).

        Args:
            open_segment: the segment being written; room for twice its largest recent growth
                between calls is kept, so the total stays under the bound until the next call.
        """
        with self.budget.lock:
            self._measure(open_segment)
            self.budget.enforce()
            self.metrics.set("recording_bytes", self._closed_bytes + self._open_bytes)

    def expire(self) -> None:
        """Delete the segments closed longer than `keep_s` ago, oldest first."""
        while self.keep_s and self._closed and self._closed[0][1].age_s(self.clock) > self.keep_s:
            self.delete_oldest("keep_days")

    def _measure(self, open_segment: Path | None) -> None:
        self._open_bytes, self._margin = 0, 0
        if open_segment is None:
            return
        try:
            self._open_bytes = open_segment.stat().st_size
        except FileNotFoundError:
            self._open_bytes = 0
        before = self._open[1] if self._open and self._open[0] == open_segment else 0
        self._growth.append(max(self._open_bytes - before, 0))
        self._open = (open_segment, self._open_bytes)
        # The file grows a keyframe interval at a time: room for the largest recent steps.
        self._margin = max(self.margin_bytes, 2 * max(self._growth))

    def used_bytes(self) -> int:
        """The finished segments' bytes, the open one's, and room for its growth."""
        return self._closed_bytes + self._open_bytes + self._margin

    def oldest(self) -> Kept | None:
        """The camera's first segment in recording order, if any is finished."""
        return self._closed[0][1] if self._closed else None

    def delete_oldest(self, bound: str) -> None:
        """Delete the camera's oldest finished segment and the snapshots taken while it was
        written (by their stamps, which the same clock wrote as the segment's)."""
        segment, kept = self._closed.popleft()
        self._closed_bytes -= kept.size
        if not _unlink(segment.path, "old segment"):
            return
        self.metrics.increment("segments_deleted")
        self.metrics.increment("recording_bytes_deleted", kept.size)
        log.info(
            "deleted %s (%.1f MB, ended %s): output.%s reached",
            segment.path.name,
            kept.size / 1e6,
            iso(segment.end),
            bound,
        )
        if self.snapshots is not None:
            self._delete_snapshots(self.snapshots, segment)

    def _delete_snapshots(self, folder: Path, segment: Segment) -> None:
        count = 0
        for path in folder.glob(f"{self.camera}_*.jpg"):
            match = SNAPSHOT_NAME.fullmatch(path.name)
            if not match or match["camera"] != self.camera:
                continue
            try:
                taken = stamp_time(match["stamp"])
            except ValueError:
                continue
            if segment.start <= taken <= segment.end and _unlink(path, "old snapshot"):
                count += 1
        if count:
            self.metrics.increment("snapshots_deleted", count)
            log.info(
                "deleted %d snapshots of %s taken in %s", count, self.camera, segment.path.name
            )


def _ratcheted(files: Sequence[Kept]) -> list[Kept]:
    """Earlier runs' files (in recording order) as retention keeps them: none is older than one
    recorded before it, so a file written while the clock was wrong (its mtime years back) is
    aged like the newest file before it, not deleted at the next start."""
    kept, newest = [], float("-inf")
    for file in files:
        newest = max(newest, file.mtime)
        kept.append(dataclasses.replace(file, mtime=newest))
    return kept


def _piece(kept: Kept) -> tuple[Path, float]:
    """The line file a side file is or was cut from, and its place in that file's order: full
    pieces by number, the file itself (written after them) last, e.g. `events-000002.jsonl`:
    (`events.jsonl`, 2)."""
    stem, dot, suffix = kept.path.name.partition(".")
    base, _, seq = stem.rpartition("-")
    whole = kept.path.with_name(f"{base}{dot}{suffix}")
    if seq.isdigit() and rotated_path(whole, int(seq)) == kept.path:
        return whole, int(seq)
    return kept.path, math.inf


def _unlink(path: Path, what: str) -> bool:
    """Delete a file; False when it could not be (already gone, or the error logged)."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("cannot delete %s %s: %s", what, path, exc.strerror)
        return False
    return True
