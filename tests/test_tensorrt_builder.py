"""The engine builder (`edge engines`) driven through tests/fake_tensorrt.py.

Shows the builder's glue: what it asks TensorRT for (FP16, workspace, profiles, DLA, FP32
layers, timing cache), what it records in the sidecar, when it skips or rebuilds, and how it
reports failures. It cannot show that TensorRT builds these models: only a Jetson can.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edge.cli import engines, main
from edge.engines import open_engine
from edge.engines.build import BuildOptions, build_all, profile_shapes
from edge.engines.sidecar import read_sidecar, sidecar_path
from edge.engines.tensorrt import TensorRTEngine
from edge.errors import EdgeError
from tests import detect_models, fake_tensorrt
from tests.onnx_models import constant_chroma_model, scale_model

detector_onnx = detect_models.detector_onnx  # the shared session fixtures, found by name
reid_onnx = detect_models.reid_onnx


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> fake_tensorrt.FakeGpu:
    monkeypatch.setattr("edge.paths.CACHE", tmp_path / "cache")
    return fake_tensorrt.install(monkeypatch)


@pytest.fixture
def models(tmp_path: Path, detector_onnx: Path, reid_onnx: Path) -> Path:
    """A models folder with the three ONNX files (the detector and embedder linked, not copied)."""
    folder = tmp_path / "models"
    folder.mkdir()
    constant_chroma_model(folder / "colorizer.onnx", (0.1, -0.1))
    (folder / "yolov8_detector.onnx").symlink_to(detector_onnx)
    (folder / "reid_mobilenetv2.onnx").symlink_to(reid_onnx)
    return folder


def test_builds_all_three_with_sidecars_then_skips_them(
    gpu: fake_tensorrt.FakeGpu, models: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        engines = build_all(models, BuildOptions())
    assert [e.name for e in engines] == [
        "colorizer.engine",
        "yolov8_detector.engine",
        "reid_mobilenetv2.engine",
    ]
    assert "[1/3] colorizer: building colorizer.engine from colorizer.onnx (no engine yet)" in (
        caplog.text
    )
    reid = read_sidecar(models / "reid_mobilenetv2.engine")
    assert reid is not None
    assert reid.target.describe() == "TensorRT 10.3.0 on Orin (fake) (compute capability 8.7)"
    assert (reid.precision, reid.flags["workspace_mib"], reid.flags["batch"]) == (
        "fp16",
        1024,
        [1, 8, 32],
    )
    assert reid.inputs == [{"name": "crops", "shape": [-1, 3, 224, 224], "dtype": "float32"}]
    assert reid.outputs == [{"name": "embeddings", "shape": [-1, 1280], "dtype": "float32"}]
    assert reid.onnx_metadata["task"] == "reid"
    assert reid.build_seconds > 0
    assert reid.built_at.endswith("+00:00")
    header = fake_tensorrt.plan_header(models / "reid_mobilenetv2.engine")
    assert header["profile"] == {"crops": [[1, 3, 224, 224], [8, 3, 224, 224], [32, 3, 224, 224]]}
    assert header["flags"] == ["FP16"]
    assert gpu.calls["build"] == 3

    caplog.clear()
    with caplog.at_level(logging.INFO):
        build_all(models, BuildOptions())
    assert gpu.calls["build"] == 3, "up-to-date engines are not rebuilt"
    assert caplog.text.count("is up to date, skipped") == 3


@pytest.mark.parametrize(
    ("change", "reason", "rebuilt"),
    [
        ("onnx", "colorizer.onnx changed", 1),
        ("tensorrt", "it was built by TensorRT 10.3.0, but this is TensorRT 10.7.0", 3),
        ("gpu", "it was built for Orin (fake) (compute capability 8.7)", 3),
        ("options", "build options changed", 3),
        ("sidecar", "not a valid engine sidecar", 1),
        ("force", "--force", 3),
    ],
)
def test_stale_or_foreign_engines_are_rebuilt(
    gpu: fake_tensorrt.FakeGpu,
    models: Path,
    caplog: pytest.LogCaptureFixture,
    change: str,
    reason: str,
    rebuilt: int,
) -> None:
    build_all(models, BuildOptions())
    options, force = BuildOptions(), False
    if change == "onnx":
        constant_chroma_model(models / "colorizer.onnx", (0.2, 0.2))
    elif change == "tensorrt":
        fake_tensorrt.switch(tensorrt_version="10.7.0")
    elif change == "gpu":
        fake_tensorrt.switch(gpu="RTX 4090", compute_capability=(8, 9))
    elif change == "options":
        options = BuildOptions(workspace_mib=512)
    elif change == "sidecar":
        sidecar_path(models / "colorizer.engine").write_text("{truncated")
    else:
        force = True
    with caplog.at_level(logging.INFO):
        build_all(models, options, force=force)
    assert gpu.calls["build"] == 3 + rebuilt
    assert reason in caplog.text
    with open_engine(models / "colorizer.onnx") as engine:  # auto now picks the new engine
        assert isinstance(engine, TensorRTEngine)


def test_timing_cache_persists_between_builds(gpu: fake_tensorrt.FakeGpu, models: Path) -> None:
    build_all(models, BuildOptions(), only=("colorizer",))
    build_all(models, BuildOptions(), only=("colorizer",), force=True)
    (cache,) = (models.parent / "cache").glob("*.timing")
    assert cache.name == "tensorrt-10.3.0-sm8.7.timing"
    assert b'"builds": 2' in cache.read_bytes(), "the second build started from the first's cache"


def test_parser_errors_name_node_and_message(gpu: fake_tensorrt.FakeGpu, tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu_0"),
        helper.make_node("Mystery", ["r"], ["y"], name="mystery_1", domain="com.example"),
    ]
    graph = helper.make_graph(
        nodes,
        "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    folder = tmp_path / "models"
    folder.mkdir()
    onnx.save(model, folder / "colorizer.onnx")
    with pytest.raises(
        EdgeError,
        match=r"TensorRT cannot parse colorizer\.onnx: node 1 \(mystery_1, Mystery\): "
        r"No importer registered for op: Mystery",
    ):
        build_engine(folder)
    assert not list(folder.glob("*.engine*")), "nothing half-written"


def build_engine(folder: Path, **options: object) -> Path:
    build_all(folder, BuildOptions(**options), only=("colorizer",))  # type: ignore[arg-type]
    return folder / "colorizer.engine"


def test_dla_core_with_gpu_fallback(gpu: fake_tensorrt.FakeGpu, models: Path) -> None:
    engine = build_engine(models, dla_core=1)
    header = fake_tensorrt.plan_header(engine)
    assert (header["dla_core"], header["flags"]) == (1, ["FP16", "GPU_FALLBACK"])
    with open_engine(engine) as opened:  # the runtime must pick the same DLA core
        gray = np.full((1, 128, 128, 1), 0.5, np.float32)
        assert opened.run({"lightness": gray})["chroma"].shape == (1, 128, 128, 2)
    with pytest.raises(EdgeError, match="DLA core 2 does not exist: this device has 2 DLA cores"):
        build_engine(models, dla_core=2)


def test_named_layers_stay_fp32(gpu: fake_tensorrt.FakeGpu, models: Path) -> None:
    model = onnx.load(models / "colorizer.onnx")
    for index, node in enumerate(model.graph.node):
        node.name = f"layer_{index}"
    onnx.save(model, models / "colorizer.onnx")
    header = fake_tensorrt.plan_header(build_engine(models, fp32_layers=("layer_1",)))
    assert header["fp32_layers"] == ["layer_1"]
    assert header["flags"] == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
    with pytest.raises(EdgeError, match="no layer named conv_99 in the network"):
        build_engine(models, fp32_layers=("conv_99",))


def test_missing_models_are_skipped_and_named(
    gpu: fake_tensorrt.FakeGpu, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scale_model(tmp_path / "colorizer.onnx", ["batch", 3])
    with caplog.at_level(logging.WARNING):
        assert [e.name for e in build_all(tmp_path, BuildOptions())] == ["colorizer.engine"]
    assert "[2/3] detector: " in caplog.text
    assert "yolov8_detector.onnx not found, skipped" in caplog.text
    with pytest.raises(EdgeError, match="no ONNX model found in"):
        build_all(tmp_path / "empty", BuildOptions())
    with pytest.raises(EdgeError, match=r"unknown model yolo: choose from \['colorizer'"):
        build_all(tmp_path, BuildOptions(), only=("yolo",))


def test_command_line(gpu: fake_tensorrt.FakeGpu, models: Path) -> None:
    argv = ["engines", "--models", str(models), "--only", "reid", "--batch", "reid:1,2,4"]
    assert main("edge", "", [engines.register], argv) == 0
    header = fake_tensorrt.plan_header(models / "reid_mobilenetv2.engine")
    assert [shape[0] for shape in header["profile"]["crops"]] == [1, 2, 4]
    with pytest.raises(SystemExit):
        main("edge", "", [engines.register], ["engines", "--batch", "reid:4,2,1"])


def test_without_tensorrt_the_command_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pycuda", None)
    assert main("edge", "", [engines.register], ["engines"]) == 2
    assert "requirements-jetson.txt" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("shape", "metadata", "expected"),
    [
        ((-1, 3, 224, 224), {}, tuple((b, 3, 224, 224) for b in (1, 8, 32))),
        ((1, 3, -1, -1), {"imgsz": "[480, 640]"}, ((1, 3, 480, 640),) * 3),
        ((-1, 3, -1, -1), {"input_size": "[64, 96]"}, tuple((b, 3, 64, 96) for b in (1, 8, 32))),
        ((1, 3, 640, 640), {}, ((1, 3, 640, 640),) * 3),
    ],
)  # fmt: skip
def test_profile_shapes(shape: tuple, metadata: dict, expected: tuple) -> None:
    assert profile_shapes("images", shape, (1, 8, 32), metadata) == expected


def test_profile_needs_a_size_for_other_dynamic_axes() -> None:
    with pytest.raises(EdgeError, match=r"input 'x' \(1, -1\) has dynamic axis 1 and no size"):
        profile_shapes("x", (1, -1), (1, 8, 32), {})
