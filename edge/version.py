"""The toolkit's version, as `pyproject.toml` beside the `edge` package states it (the installer
copies that file with the code; the source tree is not pip-installed)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 on JetPack 6
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


@functools.cache
def version() -> str:
    """The `[project]` version, e.g. "0.1.0"; "unknown" when pyproject.toml is missing."""
    try:
        return str(tomllib.loads(PYPROJECT.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"
