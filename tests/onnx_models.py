"""Tiny real ONNX models built with onnx.helper, for tests that need a model, not a trained one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def constant_chroma_model(path: Path, chroma: tuple[float, float], size: int = 128) -> Path:
    """A valid chroma colorizer (N, S, S, 1) -> (N, S, S, 2) whose output is `chroma` everywhere.

    It is a 1×1 convolution with zero weights and the chroma as bias, wrapped in the NHWC
    transposes that tf2onnx emits, so it exercises the same layouts as the real model.
    """
    nodes = [
        helper.make_node("Transpose", ["lightness"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w", "b"], ["conv"]),
        helper.make_node("Transpose", ["conv"], ["chroma"], perm=[0, 2, 3, 1]),
    ]
    weights = [
        numpy_helper.from_array(np.zeros((2, 1, 1, 1), np.float32), "w"),
        numpy_helper.from_array(np.array(chroma, np.float32), "b"),
    ]
    graph = helper.make_graph(
        nodes,
        "constant_chroma",
        [helper.make_tensor_value_info("lightness", TensorProto.FLOAT, ["N", size, size, 1])],
        [helper.make_tensor_value_info("chroma", TensorProto.FLOAT, ["N", size, size, 2])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def scale_model(path: Path, shape: list[int | str], factor: float = 2.0) -> Path:
    """y = x * factor, with the given input/output shape: the smallest model with a real graph."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        initializer=[numpy_helper.from_array(np.array(factor, np.float32), "k")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path
