"""The TensorRT backend and `open_engine`'s backend choice, driven through tests/fake_tensorrt.py.

The fake's "engine" runs the ONNX model with ONNX Runtime, so equal outputs show that our
backend moves the right bytes through its buffers (page-locked host, device, stream, addresses,
dynamic shapes, trimming) and reads the right tensors and metadata. No real TensorRT runs here.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import pytest

from edge.engines import InferenceEngine, open_engine
from edge.engines.build import MODELS, BuildOptions, build_engine_file, timing_cache_path
from edge.engines.sidecar import read_sidecar, sidecar_path
from edge.engines.tensorrt import TensorRTEngine, split_header
from edge.errors import EdgeError
from edge.models.colorizer import Colorizer
from edge.models.detector import Detector
from edge.models.embedder import Embedder
from export.data import data_file
from export.reid import sample_crops
from tests import detect_models, fake_tensorrt
from tests import int8_models as int8
from tests.onnx_models import scale_model

# The shared session fixtures, under their names so pytest finds them here.
detector_onnx = detect_models.detector_onnx
reid_onnx = detect_models.reid_onnx
vtest_frames = detect_models.vtest_frames
int8_models = int8.int8_models
BATCHES = {spec.name: spec.batch for spec in MODELS}


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> fake_tensorrt.FakeGpu:
    monkeypatch.setattr("edge.paths.CACHE", tmp_path / "cache")
    # One primary context per fake machine; no device tree here unless a test writes one.
    monkeypatch.setattr("edge.engines.tensorrt._PRIMARY", None, raising=False)
    monkeypatch.setattr("edge.engines.tensorrt.BOARD_MODEL", tmp_path / "model", raising=False)
    return fake_tensorrt.install(monkeypatch)


def build(onnx: Path, folder: Path, name: str, **options: object) -> Path:
    """Copy the ONNX model into `folder` and build its engine beside it with the fake."""
    from edge.engines.tensorrt import current_target

    local = folder / f"{name}.onnx"
    local.write_bytes(onnx.read_bytes())
    engine = local.with_suffix(".engine")
    target = current_target()
    options.setdefault("batch", BATCHES.get(name, (1, 4, 8)))
    settings = BuildOptions(**options)  # type: ignore[arg-type]
    build_engine_file(local, engine, settings, timing_cache_path(target), target)
    return engine


@pytest.fixture(scope="session")
def colorizer_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our chroma colorizer, trained one epoch and exported by the project's own tf2onnx path."""
    from export.onnx_export import keras_to_onnx
    from export.train import keras_path, train

    folder = tmp_path_factory.mktemp("colorizer")
    train("chroma", epochs=1, batch_size=8, tile_count=16, models_dir=folder)
    keras_to_onnx("chroma", keras_path("chroma", folder), folder / "colorizer.onnx")
    return folder / "colorizer.onnx"


def both(onnx: Path, engine: Path) -> tuple[InferenceEngine, InferenceEngine]:
    return open_engine(onnx, "onnxruntime"), open_engine(engine)


def test_colorizer_matches_onnx_runtime(
    gpu: fake_tensorrt.FakeGpu, colorizer_onnx: Path, tmp_path: Path, vtest_frames: list
) -> None:
    engine = build(colorizer_onnx, tmp_path, "colorizer")
    ort_engine, trt_engine = both(colorizer_onnx, engine)
    assert isinstance(trt_engine, TensorRTEngine)
    assert trt_engine.inputs == ort_engine.inputs
    assert [(t.name, t.shape, t.dtype) for t in trt_engine.outputs] == [
        (t.name, t.shape, t.dtype) for t in ort_engine.outputs
    ]
    for frame in vtest_frames[:3]:
        expected = Colorizer(ort_engine).colorize(frame)
        np.testing.assert_array_equal(Colorizer(trt_engine).colorize(frame), expected)
    trt_engine.close()


def test_detector_matches_onnx_runtime(
    gpu: fake_tensorrt.FakeGpu, detector_onnx: Path, tmp_path: Path, vtest_frames: list
) -> None:
    engine = build(detector_onnx, tmp_path, "detector")
    ort_engine, trt_engine = both(detector_onnx, engine)
    assert trt_engine.metadata == ort_engine.metadata  # class names, stride, size: from sidecar
    ours, theirs = Detector(trt_engine), Detector(ort_engine)
    assert ours.names == theirs.names
    for frame in vtest_frames[:2]:
        got, want = ours(frame), theirs(frame)
        assert len(want.xyxy) > 0
        np.testing.assert_allclose(got.xyxy, want.xyxy, rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(got.class_id, want.class_id)
    trt_engine.close()


def reid_memory(reid_onnx: Path, crops: int) -> int:
    """Device bytes the ReID engine needs for a batch: its input and output buffers, and the
    activation memory the double reckons for that batch."""
    activations = fake_tensorrt._activation_bytes(
        onnx.load(reid_onnx), {"crops": [crops, 3, 224, 224]}
    )
    return crops * (3 * 224 * 224 + 1280) * 4 + activations


def test_embedder_dynamic_batch_matches_onnx_runtime(
    gpu: fake_tensorrt.FakeGpu, reid_onnx: Path, tmp_path: Path
) -> None:
    engine = build(reid_onnx, tmp_path, "reid")
    ort_engine, trt_engine = both(reid_onnx, engine)
    assert (trt_engine.min_batch, trt_engine.max_batch) == (1, 32)
    assert gpu.allocated() == reid_memory(reid_onnx, 8), "buffers and activations for opt"
    crops = sample_crops(data_file("vtest.avi"), count=32)
    # Largest first, then smaller: a stale tail of the reused buffers would show up.
    for count in (32, 5, 1):
        got = Embedder(trt_engine).embed_crops(crops[:count])
        want = Embedder(ort_engine).embed_crops(crops[:count])
        assert got.shape == want.shape == (count, 1280)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        if count == 32:
            allocations = gpu.calls["mem_alloc"]
    assert gpu.calls["mem_alloc"] == allocations, "grown once for 32 crops, then reused"
    assert gpu.allocated() == reid_memory(reid_onnx, 32)
    assert gpu.calls["execute"] == 3
    trt_engine.close()
    assert not gpu.memory, "close frees every device buffer"


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))


def test_reid_splits_a_crowded_frame_by_the_engines_batch_limit(
    gpu: fake_tensorrt.FakeGpu, reid_onnx: Path, tmp_path: Path
) -> None:
    """100 detections (detector.max_detections) against a profile of 1 to 32 crops: the engine
    refuses a batch of 100, so the embedder sends 32, 32, 32 and 4."""
    crops = sample_crops(data_file("vtest.avi"), count=100)
    with open_engine(reid_onnx, "onnxruntime") as ort_engine:
        want = Embedder(ort_engine).embed_crops(crops)
    with open_engine(build(reid_onnx, tmp_path, "reid")) as engine:
        with pytest.raises(EdgeError, match=r"shape \(100, 3, 224, 224\) is outside"):
            engine.run({"crops": np.zeros((100, 3, 224, 224), np.float32)})
        got = Embedder(engine).embed_crops(crops)
    assert got.shape == (100, 1280)
    assert cosine(got, want).min() >= 0.9999
    assert (gpu.calls["batch_32"], gpu.calls["batch_4"], gpu.calls["execute"]) == (3, 1, 4)


def test_activation_memory_follows_the_shapes_not_the_profile_maximum(
    gpu: fake_tensorrt.FakeGpu, reid_onnx: Path, tmp_path: Path
) -> None:
    """TensorRT's default context holds activation memory for the profile's maximum from the
    start (STATIC): a ReID profile up to 256 crops would hold ~2.4 GB here (FP32). Ours holds
    what the opt shapes need, then what the largest call needed."""
    engine_file = build(reid_onnx, tmp_path, "reid", batch=(1, 8, 256))
    with open_engine(engine_file) as engine:
        assert gpu.allocated() == reid_memory(reid_onnx, 8)
        engine.run({"crops": np.zeros((16, 3, 224, 224), np.float32)})
        assert gpu.allocated() == reid_memory(reid_onnx, 16)
        engine.run({"crops": np.zeros((2, 3, 224, 224), np.float32)})
        assert gpu.allocated() == reid_memory(reid_onnx, 16), "kept, not shrunk"
    assert not gpu.memory
    # The double's default context, as TensorRT's: the maximum, held from its creation.
    from edge.engines.tensorrt import primary_context

    context = primary_context()
    context.push()
    try:
        header, plan = fake_tensorrt.plan_header(engine_file), engine_file.read_bytes()
        trt_engine = fake_tensorrt.Runtime(fake_tensorrt.Logger()).deserialize_cuda_engine(plan)
        assert trt_engine is not None
        assert header["profile"]["crops"][2][0] == 256
        default = trt_engine.create_execution_context()
        assert gpu.allocated() == trt_engine.device_memory_size_v2 > 20 * reid_memory(reid_onnx, 8)
        del default
        assert gpu.allocated() == 0
    finally:
        fake_tensorrt.Context.pop()


def test_reid_engine_for_max_detections_splits_them_by_32(
    gpu: fake_tensorrt.FakeGpu, reid_onnx: Path, tmp_path: Path
) -> None:
    from edge.engines.build import reid_batch

    crops = sample_crops(data_file("vtest.avi"), count=100)
    with open_engine(build(reid_onnx, tmp_path, "reid", batch=reid_batch(100))) as engine:
        assert engine.max_batch == 32
        assert Embedder(engine).embed_crops(crops).shape == (100, 1280)
    assert (gpu.calls["batch_32"], gpu.calls["batch_4"], gpu.calls["execute"]) == (3, 1, 4)


def test_fixed_batch_engine_gets_padded_batches(
    gpu: fake_tensorrt.FakeGpu, reid_onnx: Path, tmp_path: Path
) -> None:
    """A DLA engine needs a fixed batch: 5 crops go as 4 and 1 padded to 4."""
    crops = sample_crops(data_file("vtest.avi"), count=5)
    with open_engine(reid_onnx, "onnxruntime") as ort_engine:
        want = Embedder(ort_engine).embed_crops(crops)
    with open_engine(build(reid_onnx, tmp_path, "reid", batch=(4, 4, 4))) as engine:
        assert (engine.min_batch, engine.max_batch) == (4, 4)
        got = Embedder(engine).embed_crops(crops)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert (gpu.calls["batch_4"], gpu.calls["execute"]) == (2, 2)


def test_shape_outside_profile_is_refused(gpu: fake_tensorrt.FakeGpu, tmp_path: Path) -> None:
    onnx = scale_model(tmp_path / "m.onnx", ["batch", 3])
    with open_engine(build(onnx, tmp_path, "scale")) as engine:
        np.testing.assert_array_equal(engine.run({"x": np.ones((8, 3), np.float32)})["y"], 2)
        with pytest.raises(
            EdgeError, match=r"shape \(9, 3\) is outside the engine's opt.*\(1, 3\) to \(8, 3\)"
        ):
            engine.run({"x": np.ones((9, 3), np.float32)})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"tensorrt_version": "10.7.0"},
            r"built by TensorRT 10\.3\.0, but this is TensorRT 10\.7\.0",
        ),
        ({"gpu": "RTX 4090", "compute_capability": (8, 9)}, r"built for Orin \(fake\) \(comp"),
    ],
)
def test_foreign_engine_is_refused_from_its_sidecar(
    gpu: fake_tensorrt.FakeGpu, tmp_path: Path, change: dict, message: str
) -> None:
    engine = build(scale_model(tmp_path / "m.onnx", ["batch", 3]), tmp_path, "scale")
    fake_tensorrt.switch(**change)
    with pytest.raises(EdgeError, match=message + r".*`make engines`"):
        open_engine(engine)
    assert gpu.calls["retain"] == 0, "refused before touching CUDA or TensorRT"


def test_foreign_engine_without_sidecar_fails_deserializing_with_the_fix(
    gpu: fake_tensorrt.FakeGpu, tmp_path: Path
) -> None:
    engine = build(scale_model(tmp_path / "m.onnx", ["batch", 3]), tmp_path, "scale")
    sidecar_path(engine).unlink()
    fake_tensorrt.switch(tensorrt_version="10.7.0")
    with pytest.raises(
        EdgeError, match=r"TensorRT 10\.7\.0 on .* cannot deserialize scale\.engine.*`make engines`"
    ):
        open_engine(engine)
    assert (gpu.memory, gpu.pinned, gpu.streams) == ({}, {}, set()), "what was made is freed"
    assert (gpu.stack(), gpu.driver()) == ([], []), "no context left pushed"


def test_ultralytics_engine_header_is_read_and_stripped(
    gpu: fake_tensorrt.FakeGpu, detector_onnx: Path, tmp_path: Path, vtest_frames: list
) -> None:
    plain = build(detector_onnx, tmp_path, "detector")
    header = {"task": "detect", "stride": 32, "imgsz": [640, 640], "batch": 1}
    header["names"] = {"0": "Normal", "1": "Fall"}  # JSON keys are strings
    blob = json.dumps(header).encode()
    exported = tmp_path / "yolov8s.engine"
    exported.write_bytes(len(blob).to_bytes(4, "little") + blob + plain.read_bytes())
    with open_engine(exported) as engine:
        assert engine.metadata["names"] == "{0: 'Normal', 1: 'Fall'}"  # as in ultralytics' ONNX
        detector = Detector(engine)
        assert detector.names == ("Normal", "Fall")
        assert len(detector(vtest_frames[0]).xyxy) > 0


def test_header_names_keep_numeric_order() -> None:
    names = {str(i): f"c{i}" for i in range(12)}
    blob = json.dumps({"names": names}).encode()
    metadata, plan = split_header(len(blob).to_bytes(4, "little") + blob + b"PLAN")
    assert plan == b"PLAN"
    assert metadata["names"].startswith("{0: 'c0', 1: 'c1', 2: 'c2'")
    assert split_header(b"\x00\x01plain plan bytes") == ({}, b"\x00\x01plain plan bytes")


def test_auto_prefers_up_to_date_engine_then_onnx(
    gpu: fake_tensorrt.FakeGpu, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    onnx = scale_model(tmp_path / "scale.onnx", ["batch", 3])
    assert not isinstance(open_engine(onnx), TensorRTEngine)  # no engine beside it yet
    build(onnx, tmp_path, "scale")
    with open_engine(onnx) as engine:
        assert isinstance(engine, TensorRTEngine)
    scale_model(onnx, ["batch", 3], factor=3.0)  # the ONNX model changes: engine is stale
    with caplog.at_level(logging.WARNING), open_engine(onnx) as engine:
        assert not isinstance(engine, TensorRTEngine)
        np.testing.assert_array_equal(engine.run({"x": np.ones((1, 3), np.float32)})["y"], 3)
    assert "scale.engine was built from another scale.onnx" in caplog.text
    assert "running scale.onnx with ONNX Runtime instead" in caplog.text
    with pytest.raises(EdgeError, match=r"built from another scale\.onnx: rebuild"):
        open_engine(onnx, "tensorrt")


@pytest.mark.parametrize(
    ("module", "replacement", "message"),
    [
        ("pycuda", None, "pycuda is not installed"),  # None in sys.modules: import fails
        ("tensorrt", ModuleType("tensorrt"), "tensorrt here is only type stubs"),
    ],
)
def test_missing_tensorrt_falls_back_with_auto_and_fails_when_asked_for(
    gpu: fake_tensorrt.FakeGpu,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    module: str,
    replacement: ModuleType | None,
    message: str,
) -> None:
    onnx = scale_model(tmp_path / "scale.onnx", ["batch", 3])
    build(onnx, tmp_path, "scale")
    monkeypatch.setitem(sys.modules, module, replacement)
    with caplog.at_level(logging.WARNING), open_engine(onnx) as engine:
        assert not isinstance(engine, TensorRTEngine)
    assert message in caplog.text
    assert "ONNX Runtime instead" in caplog.text
    for path, backend in ((onnx, "tensorrt"), (onnx.with_suffix(".engine"), "auto")):
        with pytest.raises(EdgeError, match=r"requirements-jetson\.txt"):
            open_engine(path, backend)
    with pytest.raises(EdgeError, match=r"is a TensorRT engine: ONNX Runtime runs the \.onnx"):
        open_engine(onnx.with_suffix(".engine"), "onnxruntime")


NO_CUDA = "no CUDA-capable device is detected"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda engine: fake_tensorrt.switch(init_error=NO_CUDA),
            r"CUDA cannot start here \(cuInit failed: no CUDA-capable device is detected\): the "
            r"service's user needs the `video` group .*NVIDIA runtime",
        ),
        (
            lambda engine: engine.write_bytes(b"damaged"),
            r"cannot deserialize scale\.engine: .*rebuild it on this device with `make engines`",
        ),
        (
            lambda engine: sidecar_path(engine).write_text("{"),
            r"scale\.engine\.json is not a valid engine sidecar .*: rebuild it .*`make engines`",
        ),
        (
            lambda engine: sidecar_path(engine).unlink(),
            r"scale\.engine has no sidecar to check it against scale\.onnx: rebuild it",
        ),
        (
            lambda engine: engine.unlink(),
            r"no TensorRT engine scale\.engine beside scale\.onnx: build it with `make engines`",
        ),
    ],
    ids=["cuInit", "deserialize", "bad sidecar", "no sidecar", "no engine"],
)
def test_auto_falls_back_with_one_line_naming_cause_and_fix(
    gpu: fake_tensorrt.FakeGpu,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], None],
    message: str,
) -> None:
    onnx = scale_model(tmp_path / "scale.onnx", ["batch", 3])
    damage(build(onnx, tmp_path, "scale"))
    with caplog.at_level(logging.WARNING), open_engine(onnx) as engine:
        assert not isinstance(engine, TensorRTEngine)
        np.testing.assert_array_equal(engine.run({"x": np.ones((1, 3), np.float32)})["y"], 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert re.fullmatch(
        ".*" + message + r".*; running scale\.onnx with ONNX Runtime instead", warnings[0]
    )
    with pytest.raises(EdgeError, match=message) as caught:
        open_engine(onnx, "tensorrt")
    assert "\n" not in str(caught.value)
    assert (gpu.memory, gpu.pinned, gpu.streams) == ({}, {}, set()), "what was made is freed"


def test_no_tensorrt_and_no_engine_is_the_cpu_path_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    onnx = scale_model(tmp_path / "scale.onnx", ["batch", 3])
    with caplog.at_level(logging.WARNING), open_engine(onnx) as engine:
        assert not isinstance(engine, TensorRTEngine)
    assert not caplog.records
    with pytest.raises(EdgeError, match=r"requirements-jetson\.txt"):
        open_engine(onnx, "tensorrt")


def test_fp16_precision_runs_the_fp16_engine_built_from_the_fp32_model(
    gpu: fake_tensorrt.FakeGpu, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`precision = "fp16"` picks NAME_fp16.onnx; TensorRT's FP16 engine is built from the FP32
    NAME.onnx (`make engines`), so that is the engine it gets."""
    onnx = scale_model(tmp_path / "scale.onnx", ["batch", 3])
    fp16 = scale_model(tmp_path / "scale_fp16.onnx", ["batch", 3])
    build(onnx, tmp_path, "scale")
    with open_engine(fp16) as engine:
        assert isinstance(engine, TensorRTEngine)
        assert (engine.path.name, engine.precision) == ("scale.engine", "fp16")
    build(onnx, tmp_path, "scale", fp16=False)
    with caplog.at_level(logging.WARNING), open_engine(fp16) as engine:
        assert not isinstance(engine, TensorRTEngine)
    expected = (
        r"scale\.engine is an FP32 engine, but scale_fp16\.onnx asks for FP16: .*make engines"
    )
    assert re.search(expected, caplog.text)
    with pytest.raises(EdgeError, match=expected):
        open_engine(fp16, "tensorrt")


def test_engine_runs_on_another_thread(gpu: fake_tensorrt.FakeGpu, tmp_path: Path) -> None:
    engine = open_engine(build(scale_model(tmp_path / "m.onnx", ["batch", 3]), tmp_path, "m"))
    results: list[np.ndarray] = []
    worker = threading.Thread(
        target=lambda: results.append(engine.run({"x": np.ones((2, 3), np.float32)})["y"])
    )
    worker.start()
    worker.join()
    np.testing.assert_array_equal(results[0], np.full((2, 3), 2, np.float32))
    engine.close()
    engine.close()  # twice is harmless


def test_close_frees_everything_inside_the_context_on_any_thread(
    gpu: fake_tensorrt.FakeGpu, tmp_path: Path
) -> None:
    """pycuda frees page-locked and device memory only where their context is current or can
    be pushed, which it refuses on a thread other than the one that retained it; and releasing a
    primary context that is not current leaves it pushed (same thread) or does nothing (other
    thread). Engines share one retained primary context and free everything while it is current."""
    path = build(scale_model(tmp_path / "m.onnx", ["batch", 3]), tmp_path, "m")
    first = open_engine(path)
    left_on_worker: list[object] = []

    def worker() -> None:
        first.run({"x": np.ones((2, 3), np.float32)})
        first.close()
        left_on_worker.extend([*gpu.stack(), *gpu.driver()])

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert left_on_worker == [], "no context left pushed on the worker"
    assert not gpu.pinned, "page-locked host buffers freed"
    assert not gpu.leaks, f"pycuda skipped clean-ups: {dict(gpu.leaks)}"
    second, third = open_engine(path), open_engine(path)
    second.run({"x": np.ones((3, 3), np.float32)})
    second.close()
    third.close()
    assert not gpu.memory, "device buffers freed"
    assert not gpu.pinned, "page-locked host buffers freed"
    assert not gpu.streams, "streams destroyed"
    assert not gpu.leaks, f"pycuda skipped clean-ups: {dict(gpu.leaks)}"
    assert (gpu.stack(), gpu.driver()) == ([], []), "no context left pushed on this thread"
    assert gpu.primary_retains == 1, "one for all engines, kept like pycuda.autoprimaryctx"
    from edge.engines.tensorrt import release_primary_context

    release_primary_context()  # what runs at exit
    assert (gpu.primary_retains, gpu.calls["release"]) == (0, 1)
    release_primary_context()
    assert gpu.calls["release"] == 1


def test_buffers_follow_the_shapes_used_not_the_profile_maximum(
    gpu: fake_tensorrt.FakeGpu, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ultralytics exports a dynamic-size engine with max = imgsz × workspace (2560 px for 640
    and 4 GiB; 1280 here): buffers for the max would be most of an 8 GB Orin Nano's memory."""
    onnx = scale_model(tmp_path / "yolo.onnx", [1, 3, "height", "width"])
    logger = fake_tensorrt.Logger()
    builder = fake_tensorrt.Builder(logger)
    network = builder.create_network(0)
    assert fake_tensorrt.OnnxParser(network, logger).parse_from_file(str(onnx))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(fake_tensorrt.MemoryPoolType.WORKSPACE, 2 << 30)
    profile = builder.create_optimization_profile()  # as ultralytics' exporter sets it
    profile.set_shape("x", (1, 3, 32, 32), (1, 3, 640, 640), (1, 3, 1280, 1280))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None
    header = json.dumps({"imgsz": [640, 640], "names": {"0": "person"}}).encode()
    engine_file = tmp_path / "yolo.engine"
    engine_file.write_bytes(len(header).to_bytes(4, "little") + header + plan)

    image = 3 * 4  # bytes per pixel of x (and of y)
    with caplog.at_level(logging.INFO), open_engine(engine_file) as engine:
        assert gpu.allocated() == 2 * 640 * 640 * image, "input and output at opt"
        x = np.random.default_rng(0).random((1, 3, 960, 960), np.float32)
        np.testing.assert_array_equal(engine.run({"x": x})["y"], x * 2)
        assert gpu.allocated() == 2 * 960 * 960 * image, "grown to the shape used"
        allocations = gpu.calls["mem_alloc"]
        small = x[:, :, :320, :480].copy()
        np.testing.assert_array_equal(engine.run({"x": small})["y"], small * 2)
        assert gpu.calls["mem_alloc"] == allocations, "smaller shapes reuse the buffers"
    assert "buffers of 'x' grow to (1, 3, 960, 960)" in caplog.text
    assert (gpu.memory, gpu.pinned) == ({}, {})


def test_tensorrt_8_falls_back_to_onnx_runtime_with_auto(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("edge.engines.tensorrt._PRIMARY", None, raising=False)
    onnx = scale_model(tmp_path / "scale.onnx", ["batch", 3])
    (tmp_path / "scale.engine").write_bytes(b"built elsewhere")
    fake_tensorrt.install(monkeypatch, tensorrt_version="8.6.2")
    with caplog.at_level(logging.WARNING), open_engine(onnx) as engine:
        assert not isinstance(engine, TensorRTEngine)
    assert "TensorRT 8.6.2 is too old: this needs TensorRT 10 or newer: JetPack 6.1+" in caplog.text
    with pytest.raises(EdgeError, match=r"TensorRT 10 or newer: JetPack 6\.1\+$"):
        open_engine(onnx, "tensorrt")


def test_an_int8_engine_whose_own_gate_never_ran_warns_that_only_its_qdq_graph_was_measured(
    gpu: fake_tensorrt.FakeGpu,
    tmp_path: Path,
    int8_models: dict[tuple[str, str], Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Built without measuring it (`build_engine_file` without a gate), an INT8 engine's sidecar
    copies its QDQ model's gate, marked measured "onnx-qdq"; an older version's has no gate at
    all. Either runs, with one warning saying that only the ONNX QDQ graph was measured."""
    engine = build(int8_models["embedder", "tensorrt"], tmp_path, "reid_int8", int8=True)
    sidecar = read_sidecar(engine)
    assert sidecar is not None
    assert (sidecar.int8_gate["measured"], sidecar.int8_gate["passed"]) == ("onnx-qdq", True)
    expected = (
        "reid_int8.engine: only its ONNX QDQ graph passed the INT8 accuracy gate (on ONNX Runtime, "
        "float parts in FP32), not this engine (float parts in FP16, Q/DQ fused by TensorRT): "
        "`python -m edge engines --int8` measures it on this device"
    )

    def warnings() -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING), open_engine(engine) as opened:
            assert isinstance(opened, TensorRTEngine)
            assert opened.precision == "int8"
        return [r.getMessage() for r in caplog.records]

    assert warnings() == [expected]
    record = json.loads(sidecar_path(engine).read_text())
    del record["int8_gate"]  # as versions before the engine's own gate wrote it
    sidecar_path(engine).write_text(json.dumps(record))
    assert warnings() == [expected]
