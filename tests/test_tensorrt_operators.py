"""Every operator of every model we export is in TensorRT 10's ONNX support matrix.

TensorRT cannot run here, so the models are checked against the matrix recorded as data
(`tests/data/tensorrt10_onnx_operators.json`: onnx-tensorrt's `docs/operators.md` and TensorRT's
quantization rules, with version and source): operator, opset, Q/DQ zero points (0, signed INT8
only), per-channel scales (constant weights only, output-channel axis), Resize and pooling
attributes. The detector, embedder and colorizer in FP32 and FP16, and the detector and embedder
in both INT8 flavours: the `cpu` one (unsigned activations) must be flagged, the `tensorrt` one
must pass.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge import paths
from tests import detect_models
from tests import int8_models as int8

detector_320 = detect_models.detector_320  # the shared session fixtures, found by name
reid_onnx = detect_models.reid_onnx
int8_models = int8.int8_models

MATRIX = json.loads((Path(__file__).parent / "data" / "tensorrt10_onnx_operators.json").read_text())
QDQ = ("QuantizeLinear", "DequantizeLinear")
POOLS = ("MaxPool", "AveragePool", "LpPool")


def _attribute(node: onnx.NodeProto, name: str, default: object) -> object:
    found = next((a for a in node.attribute if a.name == name), None)
    return default if found is None else helper.get_attribute_value(found)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _qdq_problems(node: onnx.NodeProto, constants: dict[str, onnx.TensorProto]) -> list[str]:
    """Zero points 0 and signed INT8; per-channel scales only for constant weights, axis 0."""
    problems = []
    zero = constants.get(node.input[2]) if len(node.input) > 2 else None
    if zero is not None:
        if zero.data_type != TensorProto.INT8:
            kind = TensorProto.DataType.Name(zero.data_type)
            problems.append(f"{kind} zero point (TensorRT quantizes to signed INT8 only)")
        elif np.any(numpy_helper.to_array(zero)):
            problems.append("non-zero zero point (TensorRT's quantization is symmetric)")
    scale = constants.get(node.input[1])
    if scale is not None and int(np.prod(scale.dims)) > 1:
        if node.input[0] not in constants:
            problems.append("per-channel scale on an activation (per tensor only)")
        elif _attribute(node, "axis", 1) != 0:
            problems.append("per-channel axis is not the output channels (0)")
    return problems


def _attribute_problems(node: onnx.NodeProto) -> list[str]:
    """The Resize and pooling limits of the matrix that our models could break."""
    if node.op_type == "Resize":
        allowed = {
            "mode": ("nearest", "linear"),
            "coordinate_transformation_mode": ("half_pixel", "pytorch_half_pixel",
                "tf_half_pixel_for_nn", "asymmetric", "align_corners"),
            "nearest_mode": ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil"),
        }  # fmt: skip
        defaults = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
                    "nearest_mode": "round_prefer_floor"}  # fmt: skip
        return [
            f"Resize {key} '{_text(_attribute(node, key, defaults[key]))}'"
            for key, choices in allowed.items()
            if _text(_attribute(node, key, defaults[key])) not in choices
        ]
    if node.op_type in POOLS:
        kernel = list(_attribute(node, "kernel_shape", []))  # type: ignore[call-overload]
        dilations = list(_attribute(node, "dilations", []))  # type: ignore[call-overload]
        problems = [] if len(kernel) in (2, 3) else [f"{len(kernel)}D pooling (2D or 3D only)"]
        return problems + ([] if all(d == 1 for d in dilations) else ["pooling dilations"])
    return []


def tensorrt_problems(model: onnx.ModelProto) -> list[str]:
    """Why TensorRT 10's ONNX parser would refuse `model`, per node; empty when it would not."""
    low, high = MATRIX["opset"]
    problems = [
        f"opset {o.version} outside {low}..{high}"
        for o in model.opset_import
        if o.domain in ("", "ai.onnx") and not low <= o.version <= high
    ]
    constants = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        name = node.name or node.output[0]
        if node.domain not in ("", "ai.onnx") or node.op_type not in MATRIX["operators"]:
            problems.append(f"{name}: {node.domain or 'ai.onnx'}.{node.op_type} is unsupported")
            continue
        found = _qdq_problems(node, constants) if node.op_type in QDQ else []
        problems += [f"{name}: {p}" for p in found + _attribute_problems(node)]
    return problems


def fp16_of(model: Path, folder: Path) -> Path:
    from export.onnx_export import fp16_path, to_fp16

    return to_fp16(model, folder / fp16_path(model).name)


@pytest.fixture(scope="module")
def exported(
    detector_320: Path,
    reid_onnx: Path,
    int8_models: dict[tuple[str, str], Path],
) -> dict[str, Path]:
    """Every model we export but the FP16 ones (made from these by the test), by "model
    precision[-flavour]"."""
    models = {"detector fp32": detector_320, "embedder fp32": reid_onnx}
    colorizer = paths.MODELS / paths.COLORIZER_FILE  # trained by `make models`
    if colorizer.is_file():
        models["colorizer fp32"] = colorizer
    for (model, flavour), path in int8_models.items():
        models[f"{model} int8-{flavour}"] = path
    return models


@pytest.mark.parametrize(
    "name",
    ["detector fp32", "detector fp16", "detector int8-tensorrt", "embedder fp32",
     "embedder fp16", "embedder int8-tensorrt", "colorizer fp32", "colorizer fp16"],
)  # fmt: skip
def test_exported_models_are_in_tensorrt_10s_support_matrix(
    exported: dict[str, Path], name: str, tmp_path: Path
) -> None:
    fp32 = exported.get(name.replace("fp16", "fp32"))
    if fp32 is None:
        pytest.skip(f"{paths.COLORIZER_FILE} is not trained here (`make models`)")
    path = fp16_of(fp32, tmp_path) if name.endswith("fp16") else exported[name]
    model = onnx.load(str(path))
    assert tensorrt_problems(model) == []
    if "int8" in name:
        assert {n.op_type for n in model.graph.node} >= set(QDQ), "a QDQ model"


@pytest.mark.parametrize("model", ["detector", "embedder"])
def test_the_cpu_flavour_is_flagged_and_the_tensorrt_flavour_passes(
    exported: dict[str, Path], model: str
) -> None:
    cpu = tensorrt_problems(onnx.load(str(exported[f"{model} int8-cpu"])))
    assert any("UINT8 zero point" in problem for problem in cpu), "unsigned activations"
    assert any("INT32 zero point" in problem for problem in cpu), "quantized biases"
    assert all(re.search(r": (UINT8|INT32) zero point", problem) for problem in cpu), cpu[:3]
    assert tensorrt_problems(onnx.load(str(exported[f"{model} int8-tensorrt"]))) == []


def _model(nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _int8(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, np.int8), name)


def _scale(name: str, values: list[float]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, np.float32), name)


@pytest.mark.parametrize(
    ("nodes", "initializers", "problem"),
    [
        ([helper.make_node("Unique", ["x"], ["y"], name="u")], [],
         "u: ai.onnx.Unique is unsupported"),
        ([helper.make_node("QLinearConv", ["x"], ["y"], name="q")], [],
         "q: ai.onnx.QLinearConv is unsupported"),
        ([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q")],
         [_scale("s", [0.1]), _int8("z", [3])], "q: non-zero zero point"),
        ([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="q", axis=1)],
         [_scale("s", [0.1, 0.2]), _int8("z", [0, 0])], "q: per-channel scale on an activation"),
        ([helper.make_node("DequantizeLinear", ["w", "s", "z"], ["y"], name="d", axis=1)],
         [_int8("w", [1, 2]), _scale("s", [0.1, 0.2]), _int8("z", [0, 0])],
         "d: per-channel axis is not the output channels"),
        ([helper.make_node("Resize", ["x", "", "r"], ["y"], name="r", mode="cubic")],
         [_scale("r", [1, 1, 2, 2])], "r: Resize mode 'cubic'"),
        ([helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2],
                           dilations=[2, 2])], [], "p: pooling dilations"),
    ],
)  # fmt: skip
def test_the_check_catches_what_tensorrt_refuses(
    nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto], problem: str
) -> None:
    """The check can fail: each probe breaks one recorded limit."""
    found = tensorrt_problems(_model(nodes, initializers))
    assert len(found) == 1
    assert found[0].startswith(problem)


def test_the_matrix_records_its_version_and_source() -> None:
    assert MATRIX["tensorrt"].startswith("10.")
    assert MATRIX["source"].endswith("onnx-tensorrt/blob/main/docs/operators.md")
    assert MATRIX["operators"]["QuantizeLinear"]["restrictions"] == "`y_zero_point` must be 0"
    assert "UINT8" not in MATRIX["operators"]["DequantizeLinear"]["types"]
    assert not set(MATRIX["unsupported"]) & set(MATRIX["operators"])
