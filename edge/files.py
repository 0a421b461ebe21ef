"""Output files: check a folder is writable up front, replace a file only on success.

Under systemd the unit's sandbox (`ProtectSystem=strict`) leaves the service only the folders it
names in `StateDirectory=`, `CacheDirectory=` and `LogsDirectory=` (and `ReadWritePaths=`) to
write; systemd passes the first three as `$STATE_DIRECTORY`, `$CACHE_DIRECTORY` and
`$LOGS_DIRECTORY`. A config path outside them fails with "read-only file system", so the checks
here say where the unit allows writing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
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


def unit_directories(environ: Mapping[str, str] = os.environ) -> list[Path]:
    """The folders the systemd unit lets the service write; empty when no unit names any."""
    names = ("STATE_DIRECTORY", "CACHE_DIRECTORY", "LOGS_DIRECTORY")
    return [Path(p) for name in names for p in environ.get(name, "").split(":") if p]


def write_problem(folder: Path) -> str | None:
    """Why no file can be created in `folder` (made if missing), or None when one can.

    A file is really created and removed: `os.access` would answer yes to root, and for a path
    that does not exist yet it cannot tell a read-only parent from a writable one.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    return None


def unwritable(folder: Path, key: str) -> str | None:
    """One line naming `folder`, why it cannot be written and what to set config `key` to; None
    when files can be written there."""
    problem = write_problem(folder)
    if problem is None:
        return None
    allowed = unit_directories()
    if allowed:
        where = " and ".join(str(p) for p in allowed)
        fix = f"under systemd the unit allows writing only under {where}; set {key} inside them"
    else:
        fix = f"set {key} to a folder this user can write"
    return f"{folder.absolute()} is not writable ({problem}): {fix}"


def outside_unit_directories(folder: Path) -> bool:
    """Whether the systemd unit names writable folders and `folder` lies in none of them."""
    allowed = unit_directories()
    target = folder.resolve()
    return bool(allowed) and not any(target.is_relative_to(p.resolve()) for p in allowed)


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
