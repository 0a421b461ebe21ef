"""`export quantize` and the INT8 accuracy gate: quantized models run through ONNX Runtime and
carry their precision, flavour and gate in their metadata; a model that fails the gate is still
written, marked failed, and the runtime refuses it in one line naming the failed check.

(The engine builder's INT8 path is in test_tensorrt_builder.py; operator support in
test_tensorrt_operators.py.)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from edge.cli import main
from edge.config import load
from edge.engines import open_engine
from edge.engines.onnxruntime import ISA_KEY, OnnxRuntimeEngine, cpu_flags, cpu_isa
from edge.engines.precision import FLAVOUR_KEY, GATE_KEY, precision_path
from edge.errors import EdgeError
from edge.models.detector import Detector
from edge.models.embedder import Embedder
from edge.runtime import load_models
from export import quantize as quantize_module
from export.data import data_file
from export.gate import verdict
from export.quantize import (
    DEFAULT_WEIGHTS,
    FLOAT_PARTS,
    Recipe,
    default_flavour,
    float_nodes,
    quantize,
    report_path,
)
from tests import detect_models
from tests import int8_models as int8

detector_320 = detect_models.detector_320  # the shared session fixtures, found by name
reid_onnx = detect_models.reid_onnx
vtest_frames = detect_models.vtest_frames
int8_models = int8.int8_models
CHECKS = {"detector": ["recall", "precision"], "embedder": ["mean_cosine"]}


def zero_point_types(model: Path) -> set[int]:
    graph = onnx.load(str(model)).graph
    return {i.data_type for i in graph.initializer if i.name.endswith("_zero_point")}


@pytest.mark.parametrize("model", ["detector", "embedder"])
@pytest.mark.parametrize("flavour", ["cpu", "tensorrt"])
def test_quantized_models_run_and_carry_precision_flavour_and_gate(
    int8_models: dict[tuple[str, str], Path],
    vtest_frames: list[np.ndarray],
    model: str,
    flavour: str,
) -> None:
    path = int8_models[model, flavour]
    frame = vtest_frames[30]
    with open_engine(path, "onnxruntime", gated=False) as engine:
        assert engine.precision == "int8"
        assert engine.metadata[FLAVOUR_KEY] == flavour
        gate = json.loads(engine.metadata[GATE_KEY])
        assert [c["name"] for c in gate["checks"]] == CHECKS[model]
        assert gate["passed"] == all(c["ok"] for c in gate["checks"])
        if model == "detector":
            assert engine.metadata["class_names"] == '["Normal", "Fall"]'  # FP32's metadata kept
            assert len(Detector(engine, conf=0.05)(frame)) > 0
        else:
            boxes = np.array([[100, 100, 160, 260], [300, 200, 350, 330]], np.float32)
            embeddings = Embedder(engine)(frame, boxes)
            assert embeddings.shape == (2, 1280)
            assert np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-4)
    report = json.loads(report_path(path).read_text())
    assert report["gate"] == gate
    # cpu: unsigned activations, signed weights (unsigned for u8), INT32 biases; tensorrt:
    # signed, float biases
    weights = TensorProto.UINT8 if report["weights"] == "u8" else TensorProto.INT8
    cpu = {weights, TensorProto.UINT8, TensorProto.INT32}
    expected = cpu if flavour == "cpu" else {TensorProto.INT8}
    assert zero_point_types(path) == expected


def test_a_model_failing_the_gate_is_written_marked_failed_and_refused(
    int8_models: dict[tuple[str, str], Path],
) -> None:
    """The 320×320 test detector calibrated on 4 frames fails: the command said so, the file is
    there for inspection, and opening it (any backend) names the failed checks in one line."""
    path = int8_models["detector", "tensorrt"]
    said = (path.parent / "detector_tensorrt.error").read_text()
    assert said.startswith(f"{path.name} failed the INT8 accuracy gate (")
    assert "written marked failed, for inspection" in said
    for backend in ("auto", "onnxruntime"):
        with pytest.raises(EdgeError) as caught:
            open_engine(path, backend)
        message = str(caught.value)
        assert message.startswith(f"{path.name} failed its INT8 accuracy gate (")
        failed = [c for c in json.loads(onnx_metadata(path)[GATE_KEY])["checks"] if not c["ok"]]
        assert failed
        for check in failed:
            assert f"{check['name']} {check['value']:.4f} < {check['limit']} vs FP32" in message
        assert "python -m export quantize" in message
        assert "\n" not in message


def onnx_metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def with_metadata(source: Path, target: Path, **props: str | None) -> Path:
    """A copy of `source` at `target` with these metadata entries set (None: removed)."""
    model = onnx.load(str(source))
    kept = {p.key: p.value for p in model.metadata_props if p.key not in props}
    onnx.helper.set_model_props(model, kept | {k: v for k, v in props.items() if v is not None})
    onnx.save(model, str(target))
    return target


def test_a_model_without_a_gate_is_refused(
    int8_models: dict[tuple[str, str], Path], tmp_path: Path
) -> None:
    ungated = with_metadata(int8_models["embedder", "tensorrt"], tmp_path / "ungated.onnx",
                            **{GATE_KEY: None})  # fmt: skip
    with pytest.raises(EdgeError, match=r"^ungated\.onnx has no accuracy gate result in its"):
        open_engine(ungated)


# Per weights choice: the type of the quantized weights and the largest magnitude they reach.
WEIGHT_CODES = {
    "s8": (TensorProto.INT8, 127),
    "s7": (TensorProto.INT8, 64),
    "u8": (TensorProto.UINT8, 255),
}


def weight_range(model: Path, data_type: int) -> int:
    """The largest magnitude of the model's quantized weights of `data_type` (0 if none)."""
    graph = onnx.load(str(model)).graph
    weights = [i for i in graph.initializer
               if i.data_type == data_type and not i.name.endswith("_zero_point")]  # fmt: skip
    return max(
        (int(np.abs(onnx.numpy_helper.to_array(w).astype(np.int32)).max()) for w in weights),
        default=0,
    )


def test_the_cpu_flavour_records_the_instruction_set_it_is_for(
    int8_models: dict[tuple[str, str], Path],
) -> None:
    """Made for this CPU, the cpu flavour has the weights of its instruction set; for x86
    without VNNI (--isa avx2) DEFAULT_WEIGHTS["avx2"], whose products VPMADDUBSW cannot saturate.
    The metadata and report say which, and on which CPU the gate ran; the weights are of that
    type and range, with none of the other 8-bit type."""
    here = cpu_isa(cpu_flags())
    for flavour, isa in (("cpu", here), ("cpu-avx2", "avx2")):
        path = int8_models["embedder", flavour]
        report = json.loads(report_path(path).read_text())
        weights = report["weights"]
        assert weights in DEFAULT_WEIGHTS[isa]
        assert [r["weights"] for r in report["rejected_weights"]] == list(
            DEFAULT_WEIGHTS[isa][: DEFAULT_WEIGHTS[isa].index(weights)]
        ), "the defaults were tried in order until one passed"
        assert onnx_metadata(path)[ISA_KEY] == ("vnni" if weights == "s8" else "avx2")
        assert (report["isa"], report["weights"], report["gate_isa"]) == (
            onnx_metadata(path)[ISA_KEY], weights, here
        )  # fmt: skip
        data_type, magnitude = WEIGHT_CODES[weights]
        other = TensorProto.UINT8 if data_type == TensorProto.INT8 else TensorProto.INT8
        assert (weight_range(path, data_type), weight_range(path, other)) == (magnitude, 0)
    assert ISA_KEY not in onnx_metadata(int8_models["embedder", "tensorrt"])


@pytest.mark.parametrize(
    ("flags", "isa"),
    [
        ({"avx2", "avx512f", "avx512_vnni"}, "vnni"),
        ({"avx2", "avx_vnni"}, "vnni"),  # AVX-VNNI without AVX-512 (Alder Lake)
        ({"avx2", "avx512f", "avx512bw"}, "avx2"),  # AVX-512 without VNNI (Skylake-SP)
        ({"avx2", "fma"}, "avx2"),
        (set(), "vnni"),  # not x86: no flags line (ARM's NEON INT8 does not saturate)
    ],
)
def test_cpu_isa(flags: set[str], isa: str) -> None:
    assert cpu_isa(frozenset(flags)) == isa


def test_cpu_flags_are_the_first_flags_line(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\nflags\t: x\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "fma"}
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")  # ARM
    assert cpu_flags(cpuinfo) == frozenset()
    assert cpu_flags(tmp_path / "absent") == frozenset()


NO_VNNI = frozenset({"avx2", "fma", "avx512f", "avx512bw"})


def test_a_model_for_vnni_is_refused_where_the_cpu_flags_lack_it(
    int8_models: dict[tuple[str, str], Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One line naming the problem and both ways out; run with a warning line where allowed;
    a model for avx2 runs anywhere; one without the record (older) counts as made for VNNI."""
    source = int8_models["embedder", "cpu"]
    vnni = with_metadata(source, tmp_path / "reid_int8.onnx", **{ISA_KEY: "vnni"})
    with pytest.raises(EdgeError) as caught:
        OnnxRuntimeEngine(vnni, flags=NO_VNNI)
    message = str(caught.value)
    assert message.startswith("reid_int8.onnx is INT8 for CPUs with VNNI, and this one has none")
    assert "--isa avx2" in message
    assert 'pipeline.int8_foreign_isa = "warn"' in message
    assert "\n" not in message
    OnnxRuntimeEngine(vnni, flags=NO_VNNI | {"avx512_vnni"}).close()
    with caplog.at_level(logging.WARNING, logger="edge.engines.onnxruntime"):
        OnnxRuntimeEngine(vnni, foreign_isa="warn", flags=NO_VNNI).close()
    assert [r.getMessage().startswith("reid_int8.onnx is INT8 for CPUs with VNNI") for r in
            caplog.records] == [True]  # fmt: skip
    OnnxRuntimeEngine(int8_models["embedder", "cpu-avx2"], flags=NO_VNNI).close()
    older = with_metadata(source, tmp_path / "older.onnx", **{ISA_KEY: None})
    with pytest.raises(EdgeError, match=r"^older\.onnx is INT8 for CPUs with VNNI"):
        OnnxRuntimeEngine(older, flags=NO_VNNI)
    OnnxRuntimeEngine(int8_models["embedder", "tensorrt"], flags=NO_VNNI).close()  # not cpu


def test_the_default_flavour_is_cpu_where_only_the_tensorrt_stubs_are() -> None:
    """tensorrt-stubs leaves a bare `tensorrt/` folder that importlib finds (issue 25)."""
    import importlib.util

    assert importlib.util.find_spec("tensorrt") is not None  # the stubs (requirements-dev)
    assert default_flavour() == "cpu"


# Run on the emulated CPU: U8S8 products of 255 × 127 and 255 × 64, and U8U8 of 255 × 255,
# K = 64, in 8 rows.
SATURATION = """
import json, numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto as T, helper, numpy_helper
from edge.engines.onnxruntime import cpu_flags, cpu_isa
signed = np.tile(np.array([[127, 64]], np.int8), (64, 1))
unsigned = np.full((64, 1), 255, np.uint8)
graph = helper.make_graph(
    [helper.make_node("MatMulInteger", ["a", "s"], ["y"]),
     helper.make_node("MatMulInteger", ["a", "u"], ["z"])], "g",
    [helper.make_tensor_value_info("a", T.UINT8, [8, 64])],
    [helper.make_tensor_value_info("y", T.INT32, [8, 2]),
     helper.make_tensor_value_info("z", T.INT32, [8, 1])],
    [numpy_helper.from_array(signed, "s"), numpy_helper.from_array(unsigned, "u")])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
y, z = session.run(None, {"a": np.full((8, 64), 255, np.uint8)})
print(json.dumps({"isa": cpu_isa(cpu_flags()), "y": y[0].tolist() + z[0].tolist()}))
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or "cpuid_fault" not in cpu_flags() or not shutil.which("gcc"),
    reason="benchmarks.emulate_avx2 needs root, CPUID faulting and gcc",
)
def test_without_vnni_onnx_runtime_saturates_8_bit_weights_not_7_bit_nor_unsigned() -> None:
    """On the emulated CPU without VNNI, ONNX Runtime's U8S8 kernel adds u8×s8 pairs in 16 bits:
    255×127×2 saturates at 32767, 255×64×2 does not, nor do U8U8's 255×255 products (added in
    32 bits); the runtime reads that CPU as avx2."""
    from benchmarks.emulate_avx2 import command_line

    exact = [64 * 255 * 127, 64 * 255 * 64, 64 * 255 * 255]
    command = command_line([sys.executable, "-c", SATURATION])
    emulated = json.loads(subprocess.run(command, capture_output=True, check=True).stdout)
    assert emulated == {"isa": "avx2", "y": [32 * 32767, *exact[1:]]}
    if cpu_isa(cpu_flags()) == "vnni":
        native = subprocess.run([sys.executable, "-c", SATURATION], capture_output=True, check=True)
        assert json.loads(native.stdout) == {"isa": "vnni", "y": exact}


def test_the_runtime_picks_the_file_of_each_precision_and_refuses_a_failed_gate(
    detector_320: Path,
    reid_onnx: Path,
    int8_models: dict[tuple[str, str], Path],
    tmp_path: Path,
) -> None:
    detector = tmp_path / "detector.onnx"
    shutil.copy(detector_320, detector)
    shutil.copy(int8_models["detector", "tensorrt"], precision_path(detector, "int8"))
    reid = tmp_path / "reid.onnx"
    shutil.copy(reid_onnx, reid)
    shutil.copy(int8_models["embedder", "cpu"], precision_path(reid, "int8"))
    overrides = [f"detector.model='{detector}'", f"tracker.reid_model='{reid}'"]
    models = load_models(load(None, [*overrides, "tracker.reid_precision=int8"]))
    assert (models.detector.engine.precision, models.embedder.engine.precision) == (
        "fp32",
        "int8",
    )
    assert models.embedder.engine.path == tmp_path / "reid_int8.onnx"
    with pytest.raises(EdgeError, match=r"^detector_int8\.onnx failed its INT8 accuracy gate"):
        load_models(load(None, [*overrides, "detector.precision=int8"]))
    with pytest.raises(EdgeError, match=r"'detector\.precision'.*int4"):
        load(None, ["detector.precision=int4"])


def test_precision_paths() -> None:
    model = Path("models/yolov8_detector.onnx")
    assert precision_path(model, "fp32") == model
    assert precision_path(model, "fp16") == Path("models/yolov8_detector_fp16.onnx")
    assert precision_path(model, "int8") == Path("models/yolov8_detector_int8.onnx")
    with pytest.raises(EdgeError, match=r"point the model at the FP32 \.onnx"):
        precision_path("models/yolov8_detector.engine", "int8")


def test_each_float_part_keeps_more_in_float(detector_320: Path, reid_onnx: Path) -> None:
    """From `decode` to `head`, each choice keeps more of the YOLOv8 head (/model.22/) in float,
    never a node outside it; the embedder's `stem` is its first blocks."""
    model = onnx.load(str(detector_320))
    kept = {part: set(float_nodes(model, "detector", part)) for part in FLOAT_PARTS["detector"]}
    assert kept["decode"] < kept["logits"] < kept["head"]
    assert all(name.startswith("/model.22/") for name in kept["head"])
    assert "/model.22/Concat_3" in kept["decode"]  # pixel boxes and scores into one tensor
    assert "/model.22/cv3.0/cv3.0.2/Conv" in kept["logits"] - kept["decode"]
    assert "/model.22/cv3.0/cv3.0.0/conv/Conv" in kept["head"] - kept["logits"]
    stem = float_nodes(onnx.load(str(reid_onnx)), "embedder", "stem")
    assert "/features/features.0/features.0.0/Conv" in stem
    assert "/features/features.2/conv/conv.6/Conv" in stem
    assert not [name for name in stem if name.startswith("/features/features.3/")]
    with pytest.raises(EdgeError, match="--float head is not for the embedder: choose one of"):
        float_nodes(model, "embedder", "head")


def test_drift_holds_int8_against_fp32_with_the_gates_limits(
    detector_320: Path,
    reid_onnx: Path,
    int8_models: dict[tuple[str, str], Path],
    tmp_path: Path,
) -> None:
    """`benchmarks drift --precision int8`: detector precision/recall/mAP@0.5 and embedder cosine
    of the INT8 models beside the FP32 ones, against drift_int8.toml (the gate's limits)."""
    from benchmarks import drift

    detector, reid = tmp_path / "detector.onnx", tmp_path / "reid.onnx"
    for fp32, model in ((detector_320, detector), (reid_onnx, reid)):
        shutil.copy(fp32, model)
    shutil.copy(int8_models["detector", "tensorrt"], precision_path(detector, "int8"))
    shutil.copy(int8_models["embedder", "cpu"], precision_path(reid, "int8"))
    argv = ["drift", "--precision", "int8", "--detector", str(detector), "--embedder", str(reid),
            "--frames", "3", "--photos", "0", "--output", str(tmp_path / "bench")]  # fmt: skip
    status = main("benchmarks", "", [drift.register], argv)
    data = json.loads((tmp_path / "bench" / "drift.json").read_text())
    assert "colorizer" not in data
    assert data["detector"]["int8"] == "INT8 ONNX (detector_int8.onnx, ONNX Runtime)"
    assert {"boxes_int8", "precision", "recall", "map50_vs_fp32"} <= set(data["detector"])
    assert data["embedder"]["int8"] == "INT8 ONNX (reid_int8.onnx, ONNX Runtime)"
    verdicts = data["thresholds"]
    assert set(verdicts) == {
        "detector_min_recall",
        "detector_min_precision",
        "embedder_min_cosine",
    }
    assert status == (0 if all(v["ok"] for v in verdicts.values()) else 2)
    assert "# INT8 drift against FP32" in (tmp_path / "bench" / "drift.md").read_text()


@pytest.mark.parametrize(
    ("recipe", "tried"),
    [
        (Recipe(isa="vnni"), ["s8", "u8"]),
        (Recipe(isa="avx2"), ["u8"]),
        (Recipe(isa="vnni", weights="s8"), ["s8"]),  # asked for: no other is tried
        (Recipe(flavour="tensorrt"), ["s8"]),
    ],
)
def test_weights_tried_in_turn(recipe: Recipe, tried: list[str]) -> None:
    candidates = recipe.candidates("detector", frozenset())
    assert [c.weights for c in candidates] == tried


def test_the_next_default_weights_are_made_when_the_first_fail_the_gate(
    detector_320: Path, reid_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s8 failing its gate (forced here: it misses the 640×640 detector's on the EPYC), the
    model is made again with u8 weights from the same calibration, and the report says so."""
    gates: list[dict[str, object]] = []

    def first_fails(model: str, results: dict[str, object], measured: str) -> dict[str, object]:
        gate = verdict(model, results, measured)
        if not gates:
            failed = [{**check, "ok": False} for check in gate["checks"]]
            gate = {**gate, "passed": False, "checks": failed}
        gates.append(gate)
        return gate

    monkeypatch.setattr(quantize_module, "verdict", first_fails)
    output = tmp_path / "embedder_int8.onnx"
    report = quantize("embedder", reid_onnx, data_file("vtest.avi"), output, Recipe(isa="vnni"),
                      4, 4, detector_model=detector_320)  # fmt: skip
    assert len(gates) == 2
    assert [r["weights"] for r in report["rejected_weights"]] == ["s8"]
    assert (report["weights"], report["isa"], report["gate"]["passed"]) == ("u8", "avx2", True)
    assert onnx_metadata(output)[ISA_KEY] == "avx2"  # u8 runs as it was gated on any x86 CPU
