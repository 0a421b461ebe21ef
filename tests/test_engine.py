"""The inference-engine interface and its ONNX Runtime backend, on real ONNX models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.engines import open_engine
from edge.errors import EdgeError
from tests.onnx_models import scale_model


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return scale_model(tmp_path / "scale.onnx", ["batch", 3])


def test_runs_named_inputs_and_reports_tensors(model: Path) -> None:
    with open_engine(model) as engine:
        assert [(t.name, t.shape, t.dtype) for t in engine.inputs] == [
            ("x", (None, 3), np.dtype(np.float32))
        ]
        assert engine.inputs[0].shape_text() == "(?, 3)"
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        np.testing.assert_array_equal(engine.run({"x": x})["y"], x * 2)


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({"x": np.zeros((1, 3), np.float64)}, r"input 'x' expects dtype float32, got float64"),
        ({"x": np.zeros((1, 4), np.float32)}, r"input 'x' expects shape \(\?, 3\), got \(1, 4\)"),
        ({"x": np.zeros(3, np.float32)}, r"expects shape \(\?, 3\), got \(3,\)"),
        ({}, r"inputs \['x'\] expected, got \[\]"),
        ({"x": np.zeros((1, 3), np.float32), "z": np.zeros(1)}, r"got \['x', 'z'\]"),
    ],
)
def test_bad_feeds_are_named(model: Path, feeds: dict[str, np.ndarray], message: str) -> None:
    with open_engine(model) as engine, pytest.raises(EdgeError, match=message):
        engine.run(feeds)


def test_missing_model_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(EdgeError, match=r"model file not found: .*nope.onnx \(run `make models`"):
        open_engine(tmp_path / "nope.onnx")


def test_corrupt_model_is_one_line_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not protobuf")
    with pytest.raises(EdgeError, match=r"cannot load ONNX model .*corrupt.onnx") as caught:
        open_engine(corrupt)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "backend", "message"),
    [
        ("m.onnx", "tflite", r"unknown backend 'tflite': choose one of auto, onnxruntime"),
        ("m.pt", "auto", r"unsupported model file type '.pt'"),
    ],
)
def test_bad_backend_or_file_type(tmp_path: Path, name: str, backend: str, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    with pytest.raises(EdgeError, match=message):
        open_engine(path, backend)
