"""`python -m export COMMAND`: data collection, training, evaluation and ONNX export."""

from __future__ import annotations

import sys

from edge.cli import main
from export import adapt, data, evaluate, onnx_export, quantize, reid, train, yolo

COMMANDS = [
    data.register,
    train.register,
    onnx_export.register,
    evaluate.register,
    adapt.register,
    yolo.register,
    reid.register,
    quantize.register,
]

if __name__ == "__main__":
    sys.exit(main("export", __doc__ or "", COMMANDS, sys.argv[1:]))
