"""The INT8 accuracy gate: an INT8 model against its FP32 original on held-out frames.

It is measured where each INT8 model runs. `export quantize` measures the QDQ graph on ONNX
Runtime, with the float parts in FP32 (MEASURED_QDQ): what runs off the device. On the device,
`edge engines --int8` measures the TensorRT engine built from that graph (MEASURED_ENGINE),
whose float parts run FP16 and whose Q/DQ TensorRT fuses its own way, on the same held-out
frames (the QDQ model's metadata records the footage and the frames) against the same FP32
reference on ONNX Runtime. Checks: detector recall and precision at IoU 0.5, embedder mean
cosine on the FP32 detector's boxes (`export.agreement`).

Imports no training package (TensorFlow, torch, ultralytics): the engine builder, part of the
on-device runtime, imports it while building INT8 engines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.engines import InferenceEngine, open_engine
from edge.engines.precision import MEASURED_ENGINE
from edge.errors import EdgeError
from edge.files import sha256
from edge.models.detector import Detector
from edge.models.embedder import Embedder
from export.adapt import Footage, evenly, open_footage
from export.agreement import detector_agreement, embedder_cosines

# Gate checks per model: (result key, lower limit).
GATE = {
    "detector": (("recall", 0.97), ("precision", 0.95)),
    "embedder": (("mean_cosine", 0.99),),
}
CONFIDENCE = 0.25  # the runtime's default detector confidence, for the gate's boxes
CALIBRATION_KEY = "edge.int8_calibration"  # footage, frames and recipe, as `quantize` records
SOURCE_KEY = "edge.int8_source_sha256"  # of the FP32 model it was quantized from
REQUANTIZE_HINT = "re-quantize on this device (`make int8`)"


def gate_checks(model: str, results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each gate check of `model` with its measured value, limit and verdict."""
    checks = []
    for key, limit in GATE[model]:
        value = float(results[key])
        checks.append({"name": key, "value": value, "limit": limit, "ok": bool(value >= limit)})
    return checks


def verdict(model: str, results: Mapping[str, Any], measured: str) -> dict[str, Any]:
    """The gate's record: what was measured, whether every check held, and the checks."""
    checks = gate_checks(model, results)
    return {"measured": measured, "passed": all(c["ok"] for c in checks), "checks": checks}


def agreement(
    model: str,
    reference: Detector,
    fp32: InferenceEngine,
    candidate: InferenceEngine,
    frames: Sequence[np.ndarray],
) -> dict[str, Any]:
    """Agreement of the candidate (INT8) `model` with FP32 on `frames` (`export.agreement`).

    Args:
        model: "detector" or "embedder".
        reference: the FP32 detector: the detector's reference, the embedder's boxes.
        fp32: the FP32 model itself (for the embedder; the detector's is `reference`).
        candidate: the INT8 model, on whichever backend runs it.
    """
    if model == "detector":
        candidate_detector = Detector(candidate, conf=CONFIDENCE)
        return detector_agreement(reference, candidate_detector, frames, "int8")[0]
    boxes = [reference(frame) for frame in frames]
    cosines = embedder_cosines(Embedder(fp32), Embedder(candidate), frames, boxes)
    return {
        "boxes": len(cosines),
        "mean_cosine": float(np.mean(cosines)),
        "min_cosine": float(np.min(cosines)),
    }


def held_out(metadata: Mapping[str, str], name: str) -> tuple[Footage, list[int]]:
    """The footage the QDQ model's gate was measured on, as its metadata records it, and the
    indices of its held-out frames.

    Raises:
        EdgeError: the metadata records no footage, or the footage is missing or changed.
    """
    try:
        calibration = json.loads(metadata[CALIBRATION_KEY])
        path, digest = calibration["calibration"]["footage"], calibration["calibration"]["sha256"]
        first, last, count = calibration["test_frames"]
    except (KeyError, TypeError, ValueError):
        raise EdgeError(
            f"{name} does not record the footage its gate was measured on, needed to measure "
            f"its engine: {REQUANTIZE_HINT}"
        ) from None
    if not Path(path).exists():
        raise EdgeError(
            f"{name}: the footage its gate was measured on, {path}, is not on this device, and "
            f"its engine is measured on the same frames: copy it there or {REQUANTIZE_HINT}"
        )
    footage = open_footage(Path(path))
    if footage.sha256() != digest:
        raise EdgeError(
            f"{name}: {path} changed since its gate was measured on it: {REQUANTIZE_HINT}"
        )
    # `quantize` took evenly spaced frames from `first` to the end: the same indices again.
    return footage, evenly(first, last + 1, count)


def engine_gate(
    model: str, fp32: Path, detector: Path, metadata: Mapping[str, str], name: str
) -> Callable[[InferenceEngine], dict[str, Any]]:
    """The gate of an INT8 (QDQ) model, to measure through the engine built from it: on the
    held-out frames of the model's own gate, against FP32 on ONNX Runtime. The FP32 models and
    the footage are checked now, before the engine is built; the frames are read when measuring
    (not held in memory while TensorRT builds).

    Args:
        model: "detector" or "embedder".
        fp32: the FP32 model the QDQ model was quantized from.
        detector: the FP32 detector giving the embedder's boxes.
        metadata: the QDQ model's metadata.
        name: the QDQ model's file name, for messages.

    Returns:
        What measures the opened engine: the gate's record (`verdict`, measured
        MEASURED_ENGINE) with the number of frames.

    Raises:
        EdgeError: the FP32 model is not the one quantized, or the frames cannot be read again.
    """
    if not fp32.is_file() or sha256(fp32) != metadata.get(SOURCE_KEY):
        raise EdgeError(
            f"{name} was not quantized from {fp32} (missing or changed), the FP32 reference its "
            f"engine is measured against: {REQUANTIZE_HINT}"
        )
    if not detector.is_file():
        raise EdgeError(
            f"the FP32 detector {detector}, whose boxes the engine of {name} is measured on, is "
            "missing: run `make track-models`"
        )
    footage, indices = held_out(metadata, name)

    def measure(candidate: InferenceEngine) -> dict[str, Any]:
        frames = [frame for _, frame in footage.frames(indices)]
        with (
            open_engine(detector, "onnxruntime") as detector_engine,
            open_engine(fp32, "onnxruntime") as fp32_engine,
        ):
            reference = Detector(detector_engine, conf=CONFIDENCE)
            results = agreement(model, reference, fp32_engine, candidate, frames)
        return verdict(model, results, MEASURED_ENGINE) | {"frames": len(frames)}

    return measure
