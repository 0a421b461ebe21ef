"""Output files: check a folder is writable up front, replace a file only on success."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.errors import EdgeError


def writable_dir(folder: Path) -> Path:
    """Create `folder` if needed and check it is writable, before any long work starts.

    Raises:
        EdgeError: the folder cannot be created or written.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeError(f"cannot create output folder {folder}: {exc.strerror}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise EdgeError(f"output folder {folder} is not writable: choose another with --output")
    return folder


@contextmanager
def replaced_on_success(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; it replaces `target` only if the block succeeds.

    A failed step therefore never leaves a half-written file or destroys the previous one.
    """
    temporary = target.with_name(f".{target.stem}.partial{target.suffix}")
    try:
        yield temporary
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
