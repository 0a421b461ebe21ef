"""The engine builder (`edge engines`) driven through tests/fake_tensorrt.py.

Shows the builder's glue: what it asks TensorRT for (FP16, workspace, profiles, DLA, FP32
layers, timing cache), what it records in the sidecar, when it skips or rebuilds, and how it
reports failures. It cannot show that TensorRT builds these models: only a Jetson can.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edge.cli import engines, main
from edge.engines import open_engine
from edge.engines.build import BuildOptions, build_all, parser_errors, profile_shapes
from edge.engines.precision import GATE_KEY
from edge.engines.sidecar import read_sidecar, sidecar_path
from edge.engines.tensorrt import TensorRTEngine
from edge.errors import EdgeError
from export.gate import CALIBRATION_KEY
from tests import detect_models, fake_tensorrt
from tests import int8_models as int8
from tests.onnx_models import constant_chroma_model, scale_model

detector_onnx = detect_models.detector_onnx  # the shared session fixtures, found by name
detector_320 = detect_models.detector_320
reid_onnx = detect_models.reid_onnx


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> fake_tensorrt.FakeGpu:
    monkeypatch.setattr("edge.paths.CACHE", tmp_path / "cache")
    # One primary context per fake machine; no device tree here unless a test writes one.
    monkeypatch.setattr("edge.engines.tensorrt._PRIMARY", None, raising=False)
    monkeypatch.setattr("edge.engines.tensorrt.BOARD_MODEL", tmp_path / "model", raising=False)
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
    assert reid.target.describe() == (
        "TensorRT 10.3.0 on Orin (fake) (compute capability 8.7, 16 SMs, 61 GiB)"
    )
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
        (
            "gpu",
            "it was built for Orin (fake) (compute capability 8.7, 16 SMs, 61 GiB), but this GPU "
            "is RTX 4090",
            3,
        ),
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
    elif change == "module":  # an Orin Nano 8 GB: same name and compute capability as the AGX
        fake_tensorrt.switch(multiprocessors=8, memory_bytes=int(7.4 * 2**30), dla_cores=0)
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
    assert cache.name == "tensorrt-10.3.0-sm8.7-61gib.timing"
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


def build_engine(folder: Path, force: bool = False, **options: object) -> Path:
    settings = BuildOptions(**options)  # type: ignore[arg-type]
    build_all(folder, settings, only=("colorizer",), force=force)
    return folder / "colorizer.engine"


def test_dla_core_with_gpu_fallback(gpu: fake_tensorrt.FakeGpu, models: Path) -> None:
    build_all(
        models, BuildOptions(dla_core=1), only=("colorizer",), batches={"colorizer": (1, 1, 1)}
    )
    engine = models / "colorizer.engine"
    header = fake_tensorrt.plan_header(engine)
    assert (header["dla_core"], header["flags"]) == (1, ["FP16", "GPU_FALLBACK"])
    with open_engine(engine) as opened:  # the runtime must pick the same DLA core
        gray = np.full((1, 128, 128, 1), 0.5, np.float32)
        assert opened.run({"lightness": gray})["chroma"].shape == (1, 128, 128, 2)
    with pytest.raises(EdgeError, match="DLA core 2 does not exist: this device has 2 DLA cores"):
        build_all(models, BuildOptions(dla_core=2), batches={"colorizer": (1, 1, 1)})


def test_named_layers_stay_fp32(gpu: fake_tensorrt.FakeGpu, models: Path) -> None:
    model = onnx.load(models / "colorizer.onnx")
    for index, node in enumerate(model.graph.node):
        node.name = f"layer_{index}"
    onnx.save(model, models / "colorizer.onnx")
    header = fake_tensorrt.plan_header(build_engine(models, fp32_layers=("layer_1",)))
    assert header["fp32_layers"] == ["layer_1"]
    assert header["flags"] == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
    with pytest.raises(EdgeError, match="no layer named conv_99 in colorizer's network"):
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


# ------------------------------------------------------------------ ReID profile and max detections


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("", [1, 8, 32]),  # the default detector.max_detections (100): split into 32s
        ("[detector]\nmax_detections = 20\n", [1, 8, 20]),
        ("[detector]\nmax_detections = 5\n", [1, 5, 5]),
        ("[detector]\nmax_detections = 5000\n", [1, 8, 32]),
    ],
)
def test_reid_profile_follows_max_detections_up_to_32(
    gpu: fake_tensorrt.FakeGpu, models: Path, tmp_path: Path, config: str, expected: list[int]
) -> None:
    argv = ["engines", "--models", str(models), "--only", "reid"]
    if config:
        (tmp_path / "edge.toml").write_text(config)
        argv += ["--config", str(tmp_path / "edge.toml")]
    assert main("edge", "", [engines.register], argv) == 0
    header = fake_tensorrt.plan_header(models / "reid_mobilenetv2.engine")
    assert [shape[0] for shape in header["profile"]["crops"]] == expected


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("", [1, 1, 1]),  # one camera
        ('[[cameras]]\nname = "a"\n[[cameras]]\nname = "b"\n[[cameras]]\nname = "c"\n', [1, 3, 3]),
    ],
)
def test_detector_profile_batches_one_frame_per_camera(
    gpu: fake_tensorrt.FakeGpu, models: Path, tmp_path: Path, config: str, expected: list[int]
) -> None:
    (tmp_path / "edge.toml").write_text(config)
    argv = ["engines", "--models", str(models), "--only", "detector"]
    assert (
        main("edge", "", [engines.register], [*argv, "--config", str(tmp_path / "edge.toml")]) == 0
    )
    header = fake_tensorrt.plan_header(models / "yolov8_detector.engine")
    assert [shape[0] for shape in header["profile"]["images"]] == expected
    with open_engine(models / "yolov8_detector.engine", "tensorrt") as engine:
        assert engine.max_batch == expected[2]  # fewer cameras: smaller batches, same engine


# ------------------------------------------------------------------------------ TensorRT versions


def test_tensorrt_8_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, models: Path, capsys: pytest.CaptureFixture
) -> None:
    """JetPack 6.0's TensorRT 8.6 (no DataType.INT64, no ParserError.node_name, implicit batch
    from create_network(0)) is refused where TensorRT is imported, not deep in a build."""
    monkeypatch.setattr("edge.paths.CACHE", tmp_path / "cache")
    monkeypatch.setattr("edge.engines.tensorrt._PRIMARY", None, raising=False)
    fake_tensorrt.install(monkeypatch, tensorrt_version="8.6.2")
    with pytest.raises(
        EdgeError, match=r"^TensorRT 8\.6\.2 is too old: .*TensorRT 10 or newer: Jet"
    ):
        build_all(models, BuildOptions(), only=("colorizer",))
    assert main("edge", "", [engines.register], ["engines", "--models", str(models)]) == 2
    error = capsys.readouterr().err
    assert "TensorRT 10 or newer: JetPack 6.1+" in error
    assert error.count("\n") == 1


# ------------------------------------------------------------------------------------------- DLA


def placed_on_dla(engine: Path) -> int:
    return sum(device == "DLA" for _, device in fake_tensorrt.plan_header(engine)["layers"])


def test_dla_is_refused_with_fp32(
    gpu: fake_tensorrt.FakeGpu, models: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(EdgeError, match="DLA runs FP16 or INT8 layers only"):
        build_all(models, BuildOptions(fp16=False, dla_core=0), only=("detector",))
    argv = ["engines", "--models", str(models), "--dla", "0", "--fp32"]
    assert main("edge", "", [engines.register], argv) == 2
    assert "drop --fp32 or --dla" in capsys.readouterr().err
    assert gpu.calls["build"] == 0


def test_dla_builds_only_static_models_and_records_what_runs_there(
    gpu: fake_tensorrt.FakeGpu, models: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With GPU fallback a dynamic-batch model would land entirely on the GPU while its sidecar
    said dla_core: such models are built for the GPU, with a warning that says how to get DLA."""
    with caplog.at_level(logging.INFO):
        build_all(models, BuildOptions(dla_core=1))
    for name, onnx_file in (("colorizer", "colorizer"), ("reid", "reid_mobilenetv2")):
        engine = models / f"{onnx_file}.engine"
        sidecar = read_sidecar(engine)
        assert sidecar is not None
        assert sidecar.flags["dla_core"] is None, name
        assert placed_on_dla(engine) == 0
        assert f"DLA needs static shapes, but {name} serves batches" in caplog.text
    assert "--batch colorizer:1,1,1" in caplog.text
    detector = read_sidecar(models / "yolov8_detector.engine")  # static 1×3×640×640
    assert detector is not None
    assert detector.flags["dla_core"] == 1
    on_dla = placed_on_dla(models / "yolov8_detector.engine")
    assert 0 < on_dla < detector.placement["layers"]  # e.g. its reshapes stay on the GPU
    assert detector.placement["dla_layers"] == on_dla

    build_all(
        models, BuildOptions(dla_core=1), only=("colorizer",), batches={"colorizer": (2,) * 3}
    )
    colorizer = read_sidecar(models / "colorizer.engine")
    assert colorizer is not None
    assert colorizer.flags["dla_core"] == 1
    assert colorizer.placement == {"layers": 3, "dla_layers": 1}  # the Conv; not the Transposes
    assert placed_on_dla(models / "colorizer.engine") == 1


def test_dla_needs_a_static_profile_even_when_built_directly(
    gpu: fake_tensorrt.FakeGpu, models: Path
) -> None:
    from edge.engines.build import build_engine_file, timing_cache_path
    from edge.engines.tensorrt import current_target

    target = current_target()
    options = BuildOptions(dla_core=0, batch=(1, 1, 4))
    with pytest.raises(EdgeError, match=r"DLA needs static shapes, but input 'lightness' spans"):
        build_engine_file(
            models / "colorizer.onnx", models / "c.engine", options, timing_cache_path(target),
            target,
        )  # fmt: skip


# ------------------------------------------------------------------- the device and its identity


def test_engines_are_rebuilt_for_another_orin_module(
    gpu: fake_tensorrt.FakeGpu, models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    board = tmp_path / "model"
    board.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    build_all(models, BuildOptions(), only=("colorizer",))
    agx = read_sidecar(models / "colorizer.engine")
    assert agx is not None
    assert agx.target.board == "NVIDIA Jetson AGX Orin Developer Kit"
    assert (agx.target.multiprocessors, agx.target.memory_gib, agx.target.dla_cores) == (16, 61, 2)
    board.write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    fake_tensorrt.switch(multiprocessors=8, memory_bytes=int(7.4 * 2**30), dla_cores=0)
    with pytest.raises(EdgeError, match=r"was built for Orin \(fake\) \(.*AGX Orin.*\), but this "):
        open_engine(models / "colorizer.onnx", "tensorrt")
    with caplog.at_level(logging.INFO):
        build_all(models, BuildOptions(), only=("colorizer",))
    assert (
        "but this GPU is Orin (fake) (compute capability 8.7, 8 SMs, 7 GiB, NVIDIA Jetson Orin "
        in (caplog.text)
    )
    caches = sorted(p.name for p in (models.parent / "cache").glob("*.timing"))
    assert caches == [
        "tensorrt-10.3.0-sm8.7-61gib-nvidia-jetson-agx-orin-developer-kit.timing",
        "tensorrt-10.3.0-sm8.7-7gib-nvidia-jetson-orin-nano-developer-kit.timing",
    ]


def test_a_power_mode_with_fewer_sms_keeps_the_engines_and_make_engines_retunes(
    gpu: fake_tensorrt.FakeGpu, models: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """If a power mode's TPC gating lowers the SM count CUDA reports (unverified), the engines
    still run (with a warning), instead of all of them becoming foreign and `auto` running on
    the CPU; `make engines` rebuilds them for it."""
    build_all(models, BuildOptions(), only=("colorizer",))
    fake_tensorrt.switch(multiprocessors=8)
    with caplog.at_level(logging.WARNING), open_engine(models / "colorizer.onnx") as engine:
        assert isinstance(engine, TensorRTEngine)
    assert (
        "colorizer.engine was tuned for 16 SMs, but this GPU reports 8 now (a power mode that "
        "gates TPCs?): it runs; `make engines` tunes it for this mode"
    ) in caplog.text
    with caplog.at_level(logging.INFO):
        build_all(models, BuildOptions(), only=("colorizer",))
    assert "(it was tuned for 16 SMs, but this GPU reports 8 now" in caplog.text
    assert gpu.calls["build"] == 2


def test_a_dla_engine_on_a_board_without_dla_says_so(
    gpu: fake_tensorrt.FakeGpu, models: Path
) -> None:
    build_all(
        models, BuildOptions(dla_core=0), only=("colorizer",), batches={"colorizer": (1,) * 3}
    )
    fake_tensorrt.switch(dla_cores=0)
    with pytest.raises(
        EdgeError, match=r"built for DLA core 0, but this device has no DLA \(the Orin Nano has"
    ):
        open_engine(models / "colorizer.engine")
    with pytest.raises(EdgeError, match="DLA core 0 does not exist: this device has 0 DLA cores"):
        build_all(
            models, BuildOptions(dla_core=0), only=("colorizer",), batches={"colorizer": (1,) * 3}
        )


# ------------------------------------------------------------------- timing cache and write order


def test_damaged_timing_cache_falls_back_to_an_empty_one(
    gpu: fake_tensorrt.FakeGpu, models: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build_all(models, BuildOptions(), only=("colorizer",))
    (cache,) = (models.parent / "cache").glob("*.timing")
    cache.write_bytes(b"\x00garbage from a power cut")
    with caplog.at_level(logging.WARNING):
        build_all(models, BuildOptions(), only=("colorizer",), force=True)
    assert f"TensorRT refused the timing cache {cache}: starting an empty one" in caplog.text
    assert b'"builds": 1' in cache.read_bytes(), "a fresh cache, written after the build"


def test_timing_cache_of_another_device_is_refused_and_replaced(
    gpu: fake_tensorrt.FakeGpu, models: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build_all(models, BuildOptions(), only=("colorizer",))
    (cache,) = (models.parent / "cache").glob("*.timing")
    foreign = fake_tensorrt.ITimingCache(7, ["RTX 4090", [8, 9], 128])
    cache.write_bytes(foreign.serialize())  # set_timing_cache returns False for it
    with caplog.at_level(logging.WARNING):
        build_all(models, BuildOptions(), only=("colorizer",), force=True)
    assert "TensorRT refused the timing cache" in caplog.text
    assert json.loads(cache.read_bytes()[len(fake_tensorrt.CACHE_MAGIC) :]) == {
        "builds": 1,
        "device": gpu.device_key(),
    }


def test_engine_and_sidecar_are_written_last_and_together(
    gpu: fake_tensorrt.FakeGpu, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_all(models, BuildOptions(), only=("colorizer",))
    engine = models / "colorizer.engine"
    before = engine.read_bytes(), sidecar_path(engine).read_bytes()
    constant_chroma_model(models / "colorizer.onnx", (0.3, 0.3))  # the next plan differs

    def full_disk(self: object) -> bytes:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fake_tensorrt.ITimingCache, "serialize", full_disk)
    with pytest.raises(OSError, match="No space left"):
        build_all(models, BuildOptions(), only=("colorizer",))
    assert (engine.read_bytes(), sidecar_path(engine).read_bytes()) == before
    assert sorted(p.name for p in models.glob("*colorizer*")) == [
        "colorizer.engine",
        "colorizer.engine.json",
        "colorizer.onnx",
    ]


def test_interrupted_write_never_pairs_a_new_engine_with_the_old_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.engines import sidecar as module

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"old plan")
    sidecar_path(engine).write_text("{old sidecar}")
    real_replace = Path.replace

    def crash_before_the_sidecar(self: Path, target: Path) -> Path:
        if target == sidecar_path(engine):
            raise KeyboardInterrupt
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", crash_before_the_sidecar)
    record = module.Sidecar("m.onnx", "0" * 64, module.Target("10.3.0", "Orin", "8.7"), "fp16",
                            {}, [], [], 1.0, "now")  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        module.write_engine(engine, b"new plan", record)
    assert engine.read_bytes() == b"new plan"
    assert not sidecar_path(engine).exists(), "the old sidecar is gone: the engine gets rebuilt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine"]


# ------------------------------------------------------------------------------------ layer names


def gemm_model(path: Path) -> Path:
    """Gemm named "fc" with a bias, then an unnamed Relu and an unnamed Constant-fed Add."""
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc"),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Constant", [], ["one"], value=helper.make_tensor("v", 1, [], [1.0])),
        helper.make_node("Add", ["r", "one"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[
            helper.make_tensor("w", TensorProto.FLOAT, [4, 3], [0.1] * 12),
            helper.make_tensor("b", TensorProto.FLOAT, [3], [0.5] * 3),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_layer_names_follow_the_onnx_parser(gpu: fake_tensorrt.FakeGpu, models: Path) -> None:
    """onnx-tensorrt names unnamed nodes node_of_<first output>: the double does too."""
    engine = build_engine(models, fp32_layers=("node_of_conv",))
    header = fake_tensorrt.plan_header(engine)
    assert [name for name, _ in header["layers"]] == [
        "node_of_nchw",
        "node_of_conv",
        "node_of_chroma",
    ]
    assert header["fp32_layers"] == ["node_of_conv"]
    gemm_model(models / "colorizer.onnx")
    header = fake_tensorrt.plan_header(build_engine(models, force=True))
    assert [name for name, _ in header["layers"]] == [
        "fc",
        "(Unnamed Layer* 1) [ElementWise]",  # the Gemm's bias: a second layer, not named "fc"
        "node_of_r",
        "node_of_y",  # the Constant node is no layer
    ]


def test_unknown_layer_says_where_the_names_are(
    gpu: fake_tensorrt.FakeGpu, models: Path, capfd: pytest.CaptureFixture
) -> None:
    with pytest.raises(EdgeError) as caught:
        build_engine(models, fp32_layers=("node_1", "node_of_con"))  # old double's name, a typo
    message = str(caught.value)
    assert message.startswith("no layer named node_1, node_of_con in colorizer's network")
    assert "node_of_<first output>" in message
    assert "--only colorizer --force --verbose" in message
    assert "node_of_conv" in message.partition("; similar names: ")[2]
    argv = ["engines", "--models", str(models), "--only", "colorizer", "--verbose"]
    assert main("edge", "", [engines.register], argv) == 0
    log = capfd.readouterr().err
    assert "Registering layer: node_of_conv for ONNX node: node_of_conv" in log


# ------------------------------------------------------------------------------ Jetson set-up docs


def test_jetson_pip_commands_put_nvcc_on_path() -> None:
    """pycuda's build looks for nvcc on PATH, and JetPack leaves /usr/local/cuda/bin off it."""
    root = Path(__file__).resolve().parent.parent
    for file, target in (
        ("README.md", "-r requirements-jetson.txt"),
        ("docs/tensorrt.md", "-r requirements-jetson.txt"),
        ("Makefile", "-r requirements-jetson.txt"),
        ("deploy/install.sh", '-r "$APP_DIR/$requirements"'),
    ):
        lines = (root / file).read_text().splitlines()
        installs = [i for i, line in enumerate(lines) if "install" in line and target in line]
        assert installs, file
        for i in installs:
            assert re.search(r'PATH="?/usr/local/cuda/bin:', lines[i - 1] + lines[i]), f"{file}:{i}"


# ------------------------------------------------------------------------------------------- INT8

int8_models = int8.int8_models  # the shared session fixture: the test models quantized


@pytest.fixture
def int8_reid(models: Path, detector_320: Path, int8_models: dict[tuple[str, str], Path]) -> Path:
    """The models folder as `make int8` leaves it for the ReID model: its QDQ model (TensorRT
    flavour, gate passed) beside the FP32 model, and the FP32 detector whose boxes its gate was
    measured on (the fixture's 320×320). Returns the QDQ model."""
    (models / "yolov8_detector.onnx").unlink()
    (models / "yolov8_detector.onnx").symlink_to(detector_320)
    quantized = models / "reid_mobilenetv2_int8.onnx"
    shutil.copy(int8_models["embedder", "tensorrt"], quantized)
    return quantized


def metadata_of(model: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}


def test_int8_engines_come_from_the_qdq_models_with_int8_and_fp16(
    gpu: fake_tensorrt.FakeGpu, models: Path, int8_reid: Path
) -> None:
    """`--int8` builds the ReID (and detector) engine from NAME_int8.onnx with the INT8 flag (and
    FP16 for the layers left in float), no calibrator; the colorizer, never quantized, stays
    FP16; the runtime's `auto` backend then runs the INT8 engine beside NAME_int8.onnx."""
    quantized = int8_reid
    built = build_all(models, BuildOptions(int8=True), only=("reid", "colorizer"))
    assert [engine.name for engine in built] == ["colorizer.engine", "reid_mobilenetv2_int8.engine"]
    header = fake_tensorrt.plan_header(models / "reid_mobilenetv2_int8.engine")
    assert header["flags"] == ["FP16", "INT8"]
    assert fake_tensorrt.plan_header(models / "colorizer.engine")["flags"] == ["FP16"]
    sidecar = read_sidecar(models / "reid_mobilenetv2_int8.engine")
    assert sidecar is not None
    assert (sidecar.precision, sidecar.flags["int8"]) == ("int8", True)
    assert sidecar.onnx_metadata["edge.int8_flavour"] == "tensorrt"
    crops = np.random.default_rng(0).normal(size=(3, 3, 224, 224)).astype(np.float32)
    with open_engine(quantized) as engine, open_engine(quantized, "onnxruntime") as reference:
        assert isinstance(engine, TensorRTEngine)
        assert engine.precision == "int8"
        np.testing.assert_allclose(
            engine.run({"crops": crops})["embeddings"],
            reference.run({"crops": crops})["embeddings"],
            rtol=1e-5,
        )
    build_all(models, BuildOptions(int8=True), only=("reid",))
    assert gpu.calls["build"] == 2, "up to date: skipped"


def test_an_int8_engine_is_measured_on_its_gates_frames_and_records_it(
    gpu: fake_tensorrt.FakeGpu, models: Path, int8_reid: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The built engine is measured again, as the runtime opens it, on the QDQ model's held-out
    frames against the same FP32 reference. The double's engine runs the QDQ graph as ONNX
    Runtime does, so it scores what `export quantize` measured: the same frames were read
    again. An engine whose sidecar lacks that result (an older version's) is rebuilt."""
    engine = models / "reid_mobilenetv2_int8.engine"
    build_all(models, BuildOptions(int8=True), only=("reid",))
    sidecar = read_sidecar(engine)
    assert sidecar is not None
    qdq = json.loads(metadata_of(int8_reid)[GATE_KEY])
    assert qdq["measured"] == "onnx-qdq"
    assert (sidecar.int8_gate["measured"], sidecar.int8_gate["passed"]) == ("engine", True)
    assert sidecar.int8_gate["frames"] == int8.TEST_FRAMES
    [check], [check_qdq] = sidecar.int8_gate["checks"], qdq["checks"]
    assert check["name"] == check_qdq["name"] == "mean_cosine"
    assert check["value"] == pytest.approx(check_qdq["value"], abs=1e-5)
    assert not [p.name for p in models.iterdir() if p.name.startswith(".")], "no trial file left"

    record = json.loads(sidecar_path(engine).read_text())
    del record["int8_gate"]  # as versions before the engine's own gate wrote it
    sidecar_path(engine).write_text(json.dumps(record))
    with caplog.at_level(logging.INFO):
        build_all(models, BuildOptions(int8=True), only=("reid",))
    assert "(its INT8 accuracy was measured on the ONNX QDQ graph only, not through the " in (
        caplog.text
    )
    assert gpu.calls["build"] == 2
    rebuilt = read_sidecar(engine)
    assert rebuilt is not None
    assert rebuilt.int8_gate["measured"] == "engine"


def test_an_int8_engine_failing_its_gate_through_tensorrt_is_refused_with_the_fix(
    gpu: fake_tensorrt.FakeGpu,
    models: Path,
    int8_reid: Path,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A passing engine is rebuilt where INT8 engines stray from their QDQ graph (the double's
    `int8_drift`, standing for FP16 float parts and TensorRT's own Q/DQ fusion): it fails the
    gate measured through it, is not written, the older engine is removed, and the command
    says why and what to do in one line; `auto` then runs the QDQ model with ONNX Runtime."""
    engine = models / "reid_mobilenetv2_int8.engine"
    build_all(models, BuildOptions(int8=True), only=("reid",))
    assert engine.is_file()
    gpu.int8_drift = 0.5
    argv = ["engines", "--models", str(models), "--int8", "--only", "reid", "--force"]
    assert main("edge", "", [engines.register], argv) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(
        r"edge engines: error: reid_mobilenetv2_int8\.engine failed its INT8 accuracy gate through "
        r"TensorRT "
        r"\(mean_cosine 0\.\d{4} < 0\.99 vs FP32 on 4 held-out frames\), though its ONNX QDQ graph "
        r"passed: refused, no reid_mobilenetv2_int8\.engine left; run this model in FP16 "
        r"\(precision \"fp16\", `make engines`\) or recalibrate it \(`python -m export quantize` "
        r"with another --method or --float, or more --frames\)",
        error,
    ), error
    assert gpu.calls["build"] == 2
    assert not engine.exists()
    assert not sidecar_path(engine).exists()
    assert not [p.name for p in models.iterdir() if p.name.startswith(".")], "no trial file left"
    with caplog.at_level(logging.WARNING), open_engine(int8_reid) as opened:
        assert not isinstance(opened, TensorRTEngine)
    assert "no TensorRT engine reid_mobilenetv2_int8.engine beside" in caplog.text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("footage", r"the footage its gate was measured on, \S+gone\.avi, is not on this device"),
        ("sha256", r"\S+vtest\.avi changed since its gate was measured on it"),
    ],
)
def test_an_int8_engines_gate_needs_the_footage_it_was_gated_on(
    gpu: fake_tensorrt.FakeGpu, models: Path, int8_reid: Path, change: str, message: str
) -> None:
    """The frames are read again before building: missing or changed footage is refused first."""
    model = onnx.load(str(int8_reid))
    props = {p.key: p.value for p in model.metadata_props}
    calibration = json.loads(props[CALIBRATION_KEY])
    calibration["calibration"][change] = str(models / "gone.avi") if change == "footage" else "0"
    props[CALIBRATION_KEY] = json.dumps(calibration)
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(int8_reid))
    with pytest.raises(
        EdgeError,
        match=rf"^reid_mobilenetv2_int8\.onnx: {message}.* re-quantize on this device \(`make",
    ):
        build_all(models, BuildOptions(int8=True), only=("reid",))
    assert gpu.calls["build"] == 0


def test_int8_models_without_a_passed_gate_or_for_the_cpu_are_refused(
    gpu: fake_tensorrt.FakeGpu,
    models: Path,
    int8_models: dict[tuple[str, str], Path],
    capsys: pytest.CaptureFixture,
) -> None:
    shutil.copy(int8_models["detector", "tensorrt"], models / "yolov8_detector_int8.onnx")
    argv = ["engines", "--models", str(models), "--int8", "--only", "detector"]
    assert main("edge", "", [engines.register], argv) == 2
    error = capsys.readouterr().err
    failed = r"\((recall|precision) 0\.\d{4} < 0\.9[57] vs FP32"
    assert re.search(rf"yolov8_detector_int8\.onnx failed its INT8 accuracy gate {failed}", error)
    assert "or build its engine without --int8" in error
    assert error.count("\n") == 1
    shutil.copy(int8_models["embedder", "cpu"], models / "reid_mobilenetv2_int8.onnx")
    with pytest.raises(
        EdgeError,
        match=r"reid_mobilenetv2_int8\.onnx is quantized for cpu \(unsigned activations, non-zero "
        r"zero points\), which TensorRT refuses: .* --flavour tensorrt",
    ):
        build_all(models, BuildOptions(int8=True), only=("reid",))
    assert gpu.calls["build"] == 0


def test_tensorrts_parser_refuses_unsigned_or_asymmetric_quantization(
    gpu: fake_tensorrt.FakeGpu, int8_models: dict[tuple[str, str], Path]
) -> None:
    """What the builder's metadata check spares the user: TensorRT's parser on the cpu flavour."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.ERROR)
    parser = trt.OnnxParser(trt.Builder(logger).create_network(0), logger)
    assert not parser.parse_from_file(str(int8_models["embedder", "cpu"]))
    assert "UINT8 quantization is unsupported" in parser_errors(parser)


def test_the_gate_the_builder_imports_needs_no_training_package() -> None:
    """The builder, part of the on-device runtime, imports `export.gate` for INT8 builds: it
    must not bring TensorFlow, torch, ultralytics or scikit-image (all installed here)."""
    training = ("torch", "tensorflow", "keras", "ultralytics", "skimage")
    code = f"import sys, export.gate; print([m for m in {training!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
