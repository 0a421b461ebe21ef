"""Fixtures shared by every test module (defined in their own modules, gathered here)."""

from tests.detect_models import detector_onnx, reid_onnx, vtest_frames

__all__ = ["detector_onnx", "reid_onnx", "vtest_frames"]
