"""Inference engines: one interface (`base`), its backends, the TensorRT sidecar and builder.

Detector, embedder and colorizer hold an `InferenceEngine` and never know which backend runs it.
Backends are modules of their own (`onnxruntime`, `tensorrt`), imported lazily by `open_engine`
so this package imports on machines that lack them. `build` makes TensorRT engines on the device.
May import: numpy, onnx/onnxruntime/tensorrt/pycuda (lazily), `edge.errors`, `edge.files`.
"""

from __future__ import annotations

from pathlib import Path

from edge.engines.base import InferenceEngine, TensorInfo
from edge.engines.precision import check_gate
from edge.errors import EdgeError

BACKENDS = ("auto", "onnxruntime", "tensorrt")
__all__ = ["BACKENDS", "InferenceEngine", "TensorInfo", "open_engine"]


def open_engine(
    path: str | Path,
    backend: str = "auto",
    threads: int = 0,
    gated: bool = True,
    foreign_isa: str = "refuse",
) -> InferenceEngine:
    """Load a model file with the backend named, or the one its file type implies.

    Args:
        path: model file (`.onnx`, or a TensorRT `.engine`).
        backend: one of BACKENDS. `auto` runs an `.engine` with TensorRT, and an `.onnx` with
            TensorRT when an up-to-date engine lies beside it (same name, `.engine`; for
            `NAME_fp16.onnx` the FP16 engine `NAME.engine`) and TensorRT can run it, else with
            ONNX Runtime, logging one warning line with the cause and fix (none on a machine
            without TensorRT or engines). `tensorrt` on an `.onnx` requires that engine.
        threads: CPU threads for ONNX Runtime (0: its default).
        gated: refuse an INT8 model whose metadata lacks a passed accuracy gate
            (`edge.engines.precision`); False only to measure such a model against FP32.
        foreign_isa: ONNX Runtime with an INT8 model quantized for VNNI on a CPU without it:
            "refuse" or "warn" (`edge.engines.onnxruntime.check_isa`).

    Raises:
        EdgeError: the file is missing, of an unknown type, the backend is unknown or cannot
            run it, or (gated) it is an INT8 model that did not pass its accuracy gate.
    """
    path = Path(path)
    if backend not in BACKENDS:
        raise EdgeError(f"unknown backend '{backend}': choose one of {', '.join(BACKENDS)}")
    if not path.is_file():
        raise EdgeError(f"model file not found: {path} (run `make models` to create it)")
    if path.suffix not in (".onnx", ".engine"):
        raise EdgeError(
            f"unsupported model file type '{path.suffix}' for {path}: expected .onnx or .engine"
        )
    if path.suffix == ".engine" and backend == "onnxruntime":
        raise EdgeError(f"{path.name} is a TensorRT engine: ONNX Runtime runs the .onnx model")
    if backend != "onnxruntime":
        from edge.engines.tensorrt import open_tensorrt

        engine = open_tensorrt(path, required=backend == "tensorrt" or path.suffix == ".engine")
    else:
        engine = None
    if engine is None:
        from edge.engines.onnxruntime import OnnxRuntimeEngine

        engine = OnnxRuntimeEngine(path, threads=threads, foreign_isa=foreign_isa)
    if gated:
        try:
            check_gate(engine.metadata, path.name, 'run the FP32 model (precision = "fp32")')
        except EdgeError:
            engine.close()
            raise
    return engine
