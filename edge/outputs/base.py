"""The sink interface, and the append-only line file the event and MOT sinks write."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from edge.errors import EdgeError
from edge.outputs.disk import DISK_ERRNOS, OutputDisk
from edge.outputs.durable import sync_dir
from edge.types import Packet, TrackEvent

# A line file this large is renamed to `STEM-<seq>SUFFIX` and a new one begun, so retention can
# delete the oldest pieces (`edge.retention`): MOT rows grow about 0.4 GB a day at 30 FPS.
ROTATE_BYTES = 64 * 1024 * 1024
SYNC_S = 1.0  # at most one fsync a second: per line costs 100x the write (docs/recording.md)


def rotated_path(path: Path, seq: int) -> Path:
    """The name of a line file's `seq`-th full piece: `events.jsonl` -> `events-000001.jsonl`."""
    stem, dot, suffix = path.name.partition(".")
    return path.with_name(f"{stem}-{seq:06d}{dot}{suffix}")


def rotated_files(path: Path) -> list[Path]:
    """A line file's full pieces, oldest first (the file itself not included)."""
    return [piece for _, piece in _pieces(path)]


def _pieces(path: Path) -> list[tuple[int, Path]]:
    stem, dot, suffix = path.name.partition(".")
    name = re.compile(rf"{re.escape(stem)}-(\d{{6,}}){re.escape(dot + suffix)}")
    found = [(int(m[1]), p) for p in path.parent.glob(f"{stem}-*") if (m := name.fullmatch(p.name))]
    return sorted(found)


class Sink(Protocol):
    """Where finished frames go."""

    def write(self, packet: Packet, fps: float) -> None:
        """Consume one finished frame (`fps`: the rate frames are completing at)."""

    def close(self, final_events: list[TrackEvent]) -> None:
        """Write the tracker's last events and finalize (called once, after the last frame)."""


class LineFile:
    """A text file written one whole line per system call, so a kill never tears a line.

    Appending (`append=True`) keeps what earlier runs wrote; a last line torn by a power cut or a
    full disk is ended first, so the next line starts on its own (readers skip the torn one).
    With `disk`, a write the disk refuses pauses the run's file outputs instead of raising.

    Lines are fsynced at most once every `SYNC_S` (at the first write after that long, or the
    next call of `write_lines`, which sinks make every frame): a power cut loses at most the
    lines of the last second. At `ROTATE_BYTES` the file becomes a numbered piece
    (`rotated_path`) and a new one begins; several processes or sinks appending to the same
    file agree on it under a lock, and each follows to the new file at its next write.

    Raises:
        EdgeError: the file cannot be opened for a reason other than a full or read-only disk.
    """

    def __init__(self, path: Path, append: bool = False, disk: OutputDisk | None = None) -> None:
        self.path, self.disk = path, disk
        self._flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_APPEND
        self._fd: int | None = None
        self._torn = False  # the file may end inside a line
        self._unsynced = False  # lines written since the last fsync
        self._synced_at = -SYNC_S  # monotonic time of the last fsync
        self._new = True  # its folder entry is not yet synced
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, self._flags | (0 if append else os.O_TRUNC), 0o644)
        except OSError as exc:
            if disk is None or exc.errno not in DISK_ERRNOS:
                raise EdgeError(
                    f"cannot write {path}: {exc.strerror} (choose another path)"
                ) from exc
            disk.failed(str(path), exc.strerror or str(exc))
        self._torn = append and _ends_inside_a_line(path)

    def write_lines(self, lines: list[str]) -> None:
        """Append whole lines (each without its newline), in one write; fsync if one is due."""
        if lines:
            data = "".join(line + "\n" for line in lines).encode()
            self._attempt(lambda: self._write(data))
        if self._unsynced and time.monotonic() - self._synced_at >= SYNC_S:
            self._attempt(self._sync)

    def _attempt(self, action: Callable[[], None]) -> None:
        if self.disk is None:
            action()
        else:
            self.disk.attempt(str(self.path), action)

    def _write(self, data: bytes) -> None:
        if self._fd is None:  # it could not be opened at start: the disk was full or read-only
            fd = self._reopen()
        else:
            fd = self._fd
            if self._moved(fd) or os.fstat(fd).st_size >= ROTATE_BYTES:
                fd = self._rotate(fd)
        if self._torn:
            data = b"\n" + data
        written = os.write(fd, data)
        # A pipe or a device (a consumer reading the rows live) has nothing to fsync.
        self._unsynced = stat.S_ISREG(os.fstat(fd).st_mode)
        self._torn = written < len(data)
        if self._torn:  # the disk took part of it: that line is torn, the rest is dropped
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def _sync(self) -> None:
        if self._fd is None:
            return
        os.fdatasync(self._fd)
        if self._new:  # a power cut could otherwise lose the new file's name
            sync_dir(self.path.parent)
            self._new = False
        self._unsynced, self._synced_at = False, time.monotonic()

    def _moved(self, fd: int) -> bool:
        """Whether the path now names another file (another writer rotated it) or none."""
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return True
        ours = os.fstat(fd)
        return (named.st_dev, named.st_ino) != (ours.st_dev, ours.st_ino)

    def _rotate(self, fd: int) -> int:
        """Rename the full file to its next piece (unless another writer just did), then open
        the file its path names now."""
        fcntl.flock(fd, fcntl.LOCK_EX)  # the other writers of this file wait here
        try:
            if not self._moved(fd) and os.fstat(fd).st_size >= ROTATE_BYTES:
                os.fdatasync(fd)
                pieces = _pieces(self.path)
                os.rename(self.path, rotated_path(self.path, pieces[-1][0] + 1 if pieces else 1))
                sync_dir(self.path.parent)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        self._fd = None
        return self._reopen()

    def _reopen(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = fd = os.open(self.path, self._flags, 0o644)
        self._torn, self._new = _ends_inside_a_line(self.path), True
        return fd

    def close(self, final_events: list[TrackEvent]) -> None:
        """Fsync and close the file."""
        if self._fd is not None:
            if self._unsynced:
                self._attempt(self._sync)
            os.close(self._fd)
            self._fd = None


def _ends_inside_a_line(path: Path) -> bool:
    """Whether a file's last byte is not a newline (an empty or missing file is not torn)."""
    try:
        with path.open("rb") as stream:
            if stream.seek(0, os.SEEK_END) == 0:
                return False
            stream.seek(-1, os.SEEK_END)
            return stream.read(1) != b"\n"
    except OSError:
        return False
