"""Making finished files survive a power cut: `fsync` of a file's data and of the folder entry
that names it (without the folder's, a new file can vanish at reboot though its data were saved).
"""

from __future__ import annotations

import os
from pathlib import Path


def sync_file(path: Path) -> None:
    """Flush a closed file's data and its folder's entry to the disk.

    Raises:
        OSError: the file is gone or the disk refused (the caller decides what that costs).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    sync_dir(path.parent)


def sync_dir(folder: Path, strict: bool = True) -> None:
    """Flush a folder's entries (files created, renamed or deleted in it) to the disk.

    Args:
        folder: the folder.
        strict: raise when the file system refuses to fsync a folder (some do); False: that
            refusal is ignored, as where losing a new name costs less than stopping the output.

    Raises:
        OSError: the folder cannot be opened, or (`strict`) its fsync failed.
    """
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError:
        if strict:
            raise
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes) -> None:
    """Replace `path`'s content with `data` so a power cut leaves the old content or the new:
    written beside it, fsynced, renamed over it, then the folder's entry fsynced.

    Raises:
        OSError: the disk refused (`path` then still holds its old content).
    """
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, path)
    sync_dir(path.parent)
