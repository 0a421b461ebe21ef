"""On-device runtime of the edge vision toolkit (no torch, tensorflow or ultralytics here).

Packages, by concern (each says what it may import): `engines` (inference backends, TensorRT
sidecar and builder), `models` (detector, embedder, tracker, colorizer), `video` (GStreamer
sources, capture, encoders, file reading), `outputs` (drawing and one sink per output),
`service` (systemd health, metrics endpoint), `cli` (argparse front ends only; nothing imports
them). Modules here: `config`, `types` and `detections` (records), `pipeline` (the threaded
stages), `runtime` (a running pipeline from a config), `recordings` (segments on disk: names,
retention, index, export), `utc` (time stamps), `metrics`, `paths`, `files`, `errors`.

The public API below resolves lazily, so `import edge` stays cheap.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# numpy's OpenBLAS threads busy-wait after each call and steal the cores the inference engines
# need (measured: tracker update 30 ms -> 2 ms, detector faster too); the runtime's numpy work is
# small matrices, so one BLAS thread costs nothing. It only takes effect if set before numpy
# loads: entry points import `edge` before anything that imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

if TYPE_CHECKING:
    from edge.detections import Detections
    from edge.engines import open_engine
    from edge.errors import EdgeError
    from edge.models.colorizer import Colorizer
    from edge.models.detector import Detector
    from edge.models.embedder import Embedder
    from edge.models.tracker import Tracker

_PUBLIC = {
    "open_engine": "edge.engines",
    "Detector": "edge.models.detector",
    "Embedder": "edge.models.embedder",
    "Colorizer": "edge.models.colorizer",
    "Tracker": "edge.models.tracker",
    "Detections": "edge.detections",
    "EdgeError": "edge.errors",
}
__all__ = [
    "Colorizer",
    "Detections",
    "Detector",
    "EdgeError",
    "Embedder",
    "Tracker",
    "open_engine",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'edge' has no attribute '{name}'")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
