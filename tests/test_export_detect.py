"""YOLOv8 export: the metadata the runtime reads, the dynamic variant, refusal of other models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge.engines import open_engine
from edge.errors import EdgeError
from edge.models.detector import Detector
from export.freshness import reuse_or_export
from export.yolo import default_weights, export_yolo, ultralytics_offline


def test_export_records_what_the_runtime_needs(detector_onnx: Path) -> None:
    model = onnx.load(str(detector_onnx), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["class_names"]) == ["Normal", "Fall"]
    assert json.loads(meta["input_size"]) == [640, 640]
    assert (meta["stride"], meta["task"]) == ("32", "detect")
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    # A dynamic batch (several cameras' frames in one call), the input size fixed
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 640, 640]
    assert meta["dynamic_batch"] == "true"
    with open_engine(detector_onnx) as engine:
        assert engine.inputs[0].shape == (None, 3, 640, 640)
        assert engine.outputs[0].shape == (None, 6, 8400)


def test_dynamic_export_runs_at_camera_aspect(
    tmp_path: Path,
    vtest_frames: list[np.ndarray],
) -> None:
    path = export_yolo(default_weights(), tmp_path / "dynamic.onnx", (480, 640), dynamic=True)
    with open_engine(path) as engine:
        assert engine.inputs[0].shape == (None, 3, None, None)
        detector = Detector(engine, input_hw=(480, 640), classes=["Normal"])
        assert detector.info.input_hw == (480, 640)
        tensor, _ = detector.preprocess(vtest_frames[0])
        assert tensor.shape == (1, 3, 480, 640)  # 4:3 video, no padding: 25% less work
        assert sum(len(detector(f)) for f in vtest_frames[:5]) >= 5


@pytest.fixture(scope="module")
def other_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained classification and segmentation YOLOv8 checkpoints, built from ultralytics'
    bundled model definitions (no download), and a file that is no checkpoint at all."""
    ultralytics_offline()
    from ultralytics import YOLO

    folder = tmp_path_factory.mktemp("pt")
    for name in ("yolov8n-cls", "yolov8n-seg"):
        YOLO(f"{name}.yaml").save(str(folder / f"{name}.pt"))
    (folder / "notes.pt").write_text("not a checkpoint\n")
    return folder


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("yolov8n-cls.pt", r"is a 'classify' model with a Classify head, not a YOLOv8 detection"),
        ("yolov8n-seg.pt", r"is a 'segment' model with a Segment head, not a YOLOv8 detection"),
        ("notes.pt", "is not an ultralytics YOLOv8 checkpoint"),
        ("missing.pt", "weights file not found"),
    ],
)
def test_weights_that_are_not_a_detection_model_are_refused(
    other_models: Path, tmp_path: Path, name: str, message: str
) -> None:
    with pytest.raises(EdgeError, match=message) as caught:
        export_yolo(other_models / name, tmp_path / "out.onnx")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out.onnx").exists()


def test_old_opset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EdgeError, match="opset 12 is too old: use 17"):
        export_yolo(default_weights(), tmp_path / "out.onnx", opset=12)


def test_export_is_reused_only_while_newer_than_its_weights(tmp_path: Path) -> None:
    weights, model = tmp_path / "w.pt", tmp_path / "m.onnx"
    weights.write_text("w")
    model.write_text("m")
    os.utime(weights, (1000, 1000))
    os.utime(model, (2000, 2000))
    exports: list[Path] = []

    def export() -> Path:
        exports.append(model)
        return model

    assert reuse_or_export(model, weights, export) == model
    assert exports == []
    os.utime(weights, (3000, 3000))
    reuse_or_export(model, weights, export)
    assert exports == [model]
