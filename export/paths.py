"""Where generated artifacts live: one ignored folder, `artifacts/` at the repository root."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("EDGE_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts"))
DATA = ROOT / "data"
CACHE = ROOT / "cache"
MODELS = ROOT / "models"
OUTPUTS = ROOT / "outputs"
