"""`export adapt` end to end: real clips cut from the sample video, a tiny real Keras model trained
for one epoch, tf2onnx, ONNX Runtime. The tests check the machinery (the split in time, the files,
the metadata, scores of what the runtime outputs, refusals); docs/colorizer.md reports the quality
reached on the whole sample video.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from edge.cli import main
from edge.engines import open_engine
from edge.errors import EdgeError
from edge.files import sha256
from edge.models.colorizer import AB_SCALE, Colorizer, lightness, rebuild_bgr, to_lab
from edge.video.files import read_frames
from export import adapt as adapt_module
from export.adapt import (
    GRID_FRAMES,
    METHODS,
    Recipe,
    adapt,
    chroma_target,
    load_chroma_model,
    report_paths,
    with_scene_map,
)
from export.colorizer_models import chroma_unet, original_autoencoder
from export.evaluate import GRID_HEIGHT, psnr
from export.tiles import TILE

CLIP_SIZE = (192, 144)  # a quarter of the sample video's 768×576: same scene, 16× less work
CLIP_FRAMES = 40
TINY = Recipe(epochs=1, batch_size=4)
MAP_ONLY = Recipe(epochs=0)  # the scene map alone: no training step, faster


def write_clip(path: Path, frames: list[np.ndarray]) -> Path:
    """An MJPEG AVI of the frames (MJPEG keeps gray frames gray: no chroma drift)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, CLIP_SIZE)
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def small_frames(vtest_frames: list[np.ndarray]) -> list[np.ndarray]:
    return [
        cv2.resize(f, CLIP_SIZE, interpolation=cv2.INTER_AREA) for f in vtest_frames[:CLIP_FRAMES]
    ]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, small_frames: list[np.ndarray]) -> Path:
    """color.avi, gray.avi (the same frames as gray, stored as color), short.avi, frames/*.png."""
    folder = tmp_path_factory.mktemp("clips")
    write_clip(folder / "color.avi", small_frames)
    gray = [
        cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR) for f in small_frames
    ]
    write_clip(folder / "gray.avi", gray)
    write_clip(folder / "short.avi", small_frames[:6])
    (folder / "frames").mkdir()
    for i, frame in enumerate(small_frames[:20]):
        cv2.imwrite(str(folder / "frames" / f"t{i:04d}.png"), frame)
    (folder / "corrupt.avi").write_bytes(np.random.default_rng(0).bytes(50_000))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_chroma.keras (an untrained chroma U-Net, 4-8-16 wide), rgb.keras, text.keras."""
    folder = tmp_path_factory.mktemp("models")
    chroma_unet(widths=(4, 8, 16)).save(folder / "tiny_chroma.keras")
    original_autoencoder(widths=(4, 8)).save(folder / "rgb.keras")
    (folder / "text.keras").write_text("not a model")
    return folder


@pytest.fixture(scope="module")
def adapted(
    tmp_path_factory: pytest.TempPathFactory, clips: Path, models: Path
) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("adapted") / "cam1.onnx"
    report = adapt(clips / "color.avi", output, models / "tiny_chroma.keras", 12, 0.25, TINY)
    return output, report


def test_writes_models_report_and_grid(adapted: tuple[Path, dict]) -> None:
    output, report = adapted
    files = report_paths(output)
    assert sorted(p.name for p in output.parent.iterdir()) == sorted(
        p.name for p in files.values()
    )  # no temporary file left behind
    with open_engine(files["onnx"]) as engine:
        Colorizer(engine)  # the runtime accepts it
    fp16 = onnx.load(files["onnx_fp16"])
    kinds = {init.data_type for init in fp16.graph.initializer if len(init.dims) > 1}
    assert kinds == {onnx.TensorProto.FLOAT16}
    assert json.loads(files["json"].read_text())["psnr"] == report["psnr"]
    assert "| **adapted** |" in files["markdown"].read_text()
    grid = cv2.imread(str(files["grid"]))
    assert grid.shape[0] == 28 + GRID_FRAMES * GRID_HEIGHT  # header + one row per frame shown
    assert grid.shape[1] == 4 * round(CLIP_SIZE[0] * GRID_HEIGHT / CLIP_SIZE[1])


def test_metadata_records_provenance_and_scores(adapted: tuple[Path, dict], clips: Path) -> None:
    output, report = adapted
    for path in (output, report_paths(output)["onnx_fp16"]):
        with open_engine(path) as engine:
            meta = engine.metadata
        assert meta["edge.model"] == "colorizer-chroma"
        assert meta["edge.adapt.video_sha256"] == sha256(clips / "color.avi")
        assert meta["edge.adapt.base"] == "tiny_chroma.keras"
        assert meta["edge.adapt.epochs"] == "1"
        assert json.loads(meta["edge.adapt.train_indices"]) == report["train"]["indices"]
        assert json.loads(meta["edge.adapt.heldout_seconds"]) == [3.0, 3.9]  # 10 fps
        for method in METHODS:
            assert float(meta[f"edge.adapt.psnr_{method}"]) == pytest.approx(
                report["psnr"][method]["mean"], abs=1e-3
            )
        assert "edge.source_sha256" not in meta  # that of a temporary file: meaningless


def test_heldout_frames_are_the_later_part(adapted: tuple[Path, dict]) -> None:
    _, report = adapted
    learn, heldout = report["train"]["indices"], report["heldout"]["indices"]
    assert len(learn) == 12  # --frames sampled evenly from the 30 earlier frames
    assert learn[0] == 0
    assert learn[-1] == 29
    assert heldout == list(range(30, 40))  # the last quarter, every frame
    assert [r["frame"] for r in report["per_frame"]] == heldout


def test_scores_are_of_what_the_runtime_outputs(
    adapted: tuple[Path, dict], small_frames: list[np.ndarray]
) -> None:
    output, report = adapted
    row = report["per_frame"][3]
    index = int(row["frame"])
    truth = list(read_frames(Path(report["video"])))[index]  # as decoded: MJPEG is lossy
    assert psnr(truth, small_frames[index]) > 30  # the right frame
    gray = cv2.cvtColor(truth, cv2.COLOR_BGR2GRAY)
    with open_engine(output) as engine:
        assert psnr(Colorizer(engine).colorize(gray), truth) == pytest.approx(row["adapted"])
    assert psnr(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), truth) == pytest.approx(row["gray"])
    assert 15 < report["psnr"]["gray"]["mean"] < 40


def test_folder_of_frames_in_name_order(clips: Path, models: Path, tmp_path: Path) -> None:
    report = adapt(
        clips / "frames", tmp_path / "cam.onnx", models / "tiny_chroma.keras", 8, 0.2, MAP_ONLY
    )
    assert report["video_frames"] == 20
    assert report["heldout"]["indices"] == [16, 17, 18, 19]
    assert report["heldout"]["seconds"] is None  # images carry no frame rate
    with open_engine(tmp_path / "cam.onnx") as engine:
        assert engine.metadata["edge.adapt.video"] == "frames"


def test_chroma_target_is_what_the_runtime_rebuilds_best(small_frames: list[np.ndarray]) -> None:
    frame = small_frames[0]
    light = lightness(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    own = chroma_target(frame, TILE, steps=0)  # the frame's own chroma, area-averaged
    small = cv2.resize(frame, (TILE, TILE), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(own, to_lab(small)[..., 1:] / AB_SCALE, atol=0.02)
    fitted = chroma_target(frame, TILE)
    assert fitted.shape == (TILE, TILE, 2)
    assert np.abs(fitted).max() < 1  # within the reach of the model's tanh
    gain = psnr(rebuild_bgr(light, fitted), frame) - psnr(rebuild_bgr(light, own), frame)
    assert gain > 0.5
    gray = cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assert np.abs(chroma_target(gray, TILE)).max() < 0.01  # a gray frame needs no chroma


def test_scene_map_starts_at_what_the_model_misses(models: Path) -> None:
    general = load_chroma_model(models / "tiny_chroma.keras")
    rng = np.random.default_rng(0)
    inputs = rng.random((6, TILE, TILE, 1), np.float32)
    targets = rng.uniform(-0.5, 0.5, (6, TILE, TILE, 2)).astype(np.float32)
    before = general.predict(inputs, verbose=0)
    adapted = with_scene_map(general, inputs, targets)
    after = adapted.predict(inputs, verbose=0)
    np.testing.assert_allclose(after.mean(axis=0), targets.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(
        after - before, np.broadcast_to(after[0] - before[0], after.shape), atol=1e-5
    )


def run_adapt(*args: str) -> int:
    return main("export", "", [adapt_module.register], ["adapt", *args])


@pytest.mark.parametrize(
    ("video", "base", "extra", "message"),
    [
        ("gray.avi", "tiny_chroma.keras", [], "nothing to learn: the frames are gray"),
        ("short.avi", "tiny_chroma.keras", [], "too few frames: .*short.avi has 6"),
        ("corrupt.avi", "tiny_chroma.keras", [], "cannot decode video .*corrupt.avi"),
        ("missing.avi", "tiny_chroma.keras", [], "video not found: .*missing.avi"),
        ("color.avi", "rgb.keras", [], "rgb.keras: .* is not a chroma colorizer"),
        ("color.avi", "missing.keras", [], "Keras model not found"),
        ("color.avi", "text.keras", [], "text.keras is not a Keras model"),
        ("color.avi", "tiny_chroma.keras", ["--holdout", "1"], "--holdout must be between 0"),
        ("color.avi", "tiny_chroma.keras", ["--holdout", "0.9"], "too few frames"),
        ("color.avi", "tiny_chroma.keras", ["--frames", "3"], "--frames must be at least 8"),
        ("color.avi", "tiny_chroma.keras", ["--epochs", "-1"], "--epochs must be at least 0"),
        ("color.avi", "tiny_chroma.keras", ["--test-frames", "1"], "--test-frames must be at le"),
    ],
)
def test_bad_input_is_one_line_error_and_keeps_the_old_model(
    clips: Path,
    models: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    video: str,
    base: str,
    extra: list[str],
    message: str,
) -> None:
    output = tmp_path / "cam1.onnx"
    output.write_bytes(b"previous")
    args = ["--video", str(clips / video), "--base", str(models / base), "--output", str(output)]
    assert run_adapt(*args, *extra) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("export adapt: error:")
    assert re.search(message, last), last
    assert output.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [output]


def test_failure_while_writing_keeps_every_earlier_file(
    adapted: tuple[Path, dict], clips: Path, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output, _ = adapted
    before = {p.name: p.read_bytes() for p in output.parent.iterdir()}
    monkeypatch.setattr(adapt_module.cv2, "imwrite", lambda *_: False)
    with pytest.raises(EdgeError, match=r"cannot write .*cam1.grid.png"):
        adapt(clips / "color.avi", output, models / "tiny_chroma.keras", 8, 0.25, MAP_ONLY)
    assert {p.name: p.read_bytes() for p in output.parent.iterdir()} == before


def test_command_is_registered(clips: Path, models: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "export",
            "adapt",
            "--video",
            str(clips / "gray.avi"),
            "--base",
            str(models / "tiny_chroma.keras"),
            "--output",
            str(tmp_path / "cam1.onnx"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "nothing to learn: the frames are gray" in result.stderr.strip().splitlines()[-1]
