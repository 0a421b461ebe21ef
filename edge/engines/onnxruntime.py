"""ONNX Runtime backend: the default where TensorRT is absent (CPU)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge.engines.base import InferenceEngine, TensorInfo
from edge.errors import EdgeError

# ONNX Runtime reports element types as strings such as "tensor(float16)".
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _tensor_info(arg: ort.NodeArg) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    if arg.type not in _ORT_DTYPES:
        raise EdgeError(f"tensor '{arg.name}' has unsupported element type {arg.type}")
    return TensorInfo(arg.name, shape, np.dtype(_ORT_DTYPES[arg.type]))


class OnnxRuntimeEngine(InferenceEngine):
    """An ONNX model run by ONNX Runtime's CPU provider."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        # Idle worker threads must not spin: the detector, embedder and colorizer sessions share
        # the CPU cores, and a spinning session slows the others (embedder 137-173 -> 76-78 ms
        # per frame with spinning off, measured with `python -m benchmarks.track` under load).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises several unrelated types for a bad file
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
            raise EdgeError(
                f"cannot load ONNX model {path}: {first_line} (re-export it with `make models`)"
            ) from exc
        self.path = path
        self.inputs = tuple(_tensor_info(a) for a in self._session.get_inputs())
        self.outputs = tuple(_tensor_info(a) for a in self._session.get_outputs())
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [t.name for t in self.outputs]
        results = self._session.run(names, dict(feeds))
        return dict(zip(names, results, strict=True))
