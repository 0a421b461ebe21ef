"""Where generated artifacts live: one ignored folder, `artifacts/` at the repository root
(`EDGE_ARTIFACTS` moves it, e.g. to /var/lib/edge-vision/artifacts on a device), and the file
names of the three models, named here once for the exporters, the builder and the config."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("EDGE_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts"))
DATA = ROOT / "data"
CACHE = ROOT / "cache"
MODELS = ROOT / "models"
OUTPUTS = ROOT / "outputs"

DETECTOR_FILE = "yolov8_detector.onnx"
EMBEDDER_FILE = "reid_mobilenetv2.onnx"
COLORIZER_FILE = "colorizer.onnx"
