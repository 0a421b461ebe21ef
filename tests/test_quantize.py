"""`export quantize` and the INT8 accuracy gate: quantized models run through ONNX Runtime and
carry their precision, flavour and gate in their metadata; a model that fails the gate is still
written, marked failed, and the runtime refuses it in one line naming the failed check.

(The engine builder's INT8 path is in test_tensorrt_builder.py; operator support in
test_tensorrt_operators.py.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from edge.cli import main
from edge.config import load
from edge.engines import open_engine
from edge.engines.precision import FLAVOUR_KEY, GATE_KEY, precision_path
from edge.errors import EdgeError
from edge.models.detector import Detector
from edge.models.embedder import Embedder
from edge.runtime import load_models
from export.quantize import FLOAT_PARTS, float_nodes, report_path
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
    assert json.loads(report_path(path).read_text())["gate"] == gate
    # cpu: unsigned activations, signed weights, INT32 biases; tensorrt: signed, float biases
    cpu = {TensorProto.INT8, TensorProto.UINT8, TensorProto.INT32}
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


def test_a_model_without_a_gate_is_refused(
    int8_models: dict[tuple[str, str], Path], tmp_path: Path
) -> None:
    model = onnx.load(str(int8_models["embedder", "tensorrt"]))
    kept = [p for p in model.metadata_props if p.key != GATE_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(tmp_path / "ungated.onnx"))
    with pytest.raises(EdgeError, match=r"^ungated\.onnx has no accuracy gate result in its"):
        open_engine(tmp_path / "ungated.onnx")


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
