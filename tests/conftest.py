"""Fixtures shared by every test module (defined in their own modules, gathered here).

One process runs the whole suite, so it loads TensorFlow (colorizer export tests) and torch
(ultralytics parity, ReID export). torch's x86 wheel pulls in Triton, whose bundled LLVM clashes
with TensorFlow's: importing both segfaults. Triton only compiles GPU kernels, which nothing here
uses, so the test process tells torch it is absent. The project's commands never load both.
"""

import sys

sys.modules.setdefault("triton", None)  # type: ignore[assignment]

from tests.detect_models import (  # noqa: E402
    detector_320,
    detector_onnx,
    model_overrides,
    reid_onnx,
    vtest_frames,
)
from tests.mqtt_broker import broker, tls_broker  # noqa: E402

__all__ = [
    "broker",
    "detector_320",
    "detector_onnx",
    "model_overrides",
    "reid_onnx",
    "tls_broker",
    "vtest_frames",
]
