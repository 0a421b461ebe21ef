"""The runtime colorizer: any frame size, gray or BGR in, same-size BGR out, via ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.engines import open_engine
from edge.errors import EdgeError
from edge.models.colorizer import Colorizer, lightness, rebuild_bgr, to_lab
from export.data import data_file
from tests.onnx_models import constant_chroma_model, scale_model


@pytest.fixture
def neutral(tmp_path: Path) -> Colorizer:
    return Colorizer(open_engine(constant_chroma_model(tmp_path / "neutral.onnx", (0.0, 0.0))))


@pytest.fixture
def gray_frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (97, 131), dtype=np.uint8), (5, 5), 0)


@pytest.mark.parametrize("size", [(97, 131), (576, 768), (128, 128), (5, 3)])
def test_zero_chroma_gives_back_the_gray_frame_at_full_size(
    neutral: Colorizer, size: tuple[int, int]
) -> None:
    gray = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8)
    out = neutral.colorize(gray)
    assert out.shape == (*size, 3)
    assert out.dtype == np.uint8
    # Every pixel keeps its own luminance, exactly up to rounding: no blur from the 128×128 model.
    assert np.abs(out.astype(int) - gray[..., None].astype(int)).max() <= 1


@pytest.mark.parametrize("shape", [(97, 131), (97, 131, 1), (97, 131, 3)])
def test_accepts_gray_and_bgr_layouts(
    neutral: Colorizer, gray_frame: np.ndarray, shape: tuple[int, ...]
) -> None:
    frame = gray_frame if len(shape) == 2 else gray_frame[..., None]
    frame = np.repeat(frame, shape[2], axis=2) if len(shape) == 3 else frame
    assert neutral.colorize(frame).shape == (97, 131, 3)


def test_predicted_chroma_tints_the_output(tmp_path: Path, gray_frame: np.ndarray) -> None:
    # a > 0 is towards red, b < 0 towards blue: expect red and blue above green.
    model = constant_chroma_model(tmp_path / "magenta.onnx", (0.3, -0.2))
    out = Colorizer(open_engine(model)).colorize(gray_frame).astype(int)
    blue, green, red = (out[20:-20, 20:-20, i].mean() for i in range(3))
    assert red > green + 10
    assert blue > green + 10
    # Luminance still comes from the input.
    assert np.abs(to_lab(out.astype(np.uint8))[..., 0] - to_lab(gray_frame)[..., 0]).mean() < 2


def test_rebuild_round_trips_a_real_photo() -> None:
    image = cv2.imread(str(data_file("fruits.jpg")))
    lab = to_lab(image)
    assert np.abs(rebuild_bgr(lab[..., 0], lab[..., 1:] / 128).astype(int) - image).max() <= 1


def test_wrong_model_shape_is_refused(tmp_path: Path) -> None:
    engine = open_engine(scale_model(tmp_path / "m.onnx", ["N", 64, 64, 3]))
    with pytest.raises(EdgeError, match=r"input \(\?, 64, 64, 3\) -> output .* not a chroma"):
        Colorizer(engine)


def test_empty_frame_is_refused(neutral: Colorizer) -> None:
    with pytest.raises(EdgeError, match="empty frame"):
        neutral.colorize(np.zeros((0, 10), np.uint8))


@pytest.mark.parametrize("shape", [(16, 16), (16, 16, 1), (16, 16, 3)])
def test_lightness_of_gray_matches_the_lab_conversion(shape: tuple[int, ...]) -> None:
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    frame = gray.reshape(16, 16, 1).repeat(shape[2], axis=2) if len(shape) == 3 else gray
    np.testing.assert_allclose(lightness(frame), to_lab(gray)[..., 0], atol=1e-4)
