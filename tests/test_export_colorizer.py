"""Colorizer preparation end to end with real TensorFlow, tf2onnx and ONNX Runtime.

Models here are trained for one epoch on a few tiles: the tests check the machinery (shapes,
Keras/ONNX parity, FP16 variant, reports, errors), not the quality, which README reports from
`make demo`'s full training.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from edge.engines import open_engine
from edge.errors import EdgeError
from edge.models.colorizer import Colorizer
from export import onnx_export
from export.data import data_file
from export.evaluate import evaluate
from export.onnx_export import export_all, keras_to_onnx, onnx_path
from export.tiles import TILE, split_photos
from export.train import keras_path, train
from tests.onnx_models import scale_model


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    for kind in ("rgb", "chroma"):
        train(kind, epochs=1, batch_size=8, tile_count=16, models_dir=folder)
    export_all(folder)
    return folder


def test_training_writes_model_and_history(models: Path) -> None:
    history = json.loads(keras_path("chroma", models).with_suffix(".history.json").read_text())
    assert history["tiles"] == 16
    assert len(history["history"]["val_loss"]) == 1


@pytest.mark.parametrize(("kind", "channels"), [("rgb", 3), ("chroma", 2)])
def test_onnx_models_have_the_runtime_contract(models: Path, kind: str, channels: int) -> None:
    with open_engine(onnx_path(kind, models_dir=models)) as engine:
        assert engine.inputs[0].shape == (None, TILE, TILE, 1)
        assert engine.outputs[0].shape == (None, TILE, TILE, channels)
        assert engine.metadata["edge.model"] == f"colorizer-{kind}"
    assert onnx.load(onnx_path(kind, models_dir=models)).opset_import[0].version >= 17


def test_fp16_variant_stores_fp16_weights_and_stays_close(models: Path) -> None:
    fp16 = onnx.load(onnx_path("chroma", fp16=True, models_dir=models))
    kinds = {init.data_type for init in fp16.graph.initializer if len(init.dims) > 1}
    assert kinds == {onnx.TensorProto.FLOAT16}
    frame = cv2.imread(str(data_file("fruits.jpg")), cv2.IMREAD_GRAYSCALE)
    fp32_out = Colorizer(open_engine(onnx_path("chroma", models_dir=models))).colorize(frame)
    fp16_out = Colorizer(open_engine(onnx_path("chroma", True, models))).colorize(frame)
    difference = np.abs(fp32_out.astype(int) - fp16_out.astype(int))
    assert 0 < difference.max() <= 3  # rounding is visible but small


def test_onnx_mismatch_fails_and_keeps_the_previous_file(
    models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "colorizer.onnx"
    target.write_bytes(b"previous")
    monkeypatch.setattr(onnx_export, "TOLERANCE", 0.0)
    with pytest.raises(EdgeError, match=r"ONNX output differs from Keras by .* not written"):
        keras_to_onnx("chroma", keras_path("chroma", models), target)
    assert target.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [target]


def test_evaluate_writes_reports_with_all_methods(models: Path, tmp_path: Path) -> None:
    photos = [data_file("fruits.jpg"), data_file("home.jpg")]
    summary = evaluate(
        photos,
        onnx_path("rgb", models_dir=models),
        onnx_path("chroma", models_dir=models),
        onnx_path("chroma", True, models),
        tmp_path,
    )
    methods = ["grayscale", "original", "ours", "ours_fp16"]
    assert list(summary["tile"]) == methods
    assert list(summary["full"]) == methods
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    sizes = [cv2.imread(str(p)).shape for p in photos]  # both are under 512 px: not rescaled
    tiles = sum((height // TILE) * (width // TILE) for height, width, _ in sizes)
    assert len(rows) == (tiles + len(photos)) * len(methods)
    assert {r["image"] for r in rows if r["scope"] == "full"} == {"fruits.jpg", "home.jpg"}
    gray = [float(r["psnr"]) for r in rows if r["method"] == "grayscale"]
    assert all(10 < value < 60 for value in gray)
    assert cv2.imread(str(tmp_path / "grid.png")).shape[0] > 2 * 192
    assert "ΔPSNR" in (tmp_path / "summary.md").read_text()


def run_export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "export", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("empty", ["evaluate", "--photos", "{tmp}"], "no images"),
        ("text.jpg", ["evaluate", "--photos", "{tmp}"], "not a readable image: .*text.jpg"),
        ("missing", ["evaluate", "--photos", "{tmp}/nothing"], "photo folder not found"),
        ("text.jpg", ["evaluate", "--ours", "{tmp}/text.jpg"], "is not an ONNX model"),
        ("wrong.onnx", ["evaluate", "--ours", "{tmp}/wrong.onnx"], "not a chroma colorizer"),
        ("text.jpg", ["evaluate", "--output", "{tmp}/text.jpg/out"], "cannot create output"),
        ("empty", ["train", "--epochs", "0"], "epochs must be at least 1"),
    ],
)
def test_bad_input_is_one_line_error(
    models: Path, tmp_path: Path, setup: str, args: list[str], message: str
) -> None:
    if setup == "text.jpg":
        (tmp_path / "text.jpg").write_text("not an image")
    if setup == "wrong.onnx":
        scale_model(tmp_path / "wrong.onnx", ["N", TILE, TILE, 3])
    extra = []
    if args[0] == "evaluate":  # point at this session's models, not artifacts/
        extra = ["--no-fp16", "--original", str(onnx_path("rgb", models_dir=models))]
        if "--ours" not in args:
            extra += ["--ours", str(onnx_path("chroma", models_dir=models))]
    result = run_export(*[a.format(tmp=tmp_path) for a in args], *extra)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"export {args[0]}: error:")
    assert re.search(message, last), last


def test_missing_data_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(EdgeError, match=r"train photo\(s\) missing.*run `make data` first"):
        split_photos("train", data_dir=tmp_path)


def test_a_file_that_is_not_keras_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.keras"
    fake.write_text("nope")
    with pytest.raises(EdgeError, match=r"model.keras is not a Keras model"):
        keras_to_onnx("chroma", fake, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
