"""Colorization at any resolution from a 128×128 chroma model.

The network sees only luminance (Lab L, downscaled to its input size) and predicts chroma (a, b).
The output frame keeps the input's full-resolution luminance, so detail is never blurred; only the
upsampled chroma comes from the model. Training (`export/`) uses these same conversions.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.engines import InferenceEngine
from edge.errors import EdgeError

L_SCALE = 100.0  # Lab L of float images spans 0..100
AB_SCALE = 128.0  # Lab a, b of float images span about -127..127


def to_lab(frame: np.ndarray) -> np.ndarray:
    """Float32 Lab (L 0..100, a/b about ±127) of a gray (H×W or H×W×1) or BGR uint8 frame."""
    if frame.size == 0:
        raise EdgeError(f"empty frame of shape {frame.shape}: check the source")
    if frame.ndim == 2 or frame.shape[2] == 1:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.ndim != 3 or frame.shape[2] != 3:
        raise EdgeError(f"frame of shape {frame.shape} is neither gray (H×W) nor BGR (H×W×3)")
    return cv2.cvtColor(frame.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)


def _gray_to_lightness_table() -> np.ndarray:
    gray = np.arange(256, dtype=np.uint8).reshape(1, 256)
    return to_lab(gray)[0, :, 0].copy()


# L of a gray pixel depends on its value only: a 256-entry table, 5× faster than cvtColor.
GRAY_TO_L = _gray_to_lightness_table()


def lightness(frame: np.ndarray) -> np.ndarray:
    """Lab L (float32, 0..100) of a gray (H×W or H×W×1) or BGR uint8 frame."""
    if frame.size and frame.dtype == np.uint8 and (frame.ndim == 2 or frame.shape[2] == 1):
        return GRAY_TO_L[frame.reshape(frame.shape[:2])]
    return to_lab(frame)[..., 0]


def model_input(lightness: np.ndarray, size: int) -> np.ndarray:
    """Network input (size×size×1, 0..1) from a full-resolution L channel."""
    small = cv2.resize(lightness, (size, size), interpolation=cv2.INTER_AREA)
    return (small / L_SCALE)[..., np.newaxis].astype(np.float32)


# Chroma (Lab √(a²+b²), from the frame's median) that only noise reaches: a gray video stored as
# color (MJPEG, MPEG-4) keeps |ab| within ~2.5 of it. Frames "carry color" when at least
# COLORED_SHARE of their pixels lie beyond; in the sample video 99% do.
GRAY_CHROMA = 4.0
COLORED_SHARE = 0.01


def colored_share(chroma: np.ndarray) -> float:
    """Share of pixels whose chroma differs from their frame's median chroma beyond noise.

    `chroma`: (N, H, W, 2) Lab a, b. Measured from each frame's median, so a gray video with a
    color cast (sepia, a green IR tint) counts as gray too.
    """
    deviation = chroma - np.median(chroma, axis=(1, 2), keepdims=True)
    return float(np.mean(np.hypot(deviation[..., 0], deviation[..., 1]) > GRAY_CHROMA))


def carries_color(frame: np.ndarray, size: int = 128) -> bool:
    """Whether a frame shows colors (a day camera) rather than gray or a tinted gray (night, IR)."""
    if frame.ndim == 2 or frame.shape[2] == 1:
        return False
    small = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    return colored_share(to_lab(small)[np.newaxis, ..., 1:]) >= COLORED_SHARE


def rebuild_bgr(lightness: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """BGR uint8 frame from full-resolution L and the model's chroma (h×w×2, scaled to ±1)."""
    height, width = lightness.shape
    ab = cv2.resize(
        chroma.astype(np.float32) * AB_SCALE, (width, height), interpolation=cv2.INTER_LINEAR
    )
    bgr = cv2.cvtColor(cv2.merge([lightness, ab]), cv2.COLOR_Lab2BGR)
    np.clip(bgr, 0.0, 1.0, out=bgr)  # out-of-gamut Lab gives values outside 0..1
    return cv2.convertScaleAbs(bgr, alpha=255.0)


class Colorizer:
    """Turns a gray or BGR frame of any size into a colorized BGR frame of the same size.

    Several cameras' threads may share one: its engine serializes calls where the backend
    needs it (a TensorRT execution context takes one inference at a time).
    """

    def __init__(self, engine: InferenceEngine) -> None:
        """Wrap a chroma model: input (N, S, S, 1) luminance, output (N, S, S, 2) chroma.

        Raises:
            EdgeError: the model's inputs or outputs do not have those shapes.
        """
        name = engine.path.name
        if len(engine.inputs) != 1 or len(engine.outputs) != 1:
            raise EdgeError(f"{name}: a colorizer has one input and one output")
        shape_in, shape_out = engine.inputs[0].shape, engine.outputs[0].shape
        size = shape_in[1] if len(shape_in) == 4 else None
        if size is None or shape_in[1:] != (size, size, 1) or shape_out[1:] != (size, size, 2):
            raise EdgeError(
                f"{name}: input {engine.inputs[0].shape_text()} -> output "
                f"{engine.outputs[0].shape_text()} is not a chroma colorizer (N, S, S, 1) -> "
                "(N, S, S, 2); export one with `python -m export onnx`"
            )
        self.engine = engine
        self.size = size
        self._input_name = engine.inputs[0].name
        self._output_name = engine.outputs[0].name

    def predict_chroma(self, lightness: np.ndarray) -> np.ndarray:
        """The model's chroma (S×S×2, ±1) for a full-resolution L channel."""
        batch = model_input(lightness, self.size)[np.newaxis]
        return self.engine.run({self._input_name: batch})[self._output_name][0]

    def colorize(self, frame: np.ndarray) -> np.ndarray:
        """Colorized BGR uint8 frame, same height and width as `frame` (gray or BGR uint8)."""
        full_lightness = lightness(frame)
        return rebuild_bgr(full_lightness, self.predict_chroma(full_lightness))
