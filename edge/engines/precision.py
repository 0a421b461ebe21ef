"""Model precision (FP32, FP16, INT8): which file holds it, and the INT8 accuracy gate.

A model's FP16 and INT8 variants lie beside its FP32 `.onnx` as `NAME_fp16.onnx` and
`NAME_int8.onnx`; `edge.precision` in the ONNX metadata says which one a file is (absent: FP32).
`python -m export quantize` writes the INT8 model with the result of its accuracy gate
(`edge.int8_gate`: each check against FP32 on held-out frames, and whether all held), measured
on the QDQ graph run by ONNX Runtime (MEASURED_QDQ). The runtime and the engine builder read
this metadata: an INT8 model without a passed gate is refused (fail closed), in one line that
names the failed check and the fix. On the device the engine builder measures the gate again
through the TensorRT engine (MEASURED_ENGINE) and records it in the engine's sidecar.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.errors import EdgeError

PRECISIONS = ("fp32", "fp16", "int8")
PRECISION_KEY = "edge.precision"
FLAVOUR_KEY = "edge.int8_flavour"  # "cpu" (ONNX Runtime) or "tensorrt" (explicit quantization)
GATE_KEY = "edge.int8_gate"
QUANTIZE_HINT = "re-quantize it with `python -m export quantize` (`make int8`)"
# What a gate record (`{"measured", "passed", "checks"}`) was measured on.
MEASURED_QDQ = "onnx-qdq"  # the QDQ graph on ONNX Runtime, its float parts in FP32
MEASURED_ENGINE = "engine"  # the TensorRT engine built from it: float parts FP16, Q/DQ fused


def precision_path(model: str | Path, precision: str) -> Path:
    """The file of `model` (its FP32 `.onnx`) at `precision`: itself, `NAME_fp16.onnx` or
    `NAME_int8.onnx`.

    Raises:
        EdgeError: the precision is unknown, or not FP32 for a file other than an `.onnx`.
    """
    model = Path(model)
    if precision not in PRECISIONS:
        raise EdgeError(f"unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return model
    if model.suffix != ".onnx":
        raise EdgeError(
            f"precision '{precision}' picks a variant of an .onnx model, but {model.name} is not "
            "one: point the model at the FP32 .onnx (the engine beside each variant is found)"
        )
    return model.with_name(f"{model.stem}_{precision}.onnx")


def engine_source(model: Path) -> Path:
    """The ONNX model a TensorRT engine of `model` is built from: the FP32 model for its FP16
    variant (`NAME_fp16.onnx` -> `NAME.onnx`: TensorRT's FP16 flag makes the FP16 engine from
    FP32 weights, `NAME.engine`), else `model` itself (`NAME_int8.onnx` -> `NAME_int8.engine`)."""
    if model.suffix == ".onnx" and model.stem.endswith("_fp16"):
        return model.with_name(model.stem.removesuffix("_fp16") + model.suffix)
    return model


def precision_of(metadata: Mapping[str, str]) -> str:
    """The precision an ONNX model's metadata records (FP32 when it records none)."""
    return metadata.get(PRECISION_KEY, "fp32")


def failed_checks(gate: Mapping[str, Any]) -> str | None:
    """The failed checks of a gate record, e.g. "recall 0.9512 < 0.97 vs FP32", or None when
    it passed.

    Raises:
        KeyError, TypeError: the record lacks its checks or verdict.
    """
    checks = gate["checks"]
    failed = [c for c in checks if not c["ok"]]
    if bool(gate["passed"]) and not failed and checks:
        return None
    described = "; ".join(
        f"{c['name']} {c['value']:.4f} < {c['limit']} vs FP32" for c in failed
    )  # fmt: skip
    return described or "no check ran"


def gate_failure(metadata: Mapping[str, str]) -> str | None:
    """Why an INT8 model may not run (its gate is missing or failed), or None when it may.

    Models other than INT8 have no gate and always may.
    """
    if precision_of(metadata) != "int8":
        return None
    try:
        failed = failed_checks(json.loads(metadata.get(GATE_KEY, "null")))
    except (ValueError, TypeError, KeyError):
        return "has no accuracy gate result in its metadata"
    return None if failed is None else f"failed its INT8 accuracy gate ({failed})"


def check_gate(metadata: Mapping[str, str], name: str, fallback: str) -> None:
    """Refuse an INT8 model whose metadata lacks a passed accuracy gate.

    Args:
        metadata: the model's ONNX metadata.
        name: the model's file name, for the message.
        fallback: the other way out, e.g. "set detector.precision = \"fp32\"".

    Raises:
        EdgeError: one line naming the failed check and the fix.
    """
    problem = gate_failure(metadata)
    if problem:
        raise EdgeError(f"{name} {problem}: {QUANTIZE_HINT}, or {fallback}")


def check_for_tensorrt(metadata: Mapping[str, str], name: str) -> None:
    """Refuse, before TensorRT parses it, an INT8 model without a passed gate or quantized for
    ONNX Runtime's CPU: TensorRT takes signed INT8 with zero points 0 only.

    Raises:
        EdgeError: one line naming the problem and the fix.
    """
    check_gate(metadata, name, "build its engine without --int8")
    flavour = metadata.get(FLAVOUR_KEY)
    if precision_of(metadata) == "int8" and flavour != "tensorrt":
        raise EdgeError(
            f"{name} is quantized for {flavour or 'an unknown target'} (unsigned activations, "
            "non-zero zero points), which TensorRT refuses: quantize it with "
            "`python -m export quantize --flavour tensorrt`"
        )
