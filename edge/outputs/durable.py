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


def sync_dir(folder: Path) -> None:
    """Flush a folder's entries (files created, renamed or deleted in it) to the disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
