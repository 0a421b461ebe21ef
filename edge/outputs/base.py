"""The sink interface, and the append-only line file the event and MOT sinks write."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Protocol

from edge.errors import EdgeError
from edge.outputs.disk import DISK_ERRNOS, OutputDisk
from edge.types import Packet, TrackEvent


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

    Raises:
        EdgeError: the file cannot be opened for a reason other than a full or read-only disk.
    """

    def __init__(self, path: Path, append: bool = False, disk: OutputDisk | None = None) -> None:
        self.path, self.disk = path, disk
        self._flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_APPEND
        self._fd: int | None = None
        self._torn = False  # the file may end inside a line
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
        """Append whole lines (each without its newline), in one write."""
        if not lines:
            return
        data = "".join(line + "\n" for line in lines).encode()
        if self.disk is None:
            self._write(data)
        else:
            self.disk.attempt(str(self.path), lambda: self._write(data))

    def _write(self, data: bytes) -> None:
        if self._fd is None:  # it could not be opened at start: the disk was full or read-only
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, self._flags, 0o644)
            self._torn = _ends_inside_a_line(self.path)
        if self._torn:
            data = b"\n" + data
        written = os.write(self._fd, data)
        self._torn = written < len(data)
        if self._torn:  # the disk took part of it: that line is torn, the rest is dropped
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self, final_events: list[TrackEvent]) -> None:
        """Close the file."""
        if self._fd is not None:
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
