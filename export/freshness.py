"""Reuse an exported model while it is newer than the weights it came from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def reuse_or_export(target: Path, source: Path, export: Callable[[], Path]) -> Path:
    """`target` when it exists and is newer than `source`; otherwise the result of `export()`."""
    if target.is_file() and target.stat().st_mtime > source.stat().st_mtime:
        return target
    return export()
