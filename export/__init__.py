"""Model preparation: data collection, colorizer training/evaluation, ONNX export."""
