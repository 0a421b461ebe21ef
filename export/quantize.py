"""`export quantize`: static INT8 (QDQ) quantization of the detector or embedder, gated on accuracy.

ONNX Runtime's static quantizer calibrates on frames of the user's own camera (a video, or a
folder of frames sorted by name = time order; the sample video by default): calibration frames
from the earlier part, held-out test frames from the last `--holdout` of it (a split in time).
Weights are quantized per channel. Two flavours:

- `cpu`: what ONNX Runtime's x86 kernels run fastest: unsigned (QUInt8) asymmetric activations,
  weights for the instruction set of the CPU it is for (`--isa`, default: this one's; recorded in
  the metadata, `edge.engines.onnxruntime`): signed 8-bit symmetric ("s8") for VNNI (or "u8",
  below, when s8 misses the gate: without `--weights` each is tried in turn); for x86
  without VNNI, whose U8S8 kernels add pairs of products in 16 bits that saturate
  (`VPMADDUBSW`), unsigned asymmetric "u8" (U8U8 kernels, which add in 32 bits), the one that
  passes the gate there (7-bit "s7", ONNX Runtime's reduce_range, cannot saturate either but
  misses it on both models);
- `tensorrt`: what TensorRT's explicit quantization takes: signed INT8 activations and weights,
  symmetric, every zero point 0, biases left in float (onnx-tensorrt `docs/operators.md`:
  QuantizeLinear's `y_zero_point` and DequantizeLinear's `x_zero_point` must be zero, and
  DequantizeLinear takes INT8, not the INT32 of a quantized bias).

YOLOv8's detection head decodes boxes in pixels and class scores in 0..1 and concatenates them
into one tensor, which cannot share one INT8 scale: quantized whole, the detector finds nothing.
So parts of the head stay in float (`--float`, see FLOAT_PARTS). The embedder (MobileNetV2) keeps
its first blocks in float: quantized, they alone drop its cosine to FP32 from 0.99 to 0.82.

The accuracy gate (`export.gate`) compares the INT8 model with FP32 on the held-out frames
(`export.agreement`, as `benchmarks drift` does): detector recall ≥ 0.97 and precision ≥ 0.95 at
IoU 0.5, embedder mean cosine ≥ 0.99 (on the FP32 detector's boxes). Here it measures the QDQ
graph on ONNX Runtime, float parts in FP32 (recorded as measured "onnx-qdq"); `edge engines
--int8` measures the TensorRT engine again on the device, on the same frames (the footage, its
digest and the frames are recorded). Its result, the precision, the flavour and the calibration
go into the model's metadata. A model that fails is still written, for inspection, marked
failed; the runtime and the engine builder refuse it (`edge.engines.precision`), and the command
exits non-zero.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edge import paths
from edge.engines import InferenceEngine, open_engine
from edge.engines.onnxruntime import ISA_KEY, ISAS, OnnxRuntimeEngine, cpu_flags, cpu_isa
from edge.engines.precision import (
    FLAVOUR_KEY,
    GATE_KEY,
    MEASURED_QDQ,
    PRECISION_KEY,
    failed_checks,
    precision_path,
)
from edge.engines.tensorrt import TensorRTMissing, import_tensorrt
from edge.errors import EdgeError
from edge.files import replaced_on_success, sha256, writable_dir
from edge.models.detector import Detector
from edge.models.embedder import Embedder, crop_boxes
from export.adapt import Footage, open_footage, split_in_time
from export.data import data_file
from export.gate import CALIBRATION_KEY, CONFIDENCE, SOURCE_KEY, agreement, verdict

log = logging.getLogger(__name__)

MODELS = {"detector": paths.DETECTOR_FILE, "embedder": paths.EMBEDDER_FILE}
# "moving-average": min-max averaged over the calibration strides (CALIBRATION_STRIDE frames)
# instead of the extremes of all frames, which widen with every frame.
METHODS = ("minmax", "moving-average", "entropy", "percentile")
FLAVOURS = ("cpu", "tensorrt")
# Weights: signed 8-bit, signed 7-bit (reduce_range), unsigned 8-bit asymmetric (U8U8 kernels).
WEIGHTS = ("s8", "s7", "u8")
# The `cpu` flavour's weights per instruction set, fastest first. Without --weights, each is
# tried in turn until one passes the gate: s8 (2.1x FP32 with VNNI) misses the 640×640
# detector's gate on the EPYC, u8 (1.2-1.3x; exact on every x86 CPU) passes it on both kinds
# (benchmarks/results/x86-2core-int8-isa.md).
DEFAULT_WEIGHTS = {"vnni": ("s8", "u8"), "avx2": ("u8",)}
DEFAULT_FRAMES = 200
DEFAULT_TEST_FRAMES = 40
DEFAULT_HOLDOUT = 0.5
CROPS_PER_FRAME = 4  # embedder calibration: a few people per frame, many frames
CALIBRATION_STRIDE = 10  # frames whose activations are held in memory at once while calibrating


def _head_prefix(model: onnx.ModelProto) -> str:
    """The name prefix of the detection head: the module of the node making the first output,
    e.g. "/model.22/" for YOLOv8."""
    output = model.graph.output[0].name
    producer = next((n.name for n in model.graph.node if output in n.output), "")
    found = re.match(r"(/model\.\d+/)", producer)
    if not found:
        raise EdgeError(
            f"cannot find the detection head (node of output '{output}' is '{producer}'): "
            "quantize a YOLOv8 detector exported by `python -m export yolo`"
        )
    return found.group(1)


def _branch_conv(name: str, head: str) -> int | None:
    """Which conv (0, 1; 2 outputs the logits) of the box (cv2) or class (cv3) branch a head node
    belongs to; None for the decode."""
    branch = re.match(rf"{re.escape(head)}cv[23]\.\d+/cv[23]\.\d+\.(\d+)", name)
    return None if branch is None else int(branch.group(1))


def _head_nodes(keep: Callable[[str, str], bool]) -> Callable[[onnx.ModelProto], list[str]]:
    """The detector's head nodes for which `keep(name, head prefix)` holds."""

    def nodes(model: onnx.ModelProto) -> list[str]:
        head = _head_prefix(model)
        return [n.name for n in model.graph.node if n.name.startswith(head) and keep(n.name, head)]

    return nodes


def _stem_nodes(model: onnx.ModelProto) -> list[str]:
    """MobileNetV2's first blocks (`/features/features.0/` to `features.STEM_BLOCKS/`)."""
    blocks = (re.match(r"/features/features\.(\d+)/", n.name) for n in model.graph.node)
    return [
        node.name
        for node, block in zip(model.graph.node, blocks, strict=True)
        if block is not None and int(block.group(1)) <= STEM_BLOCKS
    ]


STEM_BLOCKS = 2
# What stays in float, per model, from the most to the least quantized.
FLOAT_PARTS: dict[str, dict[str, Callable[[onnx.ModelProto], list[str]]]] = {
    "detector": {
        # The head's decode: the reshapes and concats of the levels, DFL, sigmoid, anchors, concat.
        "decode": _head_nodes(lambda name, head: _branch_conv(name, head) is None),
        # The decode and each branch's last conv (box distribution and class logits).
        "logits": _head_nodes(lambda name, head: _branch_conv(name, head) in (None, 2)),
        # The whole detection head.
        "head": _head_nodes(lambda name, head: True),
    },
    "embedder": {
        "none": lambda model: [],
        # The first blocks, at the highest resolutions: quantized, they cost most of the cosine.
        "stem": _stem_nodes,
    },
}
DEFAULT_FLOAT = {"detector": "head", "embedder": "stem"}
# Measured on the sample video (docs/tensorrt.md, INT8): with 200 frames the detector passes the
# gate with moving-average min-max (widest margin) or percentile only; the embedder with min-max
# on s8 weights only, with moving-average on s8 and u8 (benchmarks/results/x86-2core-int8-isa.md).
DEFAULT_METHOD = {"detector": "moving-average", "embedder": "moving-average"}


def float_nodes(model: onnx.ModelProto, kind: str, part: str) -> list[str]:
    """Names of the nodes of a `kind` model ("detector", "embedder") kept in float for `part`.

    Raises:
        EdgeError: `part` is not one of that model's.
    """
    parts = FLOAT_PARTS[kind]
    if part not in parts:
        raise EdgeError(f"--float {part} is not for the {kind}: choose one of {', '.join(parts)}")
    return parts[part](model)


@dataclass(frozen=True)
class Recipe:
    """How to quantize: calibration method, flavour, what stays in float, and (`cpu` flavour)
    the instruction set it is for and its weights."""

    method: str = ""  # a key of METHODS; "": the model's DEFAULT_METHOD
    flavour: str = "cpu"
    float_part: str = ""  # a key of FLOAT_PARTS[model]; "": the model's DEFAULT_FLOAT
    isa: str = ""  # one of ISAS; "": this CPU's
    weights: str = ""  # one of WEIGHTS; "": DEFAULT_WEIGHTS[isa] (always "s8" for tensorrt)

    def candidates(self, model: str, flags: frozenset[str]) -> list[Recipe]:
        """The resolved recipes to try in order until one passes the gate: this one alone when
        its weights are given (or for tensorrt), else one per DEFAULT_WEIGHTS of its ISA."""
        first = self.resolved(model, flags)
        if self.weights or self.flavour == "tensorrt":
            return [first]
        return [replace(first, weights=weights) for weights in DEFAULT_WEIGHTS[first.isa]]

    def resolved(self, model: str, flags: frozenset[str]) -> Recipe:
        """This recipe with each default filled in for `model` on a CPU with `flags`.

        Raises:
            EdgeError: weights the flavour or instruction set cannot take.
        """
        isa = self.isa or cpu_isa(flags)
        default = "s8" if self.flavour == "tensorrt" else DEFAULT_WEIGHTS[isa][0]
        recipe = replace(
            self,
            method=self.method or DEFAULT_METHOD[model],
            float_part=self.float_part or DEFAULT_FLOAT[model],
            isa=isa,
            weights=self.weights or default,
        )
        if recipe.flavour == "tensorrt" and recipe.weights != "s8":
            raise EdgeError("--weights must be s8 for --flavour tensorrt (TensorRT takes INT8)")
        if recipe.flavour == "cpu" and (isa, recipe.weights) == ("avx2", "s8"):
            raise EdgeError(
                "--weights s8 saturates on CPUs without VNNI (--isa avx2): choose s7 or u8"
            )
        return recipe

    @property
    def model_isa(self) -> str | None:
        """What the model's arithmetic needs: "vnni" for 8-bit signed weights (they saturate
        without it), "avx2" (any CPU) otherwise; None for the tensorrt flavour."""
        if self.flavour == "tensorrt":
            return None
        return "vnni" if self.weights == "s8" else "avx2"

    def quantizer_options(self, stride: int) -> dict[str, Any]:
        """Arguments of onnxruntime.quantization.quantize_static for this recipe, calibrating
        on `stride` feeds at a time."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

        methods = {
            "minmax": CalibrationMethod.MinMax,
            "moving-average": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }
        tensorrt = self.flavour == "tensorrt"
        return {
            "quant_format": QuantFormat.QDQ,
            "per_channel": True,
            "reduce_range": self.weights == "s7",
            "activation_type": QuantType.QInt8 if tensorrt else QuantType.QUInt8,
            "weight_type": QuantType.QUInt8 if self.weights == "u8" else QuantType.QInt8,
            "calibrate_method": methods[self.method],
            "extra_options": {
                "ActivationSymmetric": tensorrt,
                "WeightSymmetric": self.weights != "u8",
                # TensorRT's DequantizeLinear takes no INT32: its biases stay float
                "QuantizeBias": not tensorrt,
                "CalibStridedMinMax": stride,
                "CalibMovingAverage": self.method == "moving-average",
            },
        }


class _Feeds:
    """onnxruntime's CalibrationDataReader over a list of feeds, readable in strides."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = feeds
        self._iterator: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iterator, None)

    def __len__(self) -> int:
        return len(self.feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iterator = iter(self.feeds[start_index:end_index])


def _strided(feeds: list[dict[str, np.ndarray]]) -> tuple[_Feeds, int]:
    """A reader over the feeds cut to a multiple of the stride (onnxruntime requires one), and
    that stride: CALIBRATION_STRIDE, or all the feeds when there are fewer."""
    stride = min(CALIBRATION_STRIDE, len(feeds))
    return _Feeds(feeds[: len(feeds) - len(feeds) % stride]), stride


def detector_feeds(detector: Detector, frames: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """The detector's input for each frame, as the runtime prepares it."""
    name = detector.engine.inputs[0].name
    return [{name: detector.preprocess(frame)[0]} for frame in frames]


def embedder_feeds(
    embedder: Embedder, detector: Detector, frames: Sequence[np.ndarray]
) -> list[dict[str, Any]]:
    """Batches of crops of the FP32 detector's most confident boxes, one batch per frame.

    Raises:
        EdgeError: the detector finds no one in any frame.
    """
    name = embedder.engine.inputs[0].name
    feeds = []
    for frame in frames:
        boxes = detector(frame).xyxy[:CROPS_PER_FRAME]
        if len(boxes):
            feeds.append({name: embedder.preprocess(crop_boxes(frame, boxes))})
    if not feeds:
        raise EdgeError("the detector finds no one in the calibration frames: nothing to embed")
    return feeds


def _timed(engine: InferenceEngine) -> list[float]:
    """Record the wall time of each of the engine's runs, in the list returned."""
    samples: list[float] = []
    run = engine.run

    def timed(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        outputs = run(feeds)
        samples.append(time.perf_counter() - started)
        return outputs

    engine.run = timed  # type: ignore[method-assign]
    return samples


def evaluate(
    model: str, fp32: Path, int8: Path, detector_model: Path, frames: Sequence[np.ndarray]
) -> dict[str, Any]:
    """Agreement of the INT8 model with FP32 on the held-out frames (`export.agreement`), and
    the median time of one inference of each (they run in turn on each frame). The INT8 model
    runs ungated, and with a warning where it is for VNNI and this CPU has none."""
    with (
        open_engine(detector_model, "onnxruntime") as reference_engine,
        open_engine(fp32, "onnxruntime") as fp32_engine,
        OnnxRuntimeEngine(int8, foreign_isa="warn") as int8_engine,
    ):
        reference = Detector(reference_engine, conf=CONFIDENCE)
        times = {
            "fp32": _timed(reference_engine if model == "detector" else fp32_engine),
            "int8": _timed(int8_engine),
        }
        results = agreement(model, reference, fp32_engine, int8_engine, frames)
    ms = {name: round(1000 * float(np.median(samples)), 1) for name, samples in times.items()}
    return {**results, "ms_per_inference": ms}


def _calibration_cache(
    models: Sequence[Path], footage: Footage, indices: Sequence[int], recipe: Recipe
) -> Path:
    """Where the activation ranges for these models, footage, frames and recipe are kept:
    another --float choice reuses them instead of calibrating again."""
    key = json.dumps(
        [[sha256(m) for m in models], footage.sha256(), list(indices), recipe.method,
         recipe.flavour]
    ).encode()  # fmt: skip
    return paths.CACHE / "calibration" / f"{hashlib.sha256(key).hexdigest()[:24]}.json"


def quantize(
    model: str,
    fp32: Path,
    calib: Path,
    output: Path,
    recipe: Recipe,
    frames: int = DEFAULT_FRAMES,
    test_frames: int = DEFAULT_TEST_FRAMES,
    holdout: float = DEFAULT_HOLDOUT,
    detector_model: Path | None = None,
) -> dict[str, Any]:
    """Quantize `fp32` to INT8 at `output`, evaluate the gate and record it in the metadata.

    Args:
        model: "detector" or "embedder".
        fp32: the FP32 ONNX model.
        calib: a video or a folder of frames from the camera.
        output: where the INT8 model goes (written even when the gate fails, marked failed),
            with its report beside it (`report_path`).
        recipe: calibration method, flavour and the part kept in float ("": the defaults).
        frames: calibration frames, from the earlier part of `calib`.
        test_frames: held-out frames the gate is measured on, from the last `holdout` of it.
        detector_model: the FP32 detector whose boxes the embedder is calibrated and tested on
            (default: the detector beside `fp32`).

    Returns:
        The report: recipe, timings, agreement with FP32 and the gate's checks.

    Raises:
        EdgeError: bad arguments, unreadable footage, or the gate failed (after writing).
    """
    from onnxruntime.quantization import quantize_static

    if model not in MODELS:
        raise EdgeError(f"unknown model '{model}': choose one of {', '.join(MODELS)}")
    gate_isa = cpu_isa(cpu_flags())
    attempts = recipe.candidates(model, cpu_flags())
    recipe = attempts[0]
    if not 0 < holdout < 1:
        raise EdgeError(
            f"--holdout must be between 0 and 1 (the share kept to test on), got {holdout}"
        )
    if not fp32.is_file():
        raise EdgeError(f"{model} model not found: {fp32} (run `make track-models`)")
    if model == "detector":
        detector_model = fp32
    detector_model = detector_model or fp32.with_name(paths.DETECTOR_FILE)
    footage = open_footage(calib)
    learn, test = split_in_time(footage, holdout, frames, test_frames)
    calibration = [frame for _, frame in footage.frames(learn)]
    held_out = [frame for _, frame in footage.frames(test)]
    source = onnx.load(str(fp32))
    with open_engine(detector_model, "onnxruntime") as engine:
        detector = Detector(engine, conf=CONFIDENCE)
        if model == "detector":
            feeds = detector_feeds(detector, calibration)
        else:
            with open_engine(fp32, "onnxruntime") as embedder_engine:
                feeds = embedder_feeds(Embedder(embedder_engine), detector, calibration)
    excluded = float_nodes(source, model, recipe.float_part)
    writable_dir(output.parent)
    cache = _calibration_cache((fp32, detector_model), footage, learn, recipe)
    writable_dir(cache.parent)
    rejected: list[dict[str, Any]] = []  # weights tried first whose gate failed
    for attempt, recipe in enumerate(attempts, 1):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.monotonic()
            quantized = Path(tmp) / output.name
            reader, stride = _strided(feeds)
            quantize_static(
                str(fp32),
                str(quantized),
                reader,
                nodes_to_exclude=excluded,
                calibration_cache_path=cache,  # calibrated once, for every attempt
                **recipe.quantizer_options(stride),
            )
            seconds = time.monotonic() - started
            results = evaluate(model, fp32, quantized, detector_model, held_out)
            gate = verdict(model, results, MEASURED_QDQ)
            checks = gate["checks"]
            if not gate["passed"] and attempt < len(attempts):
                log.warning(
                    "%s: %s weights failed the INT8 gate (%s): trying %s weights",
                    model,
                    recipe.weights,
                    failed_checks(gate),
                    attempts[attempt].weights,
                )
                rejected.append({"weights": recipe.weights, "checks": checks})
                continue
            report: dict[str, Any] = {
                "model": model,
                "source": fp32.name,
                "method": recipe.method,
                "flavour": recipe.flavour,
                "float": recipe.float_part,
                "isa": recipe.model_isa,
                "weights": recipe.weights,
                "rejected_weights": rejected,
                "gate_isa": gate_isa,
                "float_nodes": len(excluded),
                "calibration": {
                    "footage": str(calib.absolute()),
                    "sha256": footage.sha256(),  # the engine's gate reads the same frames again
                    "frames": [learn[0], learn[-1], len(learn)],
                    "feeds": len(feeds),
                },
                "test_frames": [test[0], test[-1], len(test)],
                "quantize_seconds": round(seconds, 1),
                "agreement": results,
                "gate": gate,
            }
            with replaced_on_success(output) as temporary:
                _write_with_metadata(quantized, temporary, source, report, sha256(fp32))
        break
    report_path(output).write_text(json.dumps(report, indent=1) + "\n")
    # s7 and u8 weights cannot saturate, so their integer results are the same on every x86
    # CPU; s8's only where VNNI adds in 32 bits.
    if recipe.model_isa == "vnni" and gate_isa != "vnni":
        log.warning(
            "%s is for %s CPUs, but its gate ran on this one (%s): on its target it may score "
            "otherwise",
            output.name,
            recipe.model_isa,
            gate_isa,
        )
    log.info(
        "%s: INT8 %s (%s, float %s, weights %s) written to %s; vs FP32: %s; ms per inference %s",
        model,
        recipe.flavour,
        recipe.method,
        report["float"],
        recipe.weights,
        output,
        ", ".join(f"{c['name']} {c['value']:.4f}" for c in checks),
        results["ms_per_inference"],
    )
    if not report["gate"]["passed"]:
        failed = "; ".join(
            f"{c['name']} {c['value']:.4f} < {c['limit']}" for c in checks if not c["ok"]
        )
        tried = "".join(f", as did {r['weights']} weights" for r in rejected)
        raise EdgeError(
            f"{output.name} failed the INT8 accuracy gate ({failed} vs FP32 on {len(test)} "
            f"held-out frames{tried}): written marked failed, for inspection; try another "
            "--method or --float, or more --frames"
        )
    return report


def report_path(output: Path) -> Path:
    """The JSON report beside an INT8 model: `NAME.report.json`."""
    return output.with_suffix(".report.json")


# The report's entries recorded as the model's calibration.
CALIBRATION_KEYS = ("method", "float", "weights", "gate_isa", "calibration", "test_frames")


def _write_with_metadata(
    quantized: Path, target: Path, source: onnx.ModelProto, report: dict[str, Any], digest: str
) -> None:
    """Save the quantized model with the FP32 model's metadata plus precision, flavour and gate."""
    model = onnx.load(str(quantized))
    props = {p.key: p.value for p in source.metadata_props}
    props |= {
        PRECISION_KEY: "int8",
        FLAVOUR_KEY: report["flavour"],
        GATE_KEY: json.dumps(report["gate"]),
        CALIBRATION_KEY: json.dumps({k: report[k] for k in CALIBRATION_KEYS}),
        SOURCE_KEY: digest,  # of the FP32 model
    }
    if report["isa"]:
        props[ISA_KEY] = report["isa"]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(target))


def default_flavour() -> str:
    """`tensorrt` where TensorRT (10 or newer, with pycuda) can run, e.g. on a Jetson; `cpu`
    elsewhere, also where only TensorRT's type stubs are installed."""
    try:
        import_tensorrt()
    except TensorRTMissing:
        return "cpu"
    return "tensorrt"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `quantize` command."""
    parser = subparsers.add_parser(
        "quantize", help="INT8 (QDQ) detector or embedder, calibrated on the camera's frames"
    )
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument(
        "--calib",
        type=Path,
        help="video or folder of frames (sorted by name = time) from the camera "
        "(default: the sample video)",
    )
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="calibration frames")
    parser.add_argument(
        "--test-frames", type=int, default=DEFAULT_TEST_FRAMES, help="held-out frames for the gate"
    )
    parser.add_argument(
        "--holdout",
        type=float,
        default=DEFAULT_HOLDOUT,
        help="share of the footage, from its end, kept to test on (a split in time)",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="",
        help="calibration method (default: moving-average)",
    )
    parser.add_argument(
        "--flavour",
        choices=FLAVOURS,
        help="cpu: ONNX Runtime on x86 (unsigned activations); tensorrt: TensorRT explicit "
        "quantization (symmetric, signed); default: tensorrt where TensorRT is installed",
    )
    parser.add_argument(
        "--float",
        dest="float_part",
        choices=sorted({part for parts in FLOAT_PARTS.values() for part in parts}),
        default="",
        help="what stays in float: detector decode, logits or head (default); embedder none or "
        "stem (default)",
    )
    parser.add_argument(
        "--isa",
        choices=ISAS,
        default="",
        help="cpu flavour: the CPU the model is for: vnni (AVX-512 VNNI or AVX-VNNI, or not x86) "
        "or avx2 (x86 without VNNI); default: this one's",
    )
    parser.add_argument(
        "--weights",
        choices=WEIGHTS,
        default="",
        help="s8, s7 (7-bit) or u8 (unsigned) weights; default: s8 for tensorrt; for the cpu "
        "flavour the first of "
        + "; ".join(f"{isa}: {', '.join(w)}" for isa, w in DEFAULT_WEIGHTS.items())
        + " whose gate passes",
    )
    parser.add_argument("--input", type=Path, help="the FP32 model (default: the runtime's)")
    parser.add_argument(
        "--output", type=Path, help="INT8 model (default: NAME_int8.onnx beside it)"
    )
    parser.add_argument(
        "--detector", type=Path, help="FP32 detector giving the embedder's boxes (default: beside)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    fp32 = args.input or paths.MODELS / MODELS[args.model]
    recipe = Recipe(
        args.method, args.flavour or default_flavour(), args.float_part, args.isa, args.weights
    )
    quantize(
        args.model,
        fp32,
        args.calib or data_file("vtest.avi"),
        args.output or precision_path(fp32, "int8"),
        recipe,
        args.frames,
        args.test_frames,
        args.holdout,
        args.detector,
    )
