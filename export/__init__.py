"""Model preparation: data collection, colorizer training/evaluation, ONNX export."""

import os

# TensorFlow's C++ start-up chatter drowns the progress bars; keep warnings and errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
